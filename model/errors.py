"""Typed errors raised by model/; callers map them to HTTP codes or failed tasks."""


class ModelError(Exception):
    """Base class for errors that carry a message meant for the person who can fix the input."""


class DataValidationError(ModelError):
    """Ingested data is unusable; the message names the file or row and what is wrong."""


class ImageError(ModelError):
    """An image cannot be turned into features."""


class UnreadableImage(ImageError):
    """The bytes are not an image Pillow can decode, or the image is corrupt or truncated."""


class ImageTooLarge(ImageError):
    """The image has more pixels than allowed (decompression-bomb guard)."""


class BlankImage(ImageError):
    """The image has no ink to classify."""


class RegistryError(ModelError):
    """The model registry is unreachable or lacks a capability the platform needs."""


class NothingToRollBack(ModelError):
    """No version carries the `previous` alias."""
