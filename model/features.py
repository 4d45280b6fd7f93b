"""The one preprocessing function: any image of a digit -> `side*side` ink values from 0 to 16.

Training (scikit-learn's digits, MNIST, an image folder), serving (uploads and the drawing pad), batch
scoring and the evaluation sets all go through `image_to_features`, so none can drift from another.

Every layout starts the same way: grayscale, the background and the polarity read from the border,
contrast stretched to the darkest ink, specks dropped, cropped to the ink. Then:
- side 8 (scikit-learn's digits, the models registered before layouts were recorded): the ink fills
  32x32, thickened as the digits' thick pen was, counted in 4x4 blocks;
- any other side (28 for MNIST): MNIST's framing. The ink is fitted into a 20x20 box keeping its
  aspect ratio, its strokes brought to MNIST's thickness, centred by mass in 28x28 and deskewed, then
  resampled to the side asked for.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from model.errors import BlankImage

MAX_VALUE = 16.0
LEGACY_SIDE = 8  # scikit-learn's digits
SIDE = LEGACY_SIDE
N_FEATURES = LEGACY_SIDE * LEGACY_SIDE  # of the legacy layout (feedback from 8x8 models)
MNIST_SIDE = 28
_BOX = 20  # MNIST fits each digit into 20x20 and centres it by mass in 28x28
_WORK = 2 * _BOX  # thickness is normalised at twice the box's resolution, then averaged down
_MAX_WORK_SIDE = 160  # larger uploads are reduced to this before anything else (a phone photo: 12 MP)
_MIN_CONTRAST = 0.12  # of the full black-white range: less is a blank page, or noise
_INK = 0.3  # after the contrast stretch, where ink begins
_SPECK_SHARE = 0.04  # a blob smaller than this share of the largest one is dust, noise or a shadow
_STROKE = 5.5  # MNIST's median stroke width at _WORK (2 * area / boundary), measured on 10,000 digits
_MAX_THICKNESS_STEPS = 8
_EIGHT = np.ones((3, 3), dtype=bool)  # diagonal neighbours belong to the same stroke
_LEGACY_WORK = 32  # the digits set was made from 32x32 bitmaps counted in 4x4 blocks
LEGACY_STROKE = 7.0  # at 32 px: scikit-learn's digits were written with a thick pen


def image_to_features(image: Image.Image, side: int = LEGACY_SIDE) -> np.ndarray:
    """The image as `side*side` floats from 0 to 16 (ink), in the layout models of that side take."""
    crop = ink_crop(image)
    grid = _legacy(crop) if side == LEGACY_SIDE else _mnist(crop, side)
    return np.round(grid.astype(np.float64) * MAX_VALUE, 3).reshape(side * side)


def ink_crop(image: Image.Image) -> np.ndarray:
    """The ink, from 0 (background) to 1 (the darkest stroke), cropped to its bounding box."""
    pixels, ink_of, mask = _ink(image)
    box = _box(mask)
    if box is None:
        raise BlankImage("the image is blank: draw or upload a digit with visible strokes")
    ink, mask = ink_of.take(pixels[box]), mask[box]  # nothing outside the ink's box needs its ink or labelling
    labels, count = ndimage.label(mask, structure=_EIGHT)
    if count <= 1:
        return ink
    sizes = np.bincount(labels.ravel())  # keep the digit, drop specks (noise, dust, the corner of a shadow)
    sizes[0] = 0
    mask = (sizes >= max(2, _SPECK_SHARE * sizes.max()))[labels]
    box = _box(mask)
    assert box is not None  # the largest blob stays
    return np.where(_grow(mask[box], 3), ink[box], 0.0)  # faint anti-aliasing next to kept strokes stays


def _box(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _ink(image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image's gray levels (uint8), the ink of each of the 256 levels from 0 to 1 (`ink_of[pixels]`
    is the image's ink), and where the ink is over _INK; whatever the mode, transparency, background
    colour or polarity.

    A pixel's ink depends on its level alone, so it is worked out for 256 levels (the same float32
    operations as for every pixel, the same values). The ink is the deviation from the border's median
    in the polarity with more of it: dark ink when the levels' mean is under that median. The ink grows
    monotonically away from the background, so the pixels over _INK are those past one level.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    gray_image = image if image.mode == "L" else ImageOps.grayscale(image)
    scale = _MAX_WORK_SIDE / max(gray_image.size)
    if scale < 1:  # area-averaged: a thin stroke fades but stays, the contrast stretch brings it back
        size = (max(1, round(gray_image.width * scale)), max(1, round(gray_image.height * scale)))
        gray_image = gray_image.resize(size, Image.Resampling.BOX)
    pixels = np.asarray(gray_image)
    if min(gray_image.size) >= 48:  # sensor noise and paper grain: a 3x3 median keeps strokes of 2 px and more
        pixels = median3(pixels)
    ring = max(1, min(pixels.shape) // 32)
    border = np.concatenate(
        [pixels[:ring].ravel(), pixels[-ring:].ravel(), pixels[:, :ring].ravel(), pixels[:, -ring:].ravel()]
    )
    n = border.size
    middle = np.partition(border, (n // 2 - 1, n // 2))
    low, high = int(middle[(n - 1) // 2]), int(middle[n // 2])  # the median is their mean
    background = _GRAY[high] if low == high else (_GRAY[low] + _GRAY[high]) / 2
    deviation = _GRAY - background
    dark = 2 * int(pixels.sum()) <= pixels.size * (low + high)  # the deviations' sum is not positive
    if dark:
        ink, extreme = np.maximum(-deviation, 0), int(pixels.min())
    else:
        ink, extreme = np.maximum(deviation, 0), int(pixels.max())
    peak = float(ink[extreme])
    if peak < _MIN_CONTRAST:
        raise BlankImage("the image is blank: draw or upload a digit with visible strokes")
    ink /= peak  # from 0 to 1: no value is above the peak
    inked = np.flatnonzero(ink > _INK)
    mask = pixels <= inked[-1] if dark else pixels >= inked[0]
    return pixels, ink, mask


_GRAY = np.arange(256, dtype=np.float32) / 255.0  # a level's gray, from 0 (black) to 1 (white)


def median3(pixels: np.ndarray) -> np.ndarray:
    """3x3 median with the edges repeated: Pillow's MedianFilter(3), pixel for pixel, in a fiftieth of its
    time. Each column's vertical triple is sorted once for the whole image; a pixel's median is then
    the median of the largest of its three columns' minima, the median of their medians and the
    smallest of their maxima (the median of nine, exactly), 18 array operations in all."""
    h, w = pixels.shape
    padded = np.empty((h + 2, w + 2), dtype=pixels.dtype)
    padded[1:-1, 1:-1] = pixels
    padded[0, 1:-1], padded[-1, 1:-1] = pixels[0], pixels[-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    above, here, below = padded[:-2], padded[1:-1], padded[2:]
    low, high = np.minimum(above, here), np.maximum(above, here)
    middle, high = np.minimum(high, below), np.maximum(high, below)
    low, middle = np.minimum(low, middle), np.maximum(low, middle)
    lows = np.maximum(np.maximum(low[:, :-2], low[:, 1:-1]), low[:, 2:])
    highs = np.minimum(np.minimum(high[:, :-2], high[:, 1:-1]), high[:, 2:])
    middles = _median_of_3(middle[:, :-2], middle[:, 1:-1], middle[:, 2:])
    return _median_of_3(lows, middles, highs)


def _median_of_3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def _resize(ink: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's resize of a float image without the image round trip: BOX when shrinking, else
    BILINEAR; a horizontal pass, then a vertical one, each summed in double with the weights Pillow
    computes and stored in float32 as Pillow's float image keeps it. Equal to Pillow's within float32
    rounding (its two-pass sums are not its own two passes composed), not bit for bit."""
    h, w = ink.shape
    box = width < w or height < h
    out = np.asarray(ink, dtype=np.float32)
    if width != w:
        out = (out.astype(np.float64) @ _weights(w, width, box).T).astype(np.float32)
    if height != h:
        out = (_weights(h, height, box) @ out.astype(np.float64)).astype(np.float32)
    return out


