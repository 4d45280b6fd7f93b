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
