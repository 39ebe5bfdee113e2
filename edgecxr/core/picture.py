"""The picture of one prediction a person reads: the film, its heatmap inside the lung fields, a colour bar, the call, the research-use line.

    from edgecxr.core.picture import result_picture, encode
    p = model.predict(image, heatmap=True)             # image: a LoadedImage (edgecxr.load_image)
    picture = result_picture(image.pixels, p, p.lungs)  # BGR uint8, at most MAX_SIDE px on its long side
    data = encode(picture, "jpeg")                      # or "png"

The heatmap (:mod:`edgecxr.core.cam`) is drawn only inside the lung fields, grown by
:data:`LUNG_MARGIN` of the film's long side and feathered, so corners, neck and labels stay the
plain film; without lung fields (none found, or none given) it covers the whole film and the
picture says so. It shows the class ``prediction.heatmap_label`` names (for a Normal call the most
likely abnormal class, labelled so). Below the film: the call with its probability (a tie said
as one), the colour bar from low to high evidence, the input warnings and the research-use line.
The picture is made at most :data:`MAX_SIDE` px on its long side and at least :data:`MIN_WIDTH`
wide when that fits, so the text stays legible on a small film; the film's own pixels and file are
never changed. One function for ``predict --heatmap`` and the web page's study view.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


class Prediction(Protocol):
    """What the picture reads of a prediction (:class:`edgecxr.core.model.Prediction`; not imported: the model imports the lung model, which writes with :class:`PictureWriter`)."""

    @property
    def label(self) -> str: ...

    @property
    def probabilities(self) -> Mapping[str, float]: ...

    @property
    def model(self) -> str: ...

    @property
    def heatmap(self) -> np.ndarray | None: ...

    @property
    def heatmap_label(self) -> str | None: ...

    @property
    def tied(self) -> list[str]: ...

    @property
    def warnings(self) -> list[str]: ...

MAX_SIDE = 1024  # px: the long side of the whole picture (film and text) at most
MIN_WIDTH = 512  # px: a smaller film is enlarged to this width (when the height allows) so the text can be read
LUNG_MARGIN = 0.03  # of the film's long side: how far the heatmap reaches beyond the lung fields
BOUNDS_SIDE = 256  # px: the long side the lung bounds are grown and feathered at (then resized to the picture)
ALPHA = 0.45  # the heatmap's weight over the film inside the lung fields
NOTICE = "RESEARCH USE ONLY - NOT A DIAGNOSIS"
FORMATS = {"png": ".png", "jpeg": ".jpg"}  # --heatmap-format: file suffix of each
JPEG_QUALITY = 90
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def result_picture(
    image: np.ndarray, prediction: Prediction, lungs: np.ndarray | None = None, max_side: int = MAX_SIDE,
    lines: Sequence[str] | None = None, min_width: int = MIN_WIDTH,
) -> np.ndarray:
    """The picture of ``prediction`` on ``image`` (2-D, values in [0, 1]): BGR uint8, at most ``max_side`` px long.

    ``prediction.heatmap`` ((h, w) in [0, 1] over the image, any size of the same aspect) is drawn
    inside ``lungs`` (a mask over the image, nonzero = lung, any size of the same aspect); without
    a heatmap (a model that has none) the picture is the film and its text. The text is
    :func:`text_lines` unless ``lines`` are given (the clinic's results say more); a film
    narrower than ``min_width`` is enlarged to it when the height allows. ``image`` is not changed.
    """
    heat = prediction.heatmap
    bounded = lungs is not None and bool(np.any(lungs))
    lines = text_lines(prediction, bounded) if lines is None else list(lines)
    height, width = image.shape[:2]
    scale = min(max_side / max(height, width), max(1.0, min_width / width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    band = _band(lines, size[0], heat is not None)
    room = max_side - band.shape[0]
    fit = (max(1, round(size[0] * room / size[1])), room) if size[1] > room > 0 else size  # the band needs room: the film shrinks, the width (and text) stays
    film = _gray(image, fit)
    if heat is not None:
        weight = _bounds(lungs, fit) if lungs is not None and bounded else None
        film = _tint(film, cv2.resize(heat.astype(np.float32), fit, interpolation=cv2.INTER_LINEAR), weight)
    if fit != size:
        framed = np.zeros((fit[1], size[0], 3), np.uint8)
        left = (size[0] - fit[0]) // 2
        framed[:, left : left + fit[0]] = film
        film = framed
    return np.vstack([film, band])[:max_side]  # (a band alone taller than max_side, of very many warnings, is cut)


def text_lines(prediction: Prediction, bounded: bool = True) -> list[str]:
    """What the picture says under the film, line by line (ASCII: OpenCV's fonts have no other glyphs); the colour bar follows the second line."""
    probs = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])
    tied = prediction.tied
    if tied:
        call = f"tie: {' = '.join(tied)} {prediction.probabilities[tied[0]]:.3f}"
        rest = [kv for kv in probs if kv[0] not in tied]
    else:
        call, rest = f"{prediction.label} {prediction.probabilities[prediction.label]:.3f}", probs[1:]
    lines = [call + ("   (" + ", ".join(f"{k} {v:.3f}" for k, v in rest) + ")" if rest else "")]
    if prediction.heatmap is not None:
        shown = prediction.heatmap_label or prediction.label
        what = f"heatmap: evidence for {shown}"
        if shown != prediction.label:
            what += f" (the most likely abnormal class; the call is {'a tie ' + ' / '.join(tied) if tied else prediction.label})"
        lines.append(what + ("" if bounded else "; no lung fields found, shown over the whole image"))
    lines += [f"warning: {w}" for w in prediction.warnings]
    lines.append(f"edgecxr {prediction.model}: {NOTICE}")
    return [line.encode("ascii", "replace").decode() for line in lines]