@lru_cache(maxsize=4096)
def _weights(size: int, out_size: int, box: bool) -> np.ndarray:
    """Pillow's resampling weights, out_size x size, computed as libImaging/Resample.c does (in double,
    in its order): a pixel's weight is the filter at its distance from the output pixel's centre."""
    scale = size / out_size
    filter_scale = max(scale, 1.0)
    support = (0.5 if box else 1.0) * filter_scale
    step = 1.0 / filter_scale
    weights = np.zeros((out_size, size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), size)
        row = [_filter((x - center + 0.5) * step, box) for x in range(first, last)]
        total = sum(row)
        weights[out, first:last] = [w / total for w in row] if total != 0.0 else row
    weights.flags.writeable = False
    return weights


def _filter(x: float, box: bool) -> float:
    if box:
        return 1.0 if -0.5 < x <= 0.5 else 0.0
    return max(1.0 - abs(x), 0.0)  # the triangle (bilinear)


def _fit(crop: np.ndarray, side: int) -> np.ndarray:
    """The crop scaled so its longer side is `side`, aspect ratio kept."""
    height, width = crop.shape
    scale = side / max(height, width)
    return _resize(crop, max(1, round(width * scale)), max(1, round(height * scale)))


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the inked area over its boundary."""
    mask = ink > 0.5
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    # inside: inked with its four neighbours inked (a pixel on the frame's edge has one outside: never inside)
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return 2.0 * area / max(area - int(np.count_nonzero(inner)), 1)


def _pad(image: np.ndarray, before: int, after: int) -> np.ndarray:
    """`image` inside a border of zeros (np.pad's constant mode, without its per-call overhead)."""
    h, w = image.shape
    out = np.zeros((h + before + after, w + before + after), dtype=image.dtype)
    out[before : before + h, before : before + w] = image
    return out


def _grow(image: np.ndarray, size: int, erode: bool = False) -> np.ndarray:
    """Grey dilation (or erosion) by a size x size square: strokes grow (or thin) by size - 1 pixels."""
    before, after = (size - 1) // 2, size // 2
    padded = _pad(image, before, after)
    h, w = image.shape
    combine = np.minimum if erode else np.maximum
    out = padded[:h, :w].copy()
    for i in range(size):
        for j in range(size):
            if i or j:
                combine(out, padded[i : i + h, j : j + w], out=out)
    return out


def _normalise_thickness(ink: np.ndarray, target: float) -> np.ndarray:
    """Grow thin strokes and thin thick ones towards `target` pixels, a pixel at a time."""
    padded = _pad(ink, 2, 2)
    for _ in range(_MAX_THICKNESS_STEPS):
        width = stroke_width(padded)
        if width < target - 1.0:
            padded = _grow(padded, 2)
        elif width > target + 1.5:
            thinner = _grow(padded, 2, erode=True)
            if (thinner > 0.5).sum() < 0.5 * (padded > 0.5).sum():
                break  # a blob, not a stroke: eroding would erase it
            padded = thinner
        else:
            break
    return padded


def _mnist(crop: np.ndarray, side: int) -> np.ndarray:
    fitted = _normalise_thickness(_fit(crop, _WORK), _STROKE)
    rows, cols = np.flatnonzero(fitted.max(axis=1) > 0.05), np.flatnonzero(fitted.max(axis=0) > 0.05)
    fitted = fitted[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = _fit(fitted, _BOX)
    box = np.clip(box / max(float(box.max()), 1e-6), 0.0, 1.0)
    canvas = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    total = float(box.sum())
    cy = float(box.sum(axis=1) @ np.arange(box.shape[0])) / total
    cx = float(box.sum(axis=0) @ np.arange(box.shape[1])) / total
    top = min(max(round(MNIST_SIDE / 2 - cy), 0), MNIST_SIDE - box.shape[0])
    left = min(max(round(MNIST_SIDE / 2 - cx), 0), MNIST_SIDE - box.shape[1])
    canvas[top : top + box.shape[0], left : left + box.shape[1]] = box
    canvas = _deskew(canvas)
    if side != MNIST_SIDE:
        canvas = _resize(canvas, side, side)
    return np.clip(canvas, 0.0, 1.0)


def _deskew(image: np.ndarray) -> np.ndarray:
    """Shear the digit upright: the slant is its second moments' covariance over the vertical variance."""
    total = float(image.sum())
    ys = np.arange(image.shape[0], dtype=np.float64)
    xs = np.arange(image.shape[1], dtype=np.float64)
    rows, cols = image.sum(axis=1), image.sum(axis=0)
    cy, cx = float(rows @ ys) / total, float(cols @ xs) / total
    var_y = float(rows @ (ys - cy) ** 2) / total
    cov = float((ys - cy) @ image @ (xs - cx)) / total
    alpha = min(max(cov / max(var_y, 1e-6), -1.0), 1.0)
    if abs(alpha) < 0.02:
        return image
    # output (y, x) reads input (y, x + alpha * (y - cy)) with the mass centred
    matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([0.0, -alpha * cy])
    return ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="constant", cval=0.0)


def _legacy(crop: np.ndarray) -> np.ndarray:
    """scikit-learn's digits: the ink fills 32x32 with their thick pen's strokes, counted in 4x4 blocks."""
    fitted = _normalise_thickness(_fit(crop, _LEGACY_WORK - 4), LEGACY_STROKE)
    rows, cols = np.flatnonzero(fitted.max(axis=1) > 0.05), np.flatnonzero(fitted.max(axis=0) > 0.05)
    fitted = _fit_square(fitted[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], _LEGACY_WORK, _LEGACY_WORK)
    block = _LEGACY_WORK // LEGACY_SIDE
    sums = fitted.reshape(LEGACY_SIDE, block, LEGACY_SIDE, block).sum(axis=(1, 3))
    return sums / (block * block)  # the blocks' means (np.mean's sum and division, without its overhead)


def _fit_square(ink: np.ndarray, side: int, canvas_side: int) -> np.ndarray:
    """Scale the crop so its longer side fills `side`, keep its aspect ratio, centre it on the canvas."""
    fitted = _fit(ink, side)
    canvas = np.zeros((canvas_side, canvas_side), dtype=np.float32)
    top, left = (canvas_side - fitted.shape[0]) // 2, (canvas_side - fitted.shape[1]) // 2
    canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return canvas


def side_of(n_features: int) -> int:
    """The side of a square layout of `n_features` values."""
    side = int(round(n_features**0.5))
    if side * side != n_features:
        raise ValueError(f"{n_features} values are not a square image")
    return side


def features_to_image(features: np.ndarray, scale: int = 8) -> Image.Image:
    """Render digit features as a dark-on-light grayscale image (for tests and previews)."""
    values = np.asarray(features, dtype=np.float64)
    side = side_of(values.size)
    grid = values.reshape(side, side) / MAX_VALUE
    pixels = (255 - np.clip(grid, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L").resize((side * scale, side * scale), Image.Resampling.NEAREST)
