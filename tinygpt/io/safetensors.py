"""Read and write safetensors files, written from the format description, without the library.

A safetensors file is three parts, back to back:

    [8 bytes: N, little-endian u64] [N bytes: JSON header] [data section: raw tensor bytes]

The header maps each tensor name to ``{"dtype": "F32", "shape": [2, 3], "data_offsets":
[start, end]}``, offsets counted from the start of the data section; an optional
``"__metadata__"`` entry holds free-form string-to-string metadata. Data is little-endian,
C order. Reading is only JSON parsing plus array views: nothing is executed or unpickled,
which is the whole point of the format. Every malformed input raises ``SafetensorsError``
naming the file and the problem.

NumPy has no bfloat16, so BF16 tensors are widened to float32 on load (exactly: bfloat16
is the top half of a float32), and ``save_file(..., float_dtype="BF16")`` rounds float
tensors to bfloat16 on write.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

# Dtype names of the format and the NumPy dtype that holds their bytes. Ordered like the
# reference's Dtype enum (increasing alignment): the writer stores the most-aligned tensors
# first, so every tensor starts at a multiple of its item size.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bit patterns; widened to float32 on load
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
_RANK = {name: rank for rank, name in enumerate(DTYPES)}
# (kind, itemsize) of a NumPy dtype -> format name; bfloat16 never comes from NumPy itself.
_NAME_OF = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items() if name != "BF16"}

MAX_HEADER_SIZE = 100_000_000  # the reference refuses larger headers; so do we
MAX_DIMS = 64 if int(np.__version__.split(".")[0]) >= 2 else 32  # NumPy's limit on ndim
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class SafetensorsError(ValueError):
    """A safetensors file (or the tensors about to be written) breaks the format."""


class TensorInfo(NamedTuple):
    """One header entry, validated: where a tensor's bytes sit in the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


# ----------------------------------------------------------------------------- bfloat16


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round float values to bfloat16 (nearest, ties to even, like PyTorch); return the bits."""
    f32 = np.asarray(x, dtype=np.float32, order="C")
    bits = f32.view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit, then dropping 16 bits, rounds half to even.
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    # A NaN's payload could be rounded into infinity; PyTorch writes one canonical NaN.
    return np.where(np.isnan(f32), 0x7FC0, rounded).astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly: they are a float32's top 16 bits."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# ----------------------------------------------------------------------------- writing


def save_file(
    tensors: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
    *,
    float_dtype: str | None = None,
) -> None:
    """Write ``tensors`` to ``path`` as safetensors, atomically.

    The file is written to a temporary name in the same folder and renamed over ``path``
    at the end, so a crash or error mid-write leaves any previous file intact. Tensors are
    stored little-endian in C order, sorted like the reference writer (most-aligned dtype
    first, then by name) and the header is padded with spaces to a multiple of 8 bytes, so
    the bytes match ``safetensors.numpy.save_file``. ``float_dtype`` ("F32", "F16" or
    "BF16") converts every floating-point tensor on the way out.
    """
    where = os.fspath(path)
    header, arrays = _prepare(tensors, metadata, float_dtype, where)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    f = open(tmp, "xb")  # "x": never clobber a file we did not create
    try:
        with f:
            f.write(len(header).to_bytes(8, "little"))
            f.write(header)
            for arr in arrays:
                f.write(arr.reshape(-1).view(np.uint8))
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _prepare(
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None,
    float_dtype: str | None,
    where: str,
) -> tuple[bytes, list[np.ndarray]]:
    """Check the inputs; return the padded header bytes and the arrays in file order."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{where}: tensors must be a dict of name -> array, got {type(tensors)}")
    if float_dtype not in (None, "F32", "F16", "BF16"):
        raise ValueError(f"float_dtype must be None, 'F32', 'F16' or 'BF16', got {float_dtype!r}")
    entries = []  # (dtype name, tensor name, little-endian C-contiguous array)
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(f"{where}: invalid tensor name {name!r}")
        arr = np.asarray(value)
        dtype = _NAME_OF.get((arr.dtype.kind, arr.dtype.itemsize))
        if dtype is None:
            raise SafetensorsError(
                f"{where}: tensor {name!r} has dtype {arr.dtype}, which safetensors cannot "
                f"store (supported: {', '.join(DTYPES)})"
            )
        if float_dtype is not None and arr.dtype.kind == "f":
            dtype = float_dtype
            arr = to_bfloat16_bits(arr) if dtype == "BF16" else arr
        entries.append((dtype, name, np.asarray(arr, dtype=DTYPES[dtype], order="C")))
    entries.sort(key=lambda e: (-_RANK[e[0]], e[1]))

    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = _check_metadata(metadata, where)
    offset = 0
    for dtype, name, arr in entries:
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # pad so the data section starts 8-byte aligned
    if len(raw) > MAX_HEADER_SIZE:
        raise SafetensorsError(f"{where}: header would be {len(raw)} bytes, over the limit")
    return raw, [arr for _, _, arr in entries]


