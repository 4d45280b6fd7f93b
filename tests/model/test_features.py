import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from model.errors import BlankImage, ImageTooLarge, UnreadableImage
from model.features import N_FEATURES, _resize, features_to_image, image_to_features, median3
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


# -- uploads as people send them: both polarities, sizes and formats, one function for every layout --------


def _font_seven(size: int, dark_ink: bool, fmt: str) -> bytes:
    """A 7 in a font on tinted paper (or chalk on a board), `size` pixels square, encoded as `fmt`."""
    import numpy as np_

    from model.digit_sets import render_digit

    glyph = render_digit(7, 0, int(size * 0.6), np_.random.default_rng(0))
    paper, ink = ((235, 225, 200), (30, 30, 60)) if dark_ink else ((20, 40, 30), (230, 230, 220))
    page = Image.new("L", (size, size), 0)
    glyph.thumbnail((size - 4, size - 4))
    page.paste(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
    image = Image.composite(Image.new("RGB", page.size, ink), Image.new("RGB", page.size, paper), page)
    return png(image, fmt)


@pytest.mark.parametrize("side", [8, 16, 28])
@pytest.mark.parametrize(("size", "fmt"), [(28, "PNG"), (120, "JPEG"), (300, "WEBP"), (960, "BMP")])
def test_both_polarities_every_size_and_format_give_the_same_digit(side, size, fmt):
    reference = image_to_features(decode_image(_font_seven(200, True, "PNG"), 10**7), side)
    for dark_ink in (True, False):
        got = image_to_features(decode_image(_font_seven(size, dark_ink, fmt), 10**7), side)
        assert got.shape == (side * side,) and got.min() >= 0 and got.max() <= 16
        assert np.corrcoef(got, reference)[0, 1] > 0.85, (side, size, fmt, dark_ink)


def test_specks_noise_and_margins_do_not_move_the_digit():
    clean = decode_image(_font_seven(200, True, "PNG"), 10**7).convert("L")
    page = Image.new("L", (600, 400), 235)
    page.paste(clean, (300, 120))
    pixels = np.asarray(page, dtype=np.int16) + np.random.default_rng(1).normal(0, 10, (400, 600)).astype(np.int16)
    pixels[20:24, 20:24] = 20  # a speck of dust far from the digit
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    expected = image_to_features(clean, 16)
    assert np.corrcoef(image_to_features(noisy, 16), expected)[0, 1] > 0.9


def test_slant_is_taken_out():
    """A 1 written leaning right becomes upright: its ink spans few columns once deskewed."""
    page = Image.new("L", (200, 200), 255)
    from PIL import ImageDraw

    ImageDraw.Draw(page).line([(70, 180), (130, 20)], fill=0, width=14)
    grid = image_to_features(page, 28).reshape(28, 28)
    columns = np.flatnonzero(grid.max(axis=0) > 8)
    assert columns.size <= 6, f"the stroke still spans {columns.size} columns"


def test_thin_and_thick_pens_are_brought_to_one_stroke_width():
    from PIL import ImageDraw

    rows = []
    for width in (3, 12, 40):
        page = Image.new("L", (400, 400), 255)
        ImageDraw.Draw(page).ellipse([100, 40, 300, 360], outline=0, width=width)  # a 0
        rows.append(image_to_features(page, 28))
    inked = [int((row > 8).sum()) for row in rows]
    assert max(inked) < 1.6 * min(inked), inked


def test_a_phone_photo_is_decoded_small():
    """A 12-megapixel JPEG is decoded at a fraction of its size (draft) and read in a few tens of ms."""
    import time

    page = Image.new("RGB", (4000, 3000), (200, 195, 180))
    page.paste(Image.new("RGB", (300, 1800), (20, 20, 20)), (1850, 600))  # a 1
    data = png(page, "JPEG", quality=90)
    started = time.perf_counter()
    image = decode_image(data, 40_000_000, draft=(320, 320))
    features = image_to_features(image, 16)
    elapsed = time.perf_counter() - started
    assert image.size[0] <= 1000 and image.info["original_size"] == (4000, 3000)
    assert features.reshape(16, 16)[:, 7:9].mean() > 8, "the 1 is in the middle"
    assert elapsed < 0.5, elapsed


def test_layouts_are_square_and_previews_render_any_side():
    from model.features import side_of

    for side in (8, 16, 28):
        assert side_of(side * side) == side
        assert features_to_image(np.zeros(side * side), scale=2).size == (2 * side, 2 * side)
    with pytest.raises(ValueError, match="not a square"):
        side_of(65)


@pytest.mark.parametrize("shape", [(48, 48), (61, 160), (160, 97)])
def test_the_median_filter_is_pillows_pixel_for_pixel(shape):
    """median3 replaced Pillow's MedianFilter(3) (20x faster here); uploads must still come out the same."""
    pixels = np.random.default_rng(shape[1]).integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 3] = 255  # flat paper and an edge, not only noise
    expected = np.asarray(Image.fromarray(pixels).filter(ImageFilter.MedianFilter(3)))
    assert np.array_equal(median3(pixels), expected)


@pytest.mark.parametrize("seed", range(6))
def test_resizing_is_pillows_arithmetic(seed):
    """_resize replaced Pillow's resize of float images (BOX shrinking, BILINEAR enlarging) with its
    weights and two passes in numpy; the values agree with Pillow's to float32 rounding."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(3, 120, 2))
        out_w, out_h = (int(v) for v in rng.integers(3, 60, 2))
        ink = (rng.random((height, width)) * (rng.random((height, width)) > 0.4)).astype(np.float32)
        image = Image.fromarray(ink, mode="F")
        resample = Image.Resampling.BOX if out_w < width or out_h < height else Image.Resampling.BILINEAR
        expected = np.asarray(image.resize((out_w, out_h), resample))
        got = _resize(ink, out_w, out_h)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
