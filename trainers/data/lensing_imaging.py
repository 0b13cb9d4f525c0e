"""Render one drawn lens through lenstronomy: ray shooting, PSF, Euclid-VIS noise, min-max normalization.

Images are in e-/s per pixel until ``normalize``; the noise model is lenstronomy's Euclid VIS band
(sky + read noise as a Gaussian background, Poisson noise of the source counts).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from maetune.trainers.data.lensing_cosmology import einstein_radius
from maetune.trainers.data.lensing_params import PRIORS, LensDraw, LensPriors


@lru_cache(maxsize=8)
def instrument(image_size: int, priors: LensPriors = PRIORS):  # -> lenstronomy SingleBand
    """Euclid VIS band at the simulator's pixel scale (field of view / image size)."""
    from lenstronomy.SimulationAPI.observation_api import SingleBand
    from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid

    band = Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=priors.coadd_years).kwargs_single_band()
    band["pixel_scale"] = priors.field_of_view / image_size
    return SingleBand(**band)


@lru_cache(maxsize=8)
def _image_data(image_size: int, priors: LensPriors = PRIORS):  # -> lenstronomy ImageData
    """The pixel grid, centred on the optical axis."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Util import util

    band = instrument(image_size, priors)
    grid = util.make_grid_with_coordtransform(image_size, band.pixel_scale, inverse=False)
    _, _, ra0, dec0, _, _, pix2angle, _ = grid
    return ImageData(
        np.zeros((image_size, image_size)),
        exposure_time=band.exposure_time,
        background_rms=band.background_noise,
        ra_at_xy_0=ra0,
        dec_at_xy_0=dec0,
        transform_pix2angle=pix2angle,
    )


def _lens_models(draw: LensDraw, substructure: bool) -> tuple[list[str], list[dict[str, float]]]:
    """lenstronomy lens model names and keywords of ``draw``, with or without its substructure.

    With substructure, the smooth SIE gives up the substructure mass that falls inside theta_E, so the
    total mass inside the Einstein radius (and so the ring radius) is the same in every class.
    """
    names, lens = ["SIE", "SHEAR"], dict(draw.lens)
    points = list(zip(draw.subhalo_masses, draw.subhalo_positions, strict=True)) if substructure else []
    if substructure and draw.vortex_mass is not None:
        each = draw.vortex_mass / len(draw.vortex_points)
        points += [(each, xy) for xy in draw.vortex_points]
    centre = np.array([lens["center_x"], lens["center_y"]])
    inside = sum(m for m, xy in points if np.hypot(*(np.asarray(xy) - centre)) < draw.theta_e)
    lens["theta_E"] = draw.theta_e * (1.0 - inside / draw.mass_einstein)  # M(<theta_E) = M_E kept
    kwargs = [lens, dict(draw.shear)]
    for mass, (x, y) in points:
        names.append("POINT_MASS")
        kwargs.append(
            {"theta_E": einstein_radius(mass, PRIORS.z_lens, PRIORS.z_source), "center_x": x, "center_y": y}
        )
    return names, kwargs


def warm_up(image_size: int = 64) -> None:
    """Import lenstronomy and fill the instrument caches, so that forked workers inherit them."""
    from lenstronomy.Data.psf import PSF  # noqa: F401
    from lenstronomy.ImSim.image_model import ImageModel  # noqa: F401
    from lenstronomy.LensModel.lens_model import LensModel  # noqa: F401
    from lenstronomy.LightModel.light_model import LightModel  # noqa: F401

    _image_data(image_size)
    einstein_radius(1.0, PRIORS.z_lens, PRIORS.z_source)


def render_model(draw: LensDraw, image_size: int = 64, substructure: bool = True) -> np.ndarray:
    """The noise-free image of ``draw`` in e-/s per pixel.

    Args:
        draw: The lens, source, PSF and substructure.
        image_size: Pixels per side (the field of view is fixed).
        substructure: Include the subhalos / vortex (``False``: the same lens with a smooth halo only).

    Returns:
        ``(image_size, image_size)`` float64.
    """
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    band = instrument(image_size)
    names, kwargs_lens = _lens_models(draw, substructure)
    light = LightModel(["SERSIC_ELLIPSE"])
    source = {"amp": 1.0, **draw.source}
    # Scale the Sersic amplitude so the unlensed source has the drawn magnitude.
    source["amp"] = band.magnitude2cps(draw.source_magnitude) / light.total_flux([source])[0]
    psf = PSF(psf_type="GAUSSIAN", fwhm=draw.psf_fwhm, pixel_size=band.pixel_scale, truncation=4)
    numerics = {"supersampling_factor": PRIORS.supersampling, "supersampling_convolution": False}
    model = ImageModel(
        _image_data(image_size),
        psf,
        lens_model_class=LensModel(names),
        source_model_class=light,
        kwargs_numerics=numerics,
    )
    return np.asarray(model.image(kwargs_lens, [source]), dtype=np.float64)


def render_pair(draw: LensDraw, image_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The same lens and source with and without the substructure, noise-free, in e-/s.

    Returns:
        ``(with_substructure, without)``, each ``(image_size, image_size)``.
    """
    return render_model(draw, image_size, True), render_model(draw, image_size, False)


def noise_sigma(model: np.ndarray, image_size: int = 64) -> np.ndarray:
    """Per-pixel noise sigma (e-/s) of observing the noise-free ``model``: background and Poisson."""
    band = instrument(image_size)
    return np.sqrt(band.background_noise**2 + np.clip(model, 0.0, None) / band.exposure_time)


def substructure_sigma(draw: LensDraw, image_size: int = 64) -> float:
    """RMS over the image of (with - without substructure) / noise sigma, noise-free: its visibility.

    0 for ``no_sub``; a value of k means the substructure changes the average pixel by k noise sigmas.
    """
    with_sub, without = render_pair(draw, image_size)
    return float(np.sqrt(np.mean(((with_sub - without) / noise_sigma(without, image_size)) ** 2)))


def observe(model: np.ndarray, rng: np.random.Generator, image_size: int = 64) -> np.ndarray:
    """Add Euclid VIS noise to a noise-free ``model``: Poisson source counts plus Gaussian background."""
    band = instrument(image_size)
    exposure = band.exposure_time
    counts = np.clip(model, 0.0, None) * exposure
    poisson = (rng.poisson(counts) - counts) / exposure
    return model + poisson + rng.normal(0.0, band.background_noise, model.shape)


def normalize(image: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (float64), as the DeepLense images are."""
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def render_image(draw: LensDraw, rng: np.random.Generator, image_size: int = 64) -> np.ndarray:
    """The observed, normalized image of ``draw``: ``(image_size, image_size)`` float64 in [0, 1]."""
    return normalize(observe(render_model(draw, image_size), rng, image_size))
