"""An ONNX file checked before onnxruntime opens it: size, structure, declared tensor sizes and
external data. Pure Python (the protobuf wire format read directly), so an ONNX-only deployment
needs neither the ``onnx`` package nor torch.

Refused, one line each, naming the file:

- a file over ``model_limit()`` bytes (``MAX_MODEL_BYTES``, 1 GiB; ``STEELSEG_MAX_MODEL_MB``
  changes it), or empty;
- bytes that are not a protobuf ``ModelProto`` with a graph: another kind of file, or one cut
  short (a field that declares more bytes than are left);
- tensors whose declared sizes (dims x element size) add up to more than the limit, which
  onnxruntime would try to allocate (a small file can declare terabytes);
- external data (tensor bytes in another file) that is absolute, climbs out of the model's
  folder (``..``, or a symlink that leads out), is missing, or is shorter than declared.

onnxruntime checks some of this itself (1.31 refuses external data outside the folder); these
checks come first, so the message is ours and nothing is allocated for a file that fails them.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

from steelseg.inference.backends import BackendError

MAX_MODEL_BYTES = 1 << 30  # the largest steelseg export (a U-Net on efficientnet-b7) is ~0.3 GB
MAX_MODEL_ENV = "STEELSEG_MAX_MODEL_MB"
MAX_DEPTH = 32  # subgraphs nested deeper than this are refused (a stack-exhaustion attempt)

# Field numbers of onnx.proto3 that lead to tensors.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODES, _GRAPH_INITIALIZERS, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTES, _FUNCTION_NODES = 5, 7
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 1, 2, 8, 13, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# Bytes per element by TensorProto.DataType (strings and unknown types count 1; 4-bit types 1).
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2}


class _Malformed(Exception):
    """Bytes that do not parse as the protobuf message expected."""


@dataclass
class _Tensor:
    name: str = "?"
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    external: dict[str, str] = field(default_factory=dict)
    location: int = 0

    @property
    def nbytes(self) -> int:
        return math.prod(self.dims) * _ITEM_BYTES.get(self.data_type, 1)


def model_limit() -> int:
    """The size limit of a model file and of the tensors it declares, in bytes."""
    value = os.environ.get(MAX_MODEL_ENV, "").strip()
    if not value:
        return MAX_MODEL_BYTES
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1
    if not megabytes > 0:
        raise BackendError(f"{MAX_MODEL_ENV}={value!r}: expected a positive number of megabytes")
    return int(megabytes * 1e6)


def check_onnx_file(path: Path) -> None:
    """Refuse ``path`` unless it is a plausible ONNX model within the limits (module docstring)."""
    limit = model_limit()
    size = path.stat().st_size
    if size > limit:
        raise BackendError(
            f"{path}: {size:,} bytes, over the limit of {limit:,} for a model file (set {MAX_MODEL_ENV} to change it)"
        )
    if size == 0:
        raise BackendError(f"{path}: onnxruntime cannot load it: an empty file")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            tensors = _model_tensors(data)
        except _Malformed as err:
            raise BackendError(f"{path}: onnxruntime cannot load it: not an ONNX model, or cut short ({err})") from None
    declared = 0
    for tensor in tensors:
        if any(d < 0 for d in tensor.dims):
            raise BackendError(f"{path}: tensor {tensor.name!r} declares a negative dimension {tensor.dims}")
        declared += tensor.nbytes
        if declared > limit:
            raise BackendError(
                f"{path}: tensor {tensor.name!r} of shape {tensor.dims} declares {tensor.nbytes:,} bytes, "
                "which brings the "
                f"model's tensors to {declared:,}, over the limit of {limit:,} (set {MAX_MODEL_ENV} to change it)"
            )
        if tensor.location == _EXTERNAL:
            _check_external(path, tensor)


def _check_external(path: Path, tensor: _Tensor) -> None:
    location = tensor.external.get("location", "")
    folder = path.parent.resolve()
    target = (folder / location).resolve()
    if (
        not location
        or Path(location).is_absolute()
        or ".." in Path(location).parts
        or not target.is_relative_to(folder)
    ):
        raise BackendError(
            f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, outside the model's folder; refused"
        )
    if not target.is_file():
        raise BackendError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, which is not there")
    try:
        offset = int(tensor.external.get("offset", "0"))
        length = int(tensor.external.get("length", str(tensor.nbytes)))
    except ValueError:
        raise BackendError(f"{path}: tensor {tensor.name!r}: external data offset or length is not a number") from None
    if offset < 0 or length < 0 or offset + length > target.stat().st_size:
        where = f"{length:,} bytes at offset {offset:,} of {location!r}"
        raise BackendError(f"{path}: tensor {tensor.name!r} declares {where}, beyond the end of that file")


def _model_tensors(data) -> list[_Tensor]:
    tensors: list[_Tensor] = []
    graphs = 0
    for number, start, end in _messages(data, 0, len(data)):
        if number == _MODEL_GRAPH:
            graphs += 1
            _graph_tensors(data, start, end, tensors, 0)
        elif number == _MODEL_FUNCTIONS:
            for inner, s, e in _messages(data, start, end):
                if inner == _FUNCTION_NODES:
                    _node_tensors(data, s, e, tensors, 0)
    if not graphs:
        raise _Malformed("no graph in it")
    return tensors


def _graph_tensors(data, start: int, end: int, tensors: list[_Tensor], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Malformed(f"subgraphs nested more than {MAX_DEPTH} deep")
    for number, s, e in _messages(data, start, end):
        if number == _GRAPH_INITIALIZERS:
            tensors.append(_tensor(data, s, e))
        elif number == _GRAPH_SPARSE:
            tensors.extend(_sparse(data, s, e))
        elif number == _GRAPH_NODES:
            _node_tensors(data, s, e, tensors, depth)


def _node_tensors(data, start: int, end: int, tensors: list[_Tensor], depth: int) -> None:
    for number, s, e in _messages(data, start, end):
        if number != _NODE_ATTRIBUTES:
            continue
        for kind, a, b in _messages(data, s, e):
            if kind in (_ATTR_TENSOR, _ATTR_TENSORS):
                tensors.append(_tensor(data, a, b))
            elif kind in (_ATTR_SPARSE, _ATTR_SPARSES):
                tensors.extend(_sparse(data, a, b))
            elif kind in (_ATTR_GRAPH, _ATTR_GRAPHS):
                _graph_tensors(data, a, b, tensors, depth + 1)


def _sparse(data, start: int, end: int) -> list[_Tensor]:
    return [
        _tensor(data, s, e)
        for number, s, e in _messages(data, start, end)
        if number in (_SPARSE_VALUES, _SPARSE_INDICES)
    ]


def _tensor(data, start: int, end: int) -> _Tensor:
    tensor = _Tensor()
    for number, wire, value in _fields(data, start, end):
        if number == _TENSOR_DIMS:
            tensor.dims += [_signed(value)] if wire == 0 else [_signed(v) for v in _packed(data, *value)]
        elif number == _TENSOR_TYPE and wire == 0:
            tensor.data_type = value
        elif number == _TENSOR_NAME and wire == 2:
            tensor.name = bytes(data[value[0] : min(value[1], value[0] + 200)]).decode("utf-8", "replace")
        elif number == _TENSOR_LOCATION and wire == 0:
            tensor.location = value
        elif number == _TENSOR_EXTERNAL and wire == 2:
            key, text = _string_pair(data, *value)
            tensor.external[key] = text
    return tensor


def _string_pair(data, start: int, end: int) -> tuple[str, str]:
    """A StringStringEntryProto: (key, value); long strings are cut, they are only compared."""
    pair = {1: "", 2: ""}
    for number, s, e in _messages(data, start, end):
        pair[number] = bytes(data[s : min(e, s + 4096)]).decode("utf-8", "replace")
    return pair[1], pair[2]


def _messages(data, start: int, end: int):
    """(field number, start, end) of the length-delimited fields of a message."""
    for number, wire, value in _fields(data, start, end):
        if wire == 2:
            yield number, value[0], value[1]


def _fields(data, start: int, end: int):
    """(field number, wire type, value) of a message: an int for varints, (start, end) for
    length-delimited fields (never copied), None for fixed-size ones."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(data, pos, end)
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise _Malformed(f"a field at byte {pos:,} declares {length:,} bytes, {end - pos:,} are left")
            value, pos = (pos, pos + length), pos + length
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            raise _Malformed(f"wire type {wire} at byte {pos:,}")
        if pos > end:
            raise _Malformed(f"a field runs past byte {end:,}")
        yield number, wire, value


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 70:
        if pos >= end:
            raise _Malformed(f"a number cut short at byte {pos:,}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise _Malformed(f"a number longer than 10 bytes at byte {pos:,}")


def _packed(data, start: int, end: int) -> list[int]:
    values, pos = [], start
    while pos < end:
        value, pos = _varint(data, pos, end)
        values.append(value)
    return values


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
