"""Distances and lens scalings of the simulator's flat LambdaCDM cosmology (astropy)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# DeepLense's cosmology: flat LambdaCDM, H0 = 70 km/s/Mpc, Omega_m = 0.3, Omega_b = 0.05.
H0 = 70.0
OMEGA_M = 0.3
OMEGA_B = 0.05
_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0


@lru_cache(maxsize=1)
def cosmology():  # -> astropy.cosmology.FlatLambdaCDM (astropy is imported lazily: it is slow)
    """The astropy cosmology instance (built once per process)."""
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=H0, Om0=OMEGA_M, Ob0=OMEGA_B)


@lru_cache(maxsize=16)
def distances_mpc(z_lens: float, z_source: float) -> tuple[float, float, float]:
    """Angular-diameter distances (D_l, D_s, D_ls) in Mpc."""
    cosmo = cosmology()
    chi_l = float(cosmo.comoving_distance(z_lens).to_value("Mpc"))
    chi_s = float(cosmo.comoving_distance(z_source).to_value("Mpc"))
    # Flat universe: D_ls = (chi_s - chi_l) / (1 + z_s); the same in every astropy version.
    return chi_l / (1 + z_lens), chi_s / (1 + z_source), (chi_s - chi_l) / (1 + z_source)


@lru_cache(maxsize=16)
def _einstein_scale(z_lens: float, z_source: float) -> float:
    """theta_E in arcsec of 1 Msun: sqrt(4 G / c^2 * D_ls / (D_l D_s))."""
    from astropy import constants, units

    d_l, d_s, d_ls = distances_mpc(z_lens, z_source)
    factor = 4 * constants.G * units.Msun / constants.c**2 * d_ls / (d_l * d_s) / units.Mpc
    return float(np.sqrt(factor.to_value(units.dimensionless_unscaled)) * _ARCSEC_PER_RAD)


def einstein_radius(mass: float, z_lens: float, z_source: float) -> float:
    """Einstein radius in arcsec of a lens holding ``mass`` Msun inside it (point mass, or any circular lens).

    Args:
        mass: Projected mass inside the Einstein radius, Msun.
        z_lens: Lens redshift.
        z_source: Source redshift.
    """
    return _einstein_scale(z_lens, z_source) * float(np.sqrt(mass))


def velocity_dispersion(theta_e: float, z_lens: float, z_source: float) -> float:
    """Velocity dispersion in km/s of the singular isothermal sphere with Einstein radius ``theta_e`` arcsec.

    theta_E = 4 pi (sigma / c)^2 D_ls / D_s.
    """
    _, d_s, d_ls = distances_mpc(z_lens, z_source)
    return float(299792.458 * np.sqrt(theta_e / _ARCSEC_PER_RAD * d_s / (4 * np.pi * d_ls)))


def kpc_to_arcsec(length_kpc: float, z: float) -> float:
    """Angle in arcsec of a proper length in kpc at redshift ``z``."""
    d_l = float(cosmology().angular_diameter_distance(z).to_value("kpc"))
    return length_kpc / d_l * _ARCSEC_PER_RAD
