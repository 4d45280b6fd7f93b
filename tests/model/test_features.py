import io

import numpy as np
import pytest
from PIL import Image

from model.errors import BlankImage, ImageTooLarge, UnreadableImage
from model.features import N_FEATURES, features_to_image, image_to_features
from model.images import decode_image
from model.kinds.digits import load_digits_dataset


def png(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_rendered_digits_come_back_close_to_their_features():
    data = load_digits_dataset()
    rows = data.X[:200]
    back = np.array([image_to_features(features_to_image(row)) for row in rows])
    assert back.shape == (200, N_FEATURES)
    assert back.min() >= 0 and back.max() <= 16
    # cropping re-centres each digit, so values move a little, but the picture is the same
    correlation = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(rows, back, strict=True)])
    assert correlation > 0.8, correlation


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "CMYK", "P", "1"])
def test_any_mode_gives_the_same_features(mode):
    base = features_to_image(load_digits_dataset().X[3])
    expected = image_to_features(base)
    converted = base.convert(mode)
    got = image_to_features(decode_image(png(converted, "JPEG" if mode == "CMYK" else "PNG"), 10**7))
    assert np.abs(got - expected).mean() < 1.5


def test_light_ink_on_dark_background_matches_dark_on_light():
    base = features_to_image(load_digits_dataset().X[7])
    inverted = Image.eval(base, lambda v: 255 - v)
    assert np.allclose(image_to_features(base), image_to_features(inverted), atol=0.1)


def test_transparent_background_counts_as_paper():
    base = features_to_image(load_digits_dataset().X[7])
    rgba = Image.new("RGBA", base.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(base, lambda v: 255 - v))  # black ink, transparent elsewhere
    assert np.abs(image_to_features(rgba) - image_to_features(base)).mean() < 0.5


def test_blank_image_is_refused():
    with pytest.raises(BlankImage):
        image_to_features(Image.new("L", (32, 32), 255))


@pytest.mark.parametrize("data", [b"", b"not an image", png(Image.new("L", (20, 20)))[:30]])
def test_unreadable_bytes_are_refused(data):
    with pytest.raises(UnreadableImage):
        decode_image(data, 10**6)


def test_too_many_pixels_are_refused_before_decoding():
    with pytest.raises(ImageTooLarge, match="pixels allowed|10000x10000"):
        decode_image(png(Image.new("1", (10_000, 10_000))), max_pixels=4_000_000)


def test_animated_gif_uses_its_first_frame():
    first = features_to_image(load_digits_dataset().X[1]).convert("P")
    second = Image.new("P", first.size, 0)
    data = png(first, "GIF", save_all=True, append_images=[second])
    assert np.allclose(image_to_features(decode_image(data, 10**6)), image_to_features(first), atol=0.5)
