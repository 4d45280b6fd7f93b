"""Images as users send them: decoding with limits, image folders and zips of images.

Shared by the kinds that read images (model/kinds/digits.py); what an image becomes is the kind's.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from PIL import Image

from model.errors import DataValidationError, ImageError, ImageTooLarge, UnreadableImage

SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
MAX_FOLDER_IMAGE_PIXELS = 50_000_000


def decode_image(data: bytes, max_pixels: int, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode image bytes, refusing non-images, corrupt files and decompression bombs.

    With `draft`, a JPEG is decoded at the smallest scale (1/2 to 1/8) still at least that size, which
    is most of the cost of a phone's 12-megapixel photo; info["original_size"] keeps its size.
    """
    if not data:
        raise UnreadableImage("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"the image is {width}x{height} pixels; at most {max_pixels:,} pixels are accepted")
            image.seek(0)  # first frame of an animation
            if draft is not None:
                image.draft("RGB", draft)
            image.load()
            image.info["original_size"] = (width, height)
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image has more than the {max_pixels:,} pixels allowed ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise UnreadableImage(
            "the data is not an image format Pillow can read (send PNG, JPEG, GIF, BMP or WebP)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImage(f"the image is corrupt or truncated: {exc}") from exc
    return image


@contextmanager
def naming(where: str) -> Iterator[None]:
    """Inside, an image that cannot be read or used becomes a data error naming its file (in a folder or a zip)."""
    try:
        yield
    except ImageError as exc:
        raise DataValidationError(f"{where}: {exc}") from exc


def class_folders(folder: Path) -> list[tuple[str, list[Path]]]:
    """(class folder name, its image files) for each sub-folder of `folder`, sorted by name."""
    if not folder.is_dir():
        raise DataValidationError(f"image folder {folder} does not exist")
    classes = [
        (d.name, sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith(".")))
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    ]
    if not any(files for _, files in classes):
        raise DataValidationError(f"image folder {folder} holds no images in class sub-folders")
    return classes


def zip_images(data: bytes, max_files: int, max_file_bytes: int) -> list[tuple[str, bytes]]:
    """(path in the archive, bytes) of every image in a zip, refused past the limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DataValidationError(f"the upload is not a zip archive: {exc}") from exc
    entries = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and PurePosixPath(info.filename).suffix.lower() in SUFFIXES
        and not PurePosixPath(info.filename).name.startswith(".")
    ]
    if not entries:
        raise DataValidationError(f"the zip holds no images (looked for {sorted(SUFFIXES)})")
    if len(entries) > max_files:
        raise DataValidationError(f"the zip holds {len(entries):,} images; at most {max_files:,} per batch")
    for info in entries:
        if info.file_size > max_file_bytes:
            raise DataValidationError(
                f"{info.filename}: {info.file_size:,} bytes, images are limited to {max_file_bytes:,}"
            )
    return [(info.filename, archive.read(info)) for info in entries]
