"""The one preprocessing function: any image -> the 8x8, 0-16 representation of scikit-learn's digits.

Training on an image folder and serving an uploaded or drawn image both go through
`image_to_features`, so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from model.errors import BlankImage

N_FEATURES = 64
SIDE = 8
MAX_VALUE = 16.0
_WORK_SIDE = 32  # the digits set was made from 32x32 bitmaps counted in 4x4 blocks
_INK_THRESHOLD = 0.25
_MIN_HEAVY_SHARE = 0.2  # share of cells above 8 in the digits set: 0.29
_MAX_THICKEN = 4


def image_to_features(image: Image.Image) -> np.ndarray:
    """Grayscale, crop to the ink, fit into 32x32 and count ink in 4x4 blocks: 64 floats in 0-16."""
    ink = _ink(image)
    rows = np.flatnonzero(ink.max(axis=1) > _INK_THRESHOLD)
    cols = np.flatnonzero(ink.max(axis=0) > _INK_THRESHOLD)
    if rows.size == 0:
        raise BlankImage("the image is blank: draw or upload a digit with visible strokes")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # The digits were written with a thick pen (about a quarter of a cell is heavy ink). Thin strokes,
    # as drawn with a mouse or a fine pen, are fitted a little smaller and thickened until they match.
    for grow in range(_MAX_THICKEN + 1):
        fitted = _fit_square(crop, _WORK_SIDE - 2 * grow, _WORK_SIDE)
        for _ in range(grow):
            fitted = _dilate(fitted)
        counts = _block_counts(fitted)
        if (counts > MAX_VALUE / 2).mean() >= _MIN_HEAVY_SHARE:
            break
    return np.round(counts.astype(np.float64), 3).reshape(N_FEATURES)


def _block_counts(fitted: np.ndarray) -> np.ndarray:
    block = _WORK_SIDE // SIDE
    return fitted.reshape(SIDE, block, SIDE, block).mean(axis=(1, 3)) * MAX_VALUE


def _dilate(image: np.ndarray) -> np.ndarray:
    """3x3 grey dilation: every stroke grows by one pixel on each side."""
    padded = np.pad(image, 1)
    h, w = image.shape
    return np.max([padded[i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=0)


def features_to_image(features: np.ndarray, scale: int = 8) -> Image.Image:
    """Render 64 digit features as a dark-on-light grayscale image (for tests and previews)."""
    grid = np.asarray(features, dtype=np.float64).reshape(SIDE, SIDE) / MAX_VALUE
    pixels = (255 - np.clip(grid, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L").resize((SIDE * scale, SIDE * scale), Image.Resampling.NEAREST)


def _ink(image: Image.Image) -> np.ndarray:
    """Ink intensity in [0, 1], whatever the mode, transparency or background colour."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    gray = np.asarray(ImageOps.grayscale(image), dtype=np.float32) / 255.0
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return 1.0 - gray if np.median(border) > 0.5 else gray


def _fit_square(ink: np.ndarray, side: int, canvas_side: int) -> np.ndarray:
    """Scale the crop so its longer side fills `side`, keep its aspect ratio, centre it on the canvas."""
    height, width = ink.shape
    scale = side / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = Image.fromarray((ink * 255).astype(np.uint8), mode="L").resize(
        (new_w, new_h), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
    )
    canvas = np.zeros((canvas_side, canvas_side), dtype=np.float32)
    top, left = (canvas_side - new_h) // 2, (canvas_side - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized, dtype=np.float32) / 255.0
    return canvas
