"""Checks for input that decodes but does not look like the films a model was trained on.

Each check that fires gives a :class:`Check` ``{code, message, value}``: a stable ``code`` for
scripts and reports, a sentence for people (the prediction's ``warnings`` list holds these), and
the measured value. The ``noise`` check reads two scales: a fixed fraction of the film (its 64 x 64
view, as wide a view of a 128 px film as of a 4096 px one) and the pixels themselves (the noise
left once smooth structure is cancelled, in the film's centre), so uniform noise is flagged at any
size, not only where 64 px averages it little. None stops a prediction, except a constant image (every pixel the same), where
no prediction means anything. Which checks apply is the card's ``checks`` profile (see
:data:`PROFILES`): the texture and negative-film thresholds were fitted on chest films, so only a
chest-film model uses them. ``python -m benchmarks.trust`` reports how often each fires on the
held-out test split (false alarms) and on deliberately wrong inputs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from edgecxr.core.imageio import ImageError, LoadedImage  # first: it sets OpenCV's pixel limit, which cv2 reads when loaded

# isort: split
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edgecxr.core.preprocess import PreprocessSpec, preprocess
from edgecxr.core.regions import centre, region_masks

# Set by hand, then checked on the shared films (the trust report counts how often they fire):
SMALL_SIDE = 64  # px: below this an X-ray has lost most of its detail
NEARLY_UNIFORM_STD = 0.02  # intensity std in [0, 1] units: a blank or washed-out frame
COLOR_SPREAD = 0.08  # mean |R-G|,|G-B| in [0, 1] units: a colour photograph, not a radiograph
EXTREME_ASPECT = 2.5  # long side / short side
# Chosen on a 64x64 view (CHECK_SIZE) of the 5116 train + val films of ../shared/data/cxr3; the
# test split and the full-resolution originals are held out for the trust report. Mean |Laplacian|
# is at most 0.177 on those films and at least 0.249 on uniform noise, so 0.2 sits between. The
# mediastinum is darker than the lung prior by more than 0.05 on 0.5% of them, and on 96.5% of
# the same films inverted.
CHECK_SIZE = 64
NOISE_LAPLACIAN = 0.2
NEGATIVE_CONTRAST = -0.05
# Pixel-level noise (Immerkaer 1996, "Fast noise variance estimation": the mean |response| of a 3x3
# kernel that cancels smooth structure, scaled to the standard deviation of white noise), measured
# in the film's CENTRE at the resolution it was read at (at most edgecxr.imageio.WORK_SIDE). The 64 px
# view averages noise away as the pixel count grows (uniform noise: texture 0.52 at 128 px, 0.13 at
# 512, 0.03 at 2048); this does not (0.29 at 128 to 2048 px, 0.15 at 4096 px read as 2048). On the
# same 5116 train + val films it is at most 0.027 (99.9th percentile 0.017); 0.04 sits above them.
NOISE_SIGMA = 0.04
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_MASKS = region_masks(CHECK_SIZE, CHECK_SIZE)
_CHECK_SPEC = PreprocessSpec(size=(CHECK_SIZE, CHECK_SIZE))

# The checks of each profile a card can name; "generic" keeps those that hold for any radiograph.
GENERIC_CHECKS = ("small_image", "extreme_aspect", "nearly_uniform", "colour")
# "no_lungs" needs the bundled lung-field model, so input_checks never makes it: Model.predict adds it
# (edgecxr.core.lungs.LungFields.checks); benchmarks/results/lungs/ measures its false alarms and catches.
PROFILES = {"chest-xray": (*GENERIC_CHECKS, "noise", "negative_film", "no_lungs"), "generic": GENERIC_CHECKS}
DEFAULT_PROFILE = "chest-xray"


@dataclass(frozen=True)
class Check:
    """One check that fired: ``code`` (stable), ``message`` (for people), ``value`` (what was measured)."""

    code: str
    message: str
    value: float | None = None

    def to_dict(self) -> dict[str, str | float | None]:
        return asdict(self)


def input_checks(image: LoadedImage, frame: np.ndarray | None = None, profile: str = DEFAULT_PROFILE) -> list[Check]:
    """The checks of ``profile`` that fire on ``image``, in a fixed order (all but ``no_lungs``, which Model.predict adds).

    ``frame`` may be the model's input for this image when that is the whole film area-resized
    (see :func:`check_view`); the checks then reuse it instead of resizing the image again.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown check profile {profile!r}; choose from {sorted(PROFILES)}")
    wanted = PROFILES[profile]
    out = []
    h, w = image.original_shape
    if min(h, w) < SMALL_SIDE:
        out.append(Check("small_image", f"very small image ({w}x{h} px); predictions on it are unreliable", float(min(h, w))))
    aspect = max(h, w) / min(h, w)
    if aspect > EXTREME_ASPECT:
        out.append(Check("extreme_aspect", f"extreme aspect ratio ({w}x{h}); not a typical chest radiograph", round(aspect, 3)))
    std = float(cv2.meanStdDev(image.pixels)[1][0, 0])
    if std < NEARLY_UNIFORM_STD:
        out.append(Check("nearly_uniform", "image is blank or nearly uniform", round(std, 5)))
    if image.color_spread > COLOR_SPREAD:
        out.append(Check("colour", f"colour image (channel spread {image.color_spread:.2f}); chest radiographs are grayscale", round(image.color_spread, 4)))
    if "noise" in wanted or "negative_film" in wanted:
        view = check_view(image.pixels, frame)
        busy = float(np.abs(cv2.Laplacian(view, cv2.CV_32F)).mean())
        grain = pixel_noise(image.pixels) if "noise" in wanted else 0.0
        if "noise" in wanted and grain > NOISE_SIGMA:
            out.append(Check("noise", f"looks like noise (pixel noise {grain:.3f}, chest X-rays stay below {NOISE_SIGMA})", round(grain, 4)))
        elif "noise" in wanted and busy > NOISE_LAPLACIAN:
            out.append(Check("noise", f"looks like noise (texture {busy:.2f} at {CHECK_SIZE} px, chest X-rays stay below {NOISE_LAPLACIAN})", round(busy, 4)))
        contrast = float(view[_MASKS["spine"]].mean() - view[_MASKS["lungs"]].mean())
        if "negative_film" in wanted and contrast < NEGATIVE_CONTRAST:
            out.append(Check(
                "negative_film",
                f"possibly a negative (inverted) film: the mediastinum is darker than the lung fields ({contrast:.2f})",
                round(contrast, 4),
            ))
    return [c for c in out if c.code in wanted]


