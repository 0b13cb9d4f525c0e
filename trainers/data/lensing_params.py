"""Priors of the lensing simulator, in one table, and the per-image draw of physical values.

Every range the simulator samples from lives in ``LensPriors`` (units in its docstring); ``draw_lens``
turns a seeded generator into one ``LensDraw``: the physical values of one image. All three classes share
the main-lens, source and instrument priors, so only the substructure tells them apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from maetune.trainers.data.lensing_cosmology import einstein_radius, kpc_to_arcsec, velocity_dispersion

# Bump when a prior or the rendering changes: it keys the cache, so old sets are never reused by mistake.
SIM_VERSION = 1
# Class folder names; the position of a class here enters its per-image seed, so never reorder.
CLASSES = ("no_sub", "cdm", "axion")

_PLANCK_EV_S = 4.135667696e-15  # h in eV s
_KM_PER_KPC = 3.0856775814913673e16
_C_KM_S = 299792.458


@dataclass(frozen=True)
class LensPriors:
    """Every range the simulator draws from. Ranges are (low, high), drawn uniformly unless named ``log10``.

    Args:
        z_lens: Redshift of the main lens (and of its substructure).
        z_source: Redshift of the source galaxy.
        field_of_view: Side of the image in arcsec; ``image_size`` pixels sample it (64 px: 0.1"/px,
            Euclid VIS).
        log10_mass_einstein: log10 of the projected mass inside the Einstein radius, in Msun. A ~1e12 Msun
            lens galaxy holds ~3-5e11 Msun inside its ~6 kpc Einstein radius; this range gives
            theta_E ~ 0.94-1.18 arcsec, the ring radius of the real DeepLense samples (~10.5 px).
        lens_ellipticity: Modulus of the SIE ellipticity (e1, e2), angle uniform.
        lens_offset: Max shift of the lens centre from the image centre on each axis, arcsec.
        shear: External shear modulus gamma, angle uniform.
        source_magnitude: Unlensed AB magnitude of the source in Euclid VIS.
        source_radius: Sersic half-light radius R_sersic, arcsec.
        source_index: Sersic index n.
        source_ellipticity: Modulus of the source ellipticity (e1, e2), angle uniform.
        source_offset: Max distance of the source centre from the lens axis, arcsec (uniform in area).
        psf_fwhm: FWHM of the Gaussian PSF, arcsec (Euclid VIS: ~0.16-0.2).
        subhalo_count_mean: Mean of the Poisson number of CDM subhalos near the arcs.
        log10_subhalo_mass: log10 of the subhalo mass range in Msun (point masses). Chosen for
            visibility, not realism: ``substructure_sigma`` (noise-free RMS of with - without substructure
            in noise sigmas) has median ~8.4 over 200 lenses (10th pct ~3.1); a mass function from 1e6
            Msun gives ~0.03 sigma (invisible) and one from 1e8 Msun ~1.8 sigma (a CNN stays at chance).
        subhalo_slope: Power-law slope beta of dN/dm ~ m^beta (CDM: about -1.9).
        substructure_annulus: Radii (in units of theta_E) of the annulus around the ring where subhalos
            and vortex centres fall, uniform in area: farther out they leave no visible mark.
        log10_axion_mass: log10 of the axion mass in eV; the vortex length is one de Broglie wavelength
            h / (m_a sigma_v), sigma_v the lens velocity dispersion: ~0.4-1.7 arcsec over this range.
        log10_vortex_mass: log10 of the total vortex mass in Msun, spread evenly over its point masses
            (median ``substructure_sigma`` ~10 over 200 lenses, 10th pct ~5.8).
        vortex_spacing: Max spacing of the vortex point masses along the line, arcsec.
        coadd_years: Euclid VIS depth (lenstronomy's ``Euclid(coadd_years=...)``) for the noise.
        supersampling: Sub-pixels per pixel side when ray shooting (resolves the point-mass deflections).
    """

    z_lens: float = 0.5
    z_source: float = 1.0
    field_of_view: float = 6.4
    log10_mass_einstein: tuple[float, float] = (11.5, 11.7)
    lens_ellipticity: tuple[float, float] = (0.0, 0.12)
    lens_offset: float = 0.05
    shear: tuple[float, float] = (0.0, 0.06)
    source_magnitude: tuple[float, float] = (19.5, 21.0)
    source_radius: tuple[float, float] = (0.2, 0.4)
    source_index: tuple[float, float] = (0.8, 1.5)
    source_ellipticity: tuple[float, float] = (0.0, 0.2)
    source_offset: float = 0.3
    psf_fwhm: tuple[float, float] = (0.16, 0.20)
    subhalo_count_mean: float = 8.0
    log10_subhalo_mass: tuple[float, float] = (9.3, 10.7)
    subhalo_slope: float = -1.9
    substructure_annulus: tuple[float, float] = (0.6, 1.4)
    log10_axion_mass: tuple[float, float] = (-23.4, -22.8)
    log10_vortex_mass: tuple[float, float] = (10.5, 10.9)
    vortex_spacing: float = 0.05
    coadd_years: int = 6
    supersampling: int = 2


PRIORS = LensPriors()


@dataclass(frozen=True)
class LensDraw:
    """The physical values of one simulated image (angles in arcsec, masses in Msun).

    Args:
        kind: Class name, one of ``CLASSES``.
        mass_einstein: Projected main-lens mass inside theta_E.
        theta_e: Einstein radius of the main lens.
        sigma_v: Velocity dispersion of the equivalent SIS, km/s.
        lens: SIE keywords for lenstronomy (theta_E, e1, e2, center_x, center_y).
        shear: SHEAR keywords (gamma1, gamma2).
        source: SERSIC_ELLIPSE keywords without ``amp`` (set from ``source_magnitude`` when rendering).
        source_magnitude: Unlensed AB magnitude of the source.
        psf_fwhm: PSF FWHM.
        subhalo_masses: CDM point-mass subhalo masses (empty unless ``cdm``).
        subhalo_positions: Their (x, y) positions.
        axion_mass: Axion mass in eV (``axion`` only).
        vortex_length: Vortex length (``axion`` only).
        vortex_mass: Total vortex mass (``axion`` only).
        vortex_points: Positions of the vortex point masses.
    """

    kind: str
    mass_einstein: float
    theta_e: float
    sigma_v: float
    lens: dict[str, float]
    shear: dict[str, float]
    source: dict[str, float]
    source_magnitude: float
    psf_fwhm: float
    subhalo_masses: tuple[float, ...] = ()
    subhalo_positions: tuple[tuple[float, float], ...] = ()
    axion_mass: float | None = None
    vortex_length: float | None = None
    vortex_mass: float | None = None
    vortex_points: tuple[tuple[float, float], ...] = field(default=())

    def record(self) -> dict:
        """The draw as a JSON-ready dict (vortex point positions left out: they follow from the rest)."""
        out = asdict(self)
        out.pop("vortex_points")
        out["n_subhalos"] = len(self.subhalo_masses)
        return out


def _polar(rng: np.random.Generator, modulus: tuple[float, float]) -> tuple[float, float]:
    """Two components of a spin-2 quantity (ellipticity, shear) with uniform modulus and angle."""
    mod, phi = rng.uniform(*modulus), rng.uniform(0.0, np.pi)
    return float(mod * np.cos(2 * phi)), float(mod * np.sin(2 * phi))


def _in_annulus(rng: np.random.Generator, inner: float, outer: float, n: int) -> np.ndarray:
    """``n`` points uniform in area in the annulus ``inner < r < outer``, shape (n, 2)."""
    radius = np.sqrt(rng.uniform(inner**2, outer**2, n))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _power_law(rng: np.random.Generator, low: float, high: float, slope: float, n: int) -> np.ndarray:
    """``n`` masses from dN/dm ~ m^slope on [low, high] by inverse transform (slope != -1)."""
    a, b = low ** (slope + 1), high ** (slope + 1)
    return (a + (b - a) * rng.uniform(0.0, 1.0, n)) ** (1.0 / (slope + 1))


def de_broglie_arcsec(axion_mass: float, sigma_v: float, priors: LensPriors = PRIORS) -> float:
    """Angle at the lens of one de Broglie wavelength h / (m_a v), for m_a in eV and v in km/s."""
    wavelength_km = _PLANCK_EV_S * _C_KM_S / (axion_mass * sigma_v / _C_KM_S)  # h c / (m c^2 * v / c)
    return kpc_to_arcsec(wavelength_km / _KM_PER_KPC, priors.z_lens)


def draw_lens(rng: np.random.Generator, kind: str, priors: LensPriors = PRIORS) -> LensDraw:
    """Draw the physical values of one image of class ``kind``.

    The main lens, source and PSF are drawn first and identically for every class, so the three classes
    share their distributions; the substructure is drawn after them.

    Args:
        rng: The image's own generator (seeded from global seed, class and index).
        kind: One of ``CLASSES``.
        priors: The prior table.

    Returns:
        The draw.
    """
    if kind not in CLASSES:
        raise ValueError(f"class must be one of {CLASSES}, got {kind!r}")
    mass_einstein = float(10 ** rng.uniform(*priors.log10_mass_einstein))
    theta_e = einstein_radius(mass_einstein, priors.z_lens, priors.z_source)
    e1, e2 = _polar(rng, priors.lens_ellipticity)
    cx, cy = rng.uniform(-priors.lens_offset, priors.lens_offset, 2)
    lens = {"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": float(cx), "center_y": float(cy)}
    g1, g2 = _polar(rng, priors.shear)
    ((sx, sy),) = _in_annulus(rng, 0.0, priors.source_offset, 1)
    s1, s2 = _polar(rng, priors.source_ellipticity)
    source = {
        "R_sersic": float(rng.uniform(*priors.source_radius)),
        "n_sersic": float(rng.uniform(*priors.source_index)),
        "e1": s1,
        "e2": s2,
        "center_x": float(sx + cx),
        "center_y": float(sy + cy),
    }
    magnitude = float(rng.uniform(*priors.source_magnitude))
    common = {
        "kind": kind,
        "mass_einstein": mass_einstein,
        "theta_e": theta_e,
        "sigma_v": velocity_dispersion(theta_e, priors.z_lens, priors.z_source),
        "lens": lens,
        "shear": {"gamma1": g1, "gamma2": g2},
        "source": source,
        "source_magnitude": magnitude,
        "psf_fwhm": float(rng.uniform(*priors.psf_fwhm)),
    }
    inner, outer = (r * theta_e for r in priors.substructure_annulus)
    if kind == "cdm":
        n = int(rng.poisson(priors.subhalo_count_mean))
        low, high = (10**x for x in priors.log10_subhalo_mass)
        masses = _power_law(rng, low, high, priors.subhalo_slope, n)
        where = _in_annulus(rng, inner, outer, n) + np.array([cx, cy])  # (n, 2)
        return LensDraw(
            **common,
            subhalo_masses=tuple(float(m) for m in masses),
            subhalo_positions=tuple((float(x), float(y)) for x, y in where),
        )
    if kind == "axion":
        axion_mass = float(10 ** rng.uniform(*priors.log10_axion_mass))
        length = de_broglie_arcsec(axion_mass, common["sigma_v"], priors)
        ((vx, vy),) = _in_annulus(rng, inner, outer, 1) + np.array([cx, cy])
        angle = rng.uniform(0.0, np.pi)
        n_points = int(np.ceil(length / priors.vortex_spacing)) + 1
        along = np.linspace(-length / 2, length / 2, n_points)
        points = np.stack([vx + along * np.cos(angle), vy + along * np.sin(angle)], axis=1)
        return LensDraw(
            **common,
            axion_mass=axion_mass,
            vortex_length=length,
            vortex_mass=float(10 ** rng.uniform(*priors.log10_vortex_mass)),
            vortex_points=tuple((float(x), float(y)) for x, y in points),
        )
    return LensDraw(**common)