def _check_metadata(metadata: object, where: str) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        raise SafetensorsError(f"{where}: __metadata__ must be a JSON object, got {metadata!r}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SafetensorsError(
                f"{where}: __metadata__ must map strings to strings, but {key!r} -> {value!r}"
            )
    return dict(metadata)


# ----------------------------------------------------------------------------- reading


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file ({} when it has none)."""
    metadata, _, _ = _read_header(path)
    return metadata


def load_file(path: str | os.PathLike, mmap: bool = True) -> dict[str, np.ndarray]:
    """Load every tensor of a safetensors file into a dict of NumPy arrays, in file order.

    With ``mmap=True`` the arrays are read-only views of the memory-mapped file: nothing
    is read until touched. With ``mmap=False`` the file is read into memory and the arrays
    are writable. BF16 tensors always come back as new float32 arrays (NumPy has no
    bfloat16; the widening is exact).
    """
    _, infos, data_start = _read_header(path)
    if mmap:
        buffer = np.memmap(path, dtype=np.uint8, mode="r")
    else:
        buffer = bytearray(os.path.getsize(path))
        with open(path, "rb") as f:
            f.readinto(buffer)
    tensors = {}
    for info in infos:
        dtype = DTYPES[info.dtype]
        count = (info.end - info.start) // dtype.itemsize
        arr = np.frombuffer(buffer, dtype=dtype, count=count, offset=data_start + info.start)
        if info.dtype == "BF16":
            arr = from_bfloat16_bits(arr)
        tensors[info.name] = arr.reshape(info.shape)
    return tensors


def load_sharded(path: str | os.PathLike, mmap: bool = True) -> dict[str, np.ndarray]:
    """Load a checkpoint split into shards by a ``model.safetensors.index.json``.

    ``path`` is the index file or the folder holding it (a folder with a single
    ``model.safetensors`` and no index loads that file). The index's ``weight_map`` names
    the shard of every tensor; shards must agree with it exactly.
    """
    path = Path(path)
    index_path = path / INDEX_FILE if path.is_dir() else path
    if path.is_dir() and not index_path.exists() and (path / SINGLE_FILE).exists():
        return load_file(path / SINGLE_FILE, mmap=mmap)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SafetensorsError(f"{index_path}: no such index file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{index_path}: not a valid JSON index ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise SafetensorsError(f"{index_path}: 'weight_map' must map tensor names to file names")

    folder = index_path.parent
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        # Shard names come from the file: never follow them out of the checkpoint folder.
        if Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise SafetensorsError(f"{index_path}: shard {shard!r} lies outside {folder}")
        if not (folder / shard).is_file():
            raise SafetensorsError(f"{index_path}: shard {shard!r} is missing from {folder}")
        shard_tensors = load_file(folder / shard, mmap=mmap)
        expected = {name for name, file in weight_map.items() if file == shard}
        if missing := sorted(expected - shard_tensors.keys()):
            raise SafetensorsError(f"{folder / shard}: missing tensors {missing} listed in index")
        if extra := sorted(shard_tensors.keys() - expected):
            raise SafetensorsError(f"{folder / shard}: tensors {extra} are not in the index")
        tensors.update(shard_tensors)
    return {name: tensors[name] for name in weight_map}


def _read_header(path: str | os.PathLike) -> tuple[dict[str, str], list[TensorInfo], int]:
    """Read and validate the header: (metadata, tensor infos by offset, data start)."""
    where = os.fspath(path)
    if not os.path.isfile(path):
        raise SafetensorsError(f"{where}: no such file" if not os.path.exists(path)
                               else f"{where}: not a file")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise SafetensorsError(f"{where}: file is {size} bytes, too short for a header")
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_SIZE:
            raise SafetensorsError(
                f"{where}: header length {n} exceeds the {MAX_HEADER_SIZE}-byte limit"
            )
        if 8 + n > size:
            raise SafetensorsError(
                f"{where}: header length {n} runs past the end of the file ({size} bytes); "
                "the file is truncated or not safetensors"
            )
        raw = f.read(n)
    data_len = size - 8 - n
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"{where}: header is not valid UTF-8 ({e})") from None
    except (ValueError, RecursionError) as e:
        raise SafetensorsError(f"{where}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(
            f"{where}: header must be a JSON object, got {type(header).__name__}"
        )
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else _check_metadata(metadata, where)
    infos = [_check_entry(name, entry, data_len, where) for name, entry in header.items()]
    infos.sort(key=lambda t: (t.start, t.end))
    _check_coverage(infos, data_len, where)
    return metadata, infos, 8 + n


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen = set()  # one pass: a forged header of many keys must not take quadratic time
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen.add(key)
    return dict(pairs)


def _is_count(x: object) -> bool:
    """A non-negative JSON integer (``bool`` is an ``int`` in Python, but not here)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_entry(name: str, entry: object, data_len: int, where: str) -> TensorInfo:
    """Validate one tensor's header entry on its own (dtype, shape, offsets, byte size)."""
    if not isinstance(entry, dict):
        raise SafetensorsError(f"{where}: tensor {name!r} entry must be an object, got {entry!r}")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise SafetensorsError(f"{where}: tensor {name!r} is missing {key!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise SafetensorsError(
            f"{where}: tensor {name!r} has unknown or unsupported dtype {dtype!r} "
            f"(supported: {', '.join(DTYPES)})"
        )
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SafetensorsError(
            f"{where}: tensor {name!r} shape {shape!r} is not a list of non-negative integers"
        )
    # what a NumPy array can have: a zero-size tensor passes the byte count whatever its
    # other dims, and NumPy refuses more than MAX_DIMS dims or a nonzero extent of 2**63 bytes
    if (len(shape) > MAX_DIMS
            or math.prod(d for d in shape if d) * DTYPES[dtype].itemsize >= 2**63):
        raise SafetensorsError(f"{where}: tensor {name!r} shape {shape!r} cannot be an array "
                               f"(at most {MAX_DIMS} dimensions, under 2**63 bytes)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise SafetensorsError(
            f"{where}: tensor {name!r} data_offsets {offsets!r} are not two non-negative integers"
        )
    start, end = offsets
    if end < start:
        raise SafetensorsError(f"{where}: tensor {name!r} data offsets {offsets} end before start")
    if end > data_len:
        raise SafetensorsError(
            f"{where}: tensor {name!r} data offsets {offsets} exceed the data section "
            f"({data_len} bytes)"
        )
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    if end - start != nbytes:
        raise SafetensorsError(
            f"{where}: tensor {name!r} has {end - start} bytes at {offsets} but shape "
            f"{shape} of {dtype} needs {nbytes}"
        )
    return TensorInfo(name, dtype, tuple(shape), start, end)


def _check_coverage(infos: list[TensorInfo], data_len: int, where: str) -> None:
    """Tensors (sorted by offset) must tile the data section exactly: no overlap, no gap."""
    covered, last = 0, None
    for info in infos:
        if info.start < covered:
            raise SafetensorsError(
                f"{where}: tensor {info.name!r} [{info.start}, {info.end}] overlaps "
                f"tensor {last.name!r} [{last.start}, {last.end}]"
            )
        if info.start > covered:
            raise SafetensorsError(
                f"{where}: data bytes [{covered}, {info.start}) before tensor {info.name!r} "
                "belong to no tensor"
            )
        covered, last = info.end, info
    if covered != data_len:
        raise SafetensorsError(
            f"{where}: tensors cover {covered} bytes but the data section has {data_len}; "
            "the file has trailing bytes"
        )