def encode(picture: np.ndarray, image_format: str = "png") -> bytes:
    """``picture`` (BGR uint8) as the bytes of a PNG or JPEG file (:data:`FORMATS`)."""
    if image_format not in FORMATS:
        raise ValueError(f"unknown picture format {image_format!r}; choose from {', '.join(FORMATS)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, data = cv2.imencode(FORMATS[image_format], picture, params)
    if not ok:
        raise ValueError(f"could not encode a {picture.shape} picture as {image_format.upper()}")
    return data.tobytes()


class PictureWriter:
    """Writes pictures as ``<stem><suffix>`` into one folder, never overwriting an earlier one of the same run (``<stem>-2<suffix>``...)."""

    def __init__(self, folder: Path, suffix: str = ".heatmap.png", image_format: str = "png") -> None:
        self.folder, self.suffix, self.format = folder, suffix, image_format
        self.used: set[str] = set()

    @classmethod
    def heatmaps(cls, folder: Path, image_format: str = "png") -> PictureWriter:
        """The writer of ``predict --heatmap``: ``<stem>.heatmap.png`` or ``<stem>.heatmap.jpg``."""
        return cls(folder, ".heatmap" + FORMATS[image_format], image_format)

    def write(self, source: Path, picture: np.ndarray) -> str:
        """Write ``picture`` (BGR or gray uint8) as the picture of the image ``source``; return the file written."""
        name, n = f"{source.stem}{self.suffix}", 1
        while name in self.used:
            n += 1
            name = f"{source.stem}-{n}{self.suffix}"
        self.used.add(name)
        target = self.folder / name
        target.write_bytes(encode(picture, self.format))  # encoded here and written by Python: OpenCV cannot open every file name
        return str(target)


def _gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The film at ``size`` (width, height) as BGR uint8, stretched between its 1st and 99th percentiles (a 12-bit film in 16 bits is not shown black)."""
    shrink = size[0] < image.shape[1]
    resized = cv2.resize(image.astype(np.float32, copy=False), size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    low, high = np.percentile(resized, (1, 99))
    gray = np.clip((resized - low) * (255.0 / max(float(high - low), 1e-6)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def _bounds(lungs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The lung mask at ``size``, grown by :data:`LUNG_MARGIN` of the long side and feathered: float32 weights in [0, 1].

    Grown and feathered at :data:`BOUNDS_SIDE` px on the long side, then resized: the weights are smooth, so this is the
    same picture (within a few grey levels) for a tenth of the work of a 59 px dilation and blur at full size."""
    small = tuple(max(1, round(s * min(1.0, BOUNDS_SIDE / max(size)))) for s in size)
    mask = cv2.resize((np.asarray(lungs) > 0).astype(np.uint8), small, interpolation=cv2.INTER_NEAREST)
    radius = max(1, round(LUNG_MARGIN * max(small)))
    grown = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    return cv2.resize(cv2.GaussianBlur(grown.astype(np.float32), (0, 0), radius / 2), size, interpolation=cv2.INTER_LINEAR)


def _tint(film: np.ndarray, heat: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """The JET colours of ``heat`` over ``film`` at :data:`ALPHA`, times ``weight`` per pixel (everywhere when None)."""
    colour = cv2.applyColorMap(np.round(np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    a = np.full(heat.shape, ALPHA, np.float32) if weight is None else weight * np.float32(ALPHA)
    return cv2.blendLinear(colour, film, a, 1 - a)


def _band(lines: Sequence[str], width: int, colour_bar: bool) -> np.ndarray:
    """The text band under the film: ``lines`` wrapped to ``width``, with the colour bar after the second line when asked."""
    size = max(width, 360) / 1100
    thick = max(1, round(size * 2))
    step = round(cv2.getTextSize("Ag", _FONT, size, thick)[0][1] * 1.9)
    rows: list[str | None] = []
    for i, line in enumerate(lines):
        rows += _wrap(line, size, thick, width - step)
        if colour_bar and i == 1:
            rows.append(None)  # the colour bar's row
    band = np.zeros((step * len(rows) + step // 2, width, 3), np.uint8)
    for i, row in enumerate(rows):
        y = step * (i + 1)
        if row is None:
            _colour_bar(band, y, step, size, thick)
        else:
            cv2.putText(band, row, (step // 2, y), _FONT, size, (0, 200, 255) if NOTICE in row else (255, 255, 255), thick, cv2.LINE_AA)
    return band


def _colour_bar(band: np.ndarray, y: int, step: int, size: float, thick: int) -> None:
    """A JET bar from "low" to "high" (evidence) on the row whose text baseline is ``y``."""
    low_w = cv2.getTextSize("low", _FONT, size, thick)[0][0]
    high_w = cv2.getTextSize("high evidence", _FONT, size, thick)[0][0]
    x0, x1 = step // 2 + low_w + step // 3, band.shape[1] - step // 2 - high_w - step // 3
    cv2.putText(band, "low", (step // 2, y), _FONT, size, (255, 255, 255), thick, cv2.LINE_AA)
    cv2.putText(band, "high evidence", (x1 + step // 3, y), _FONT, size, (255, 255, 255), thick, cv2.LINE_AA)
    if x1 > x0:
        ramp = cv2.applyColorMap(np.linspace(0, 255, x1 - x0).astype(np.uint8)[None, :], cv2.COLORMAP_JET)
        top = y - round(step * 0.55)
        band[top:y, x0:x1] = ramp


def _wrap(line: str, size: float, thick: int, room: int) -> list[str]:
    out, current = [], ""
    for word in line.split(" "):
        trial = f"{current} {word}" if current else word
        if current and cv2.getTextSize(trial, _FONT, size, thick)[0][0] > room:
            out.append(current)
            current = word
        else:
            current = trial
    return [*out, current]