def pixel_noise(pixels: np.ndarray) -> float:
    """The standard deviation of the pixel-level noise in the :data:`~edgecxr.regions.CENTRE` of a 2-D image in [0, 1] (see :data:`NOISE_SIGMA`)."""
    middle = centre(pixels)
    if min(middle.shape) < 3:
        return 0.0
    response = cv2.filter2D(middle, cv2.CV_32F, _NOISE_KERNEL)[1:-1, 1:-1]  # the border rows are not the image's own
    return float(cv2.mean(np.abs(response))[0]) * float(np.sqrt(np.pi / 2)) / 6.0


def check_view(pixels: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
    """The CHECK_SIZE x CHECK_SIZE view the texture and negative-film checks read.

    It is the whole film area-resized; a ``frame`` that is itself the whole film area-resized to
    at least CHECK_SIZE (from an image at least that large) gives nearly the same view for far less
    work than resizing a full-size film a second time.
    """
    h, w = pixels.shape
    if frame is not None and min(frame.shape[:2]) >= CHECK_SIZE and min(h, w) >= min(frame.shape[:2]):
        return cv2.resize(frame[:, :, 0], (CHECK_SIZE, CHECK_SIZE), interpolation=cv2.INTER_AREA)
    return preprocess(pixels, _CHECK_SPEC)[:, :, 0]


def refuse_blank(image: LoadedImage, file: str | None) -> None:
    """Raise :class:`ImageError` for a constant image: it holds nothing to classify."""
    low, high, _, _ = cv2.minMaxLoc(image.pixels)  # one pass over the film
    if low == high:
        raise ImageError(file or "<array>", f"blank image (every pixel is {low:.3f}); nothing to classify")
