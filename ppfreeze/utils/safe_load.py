"""The one way ppfreeze reads ``.pdparams`` / ``.pdopt`` / ``.pdstates`` / ``.pdema`` files.

``paddle.load`` unpickles, and unpickling a crafted file runs code (a ``__reduce__`` naming
``os.system``). This module reads the same files with a restricted unpickler that can build
only what ``paddle.save`` writes (see ``paddle/framework/io.py``):

- ``Layer.state_dict()`` / optimizer state (``_legacy_save``): a dict of numpy arrays plus the
  ``StructuredToParameterName@@`` name table and, for protocol 2/3 files over 1 GiB per tensor,
  ``UnpackBigParamInfor@@`` slices;
- any other nested object (``_pickle_save``): dicts, lists, tuples, scalars, strings, numpy
  arrays; tensors reduced to ``tuple((name, ndarray))``; dense tensors to
  ``eval('data', {'data': ndarray})`` (only that exact call is admitted);
- numpy's own reducers (``_reconstruct``, ``dtype``, ``scalar``, ``_frombuffer``) for arrays and
  scalars of non-object dtypes; ``_codecs.encode(text, 'latin1')`` for bytes in protocol-2 files;
- ``GeneratorState`` (``paddle.get_rng_state()`` pickled by checkpoints of earlier ppfreeze
  versions): recorded as plain data (:class:`GeneratorStateRecord`), never constructed.

Any other global is refused before it is called: :class:`ppfreeze.errors.DataIntegrityError`
naming the file and what it asked to construct. safetensors files (``paddle.save(...,
safetensors=True)``) are read with safetensors. Results hold numpy arrays, as
``paddle.load(path, return_numpy=True)`` returns them. Paddle-free, so deploy tools may use it.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import io
import os
import pickle
import struct
from typing import Any, Callable, Dict, Tuple

import numpy as np

from ..errors import DataIntegrityError

NAME_TABLE_KEY = "StructuredToParameterName@@"
BIG_PARAM_KEY = "UnpackBigParamInfor@@"  # Paddle's spelling
_TRUST_HINT = ("weights and checkpoints may hold only tensors, arrays and plain values; load files only from "
               "sources you trust, and re-save foreign weights as a plain state_dict with paddle.save")


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global that ``paddle.save`` never writes."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(f"{what} is not allowed")


class GeneratorStateRecord:
    """A ``paddle.get_rng_state()`` entry read from a file, as plain data.

    Earlier checkpoints pickled Paddle's ``GeneratorState`` object; the unpickler records its
    state tuple ``(device, seed, offset, mt19937 state)`` here instead of constructing it.
    """

    def __init__(self, *args: Any):
        if args:
            raise RefusedGlobal("GeneratorState with constructor arguments")
        self.state: Tuple[Any, ...] = ()

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 4 and all(isinstance(v, int) for v in state[:3])
                and isinstance(state[3], list)):
            raise RefusedGlobal("GeneratorState with a malformed state")
        self.state = state


# ------------------------------------------------------------------------------- admitted globals
def _plain_dtype(spec: Any, *args: Any) -> np.dtype:
    dtype = np.dtype(spec, *args)
    if dtype.hasobject:
        raise RefusedGlobal(f"a numpy array of Python objects (dtype {dtype})")
    return dtype


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: only ``_reconstruct`` accepts it (nothing can call it)."""


def _numpy_reducers() -> Dict[Tuple[str, str], Any]:
    """numpy's array / scalar reducers, under numpy 1 and numpy 2 module paths, dtype-checked."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _NdarrayName:
            raise RefusedGlobal(f"an array of type {subtype!r}")
        return multiarray._reconstruct(np.ndarray, shape, _plain_dtype(dtype))

    def scalar(dtype: Any, data: Any = None) -> Any:
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
            raise RefusedGlobal("a numpy scalar of Python objects")
        return multiarray.scalar(dtype, data)

    def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        return numeric._frombuffer(buffer, _plain_dtype(dtype), shape, order)

    allowed: Dict[Tuple[str, str], Any] = {("numpy", "ndarray"): _NdarrayName, ("numpy", "dtype"): _plain_dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if encoding != "latin1" or not isinstance(text, str):
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _dense_tensor_data(source: Any, namespace: Any = None, *rest: Any) -> np.ndarray:
    # paddle.save reduces a DenseTensor to eval('data', {'data': ndarray}); nothing else is evaluated.
    if (source == "data" and not rest and isinstance(namespace, dict) and list(namespace) == ["data"]
            and isinstance(namespace["data"], np.ndarray)):
        return namespace["data"]
    raise RefusedGlobal(f"builtins.eval({source!r:.60}, ...)")


_GENERATOR_MODULES = ("paddle.base.libpaddle", "paddle.base.core", "paddle.fluid.libpaddle", "paddle.fluid.core",
                      "paddle.fluid.core_avx", "paddle.fluid.core_noavx")

ALLOWED_GLOBALS: Dict[Tuple[str, str], Callable] = {
    **{("builtins", name): getattr(builtins, name)
       for name in ("tuple", "list", "dict", "set", "frozenset", "bytearray", "complex")},
    ("builtins", "eval"): _dense_tensor_data,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    **_numpy_reducers(),
    **{(module, "GeneratorState"): GeneratorStateRecord for module in _GENERATOR_MODULES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; anything else raises :class:`RefusedGlobal`."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol-2 files: __builtin__, copy_reg), mapped as pickle's fix_imports does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise RefusedGlobal(f"global '{module}.{name}'")
        return target

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("a persistent object reference")


def restricted_loads(data: bytes, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` admitting only :data:`ALLOWED_GLOBALS` (raises ``pickle.UnpicklingError``)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


# ------------------------------------------------------------------------------- reading files
def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 8 + header_len <= size


def load_file(path: str, what: str = "weights file", keep_name_table: bool = False) -> Any:
    """Read a file written by ``paddle.save`` (pickle or safetensors) without running code.

    Returns what ``paddle.load(path, return_numpy=True)`` returns: numpy arrays in dicts /
    lists / tuples, the name table removed. A file naming any other global, or one that is
    truncated or not a ``paddle.save`` file at all, raises :class:`DataIntegrityError`
    (nothing it names is constructed).

    Args:
        path: the file.
        what: how messages call it (``weights file``, ``checkpoint file``).
        keep_name_table: keep a state dict's ``StructuredToParameterName@@`` entry (structured
            key -> the ``param.name`` the saving process had), as ``paddle.load(...,
            keep_name_table=True)`` does; PaddleClas's optimizer state is keyed by those names.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(16)
        if _is_safetensors(head, size):
            return _load_safetensors(path, what)
        if head[:1] != b"\x80":  # PROTO opcode: every paddle.save pickle (protocol 2-4) starts with it
            raise DataIntegrityError(path, f"is not a {what} written by paddle.save "
                                           f"({'empty' if not head else 'unknown format'})",
                                     "give a .pdparams file saved by paddle.save (or a safetensors file)")
        f.seek(0)
        try:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
        except RefusedGlobal as e:
            raise DataIntegrityError(path, f"refused to load this {what}: it asks for {e.what}, which "
                                           f"paddle.save never writes (unpickling it could run code; nothing was "
                                           f"constructed)", _TRUST_HINT) from None
        except Exception as e:  # truncated or corrupt stream: pickle raises assorted types
            raise DataIntegrityError(path, f"{what} is truncated or damaged ({type(e).__name__}: {e})",
                                     "it was probably cut short by an interrupted copy or save; use another copy")
    return _as_paddle_loads(obj, path, keep_name_table)


def _load_safetensors(path: str, what: str) -> Dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file as load_safetensors
        return dict(load_safetensors(path))
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise DataIntegrityError(path, f"{what} in safetensors format is damaged ({type(e).__name__}: {e})") from None


def _as_paddle_loads(obj: Any, path: str, keep_name_table: bool = False) -> Any:
    """What ``paddle.load(return_numpy=True)`` makes of the raw unpickled object."""
    _check_arrays(obj, path)
    if isinstance(obj, dict):
        obj = _join_big_params(obj)
        if NAME_TABLE_KEY in obj:  # a state_dict: values are already arrays
            if not keep_name_table:
                del obj[NAME_TABLE_KEY]
            return obj
    if _contains(obj, _is_tensor_tuple):  # tensors saved through _pickle_save: (name, ndarray)
        return _convert(obj, _is_tensor_tuple, lambda t: t[1])
    return obj


def _is_tensor_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and \
        isinstance(value[1], np.ndarray)


def _contains(obj: Any, test: Callable[[Any], bool]) -> bool:
    if test(obj):
        return True
    if isinstance(obj, dict):
        return any(_contains(v, test) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_contains(v, test) for v in obj)
    return False


def _convert(obj: Any, test: Callable[[Any], bool], convert: Callable[[Any], Any]) -> Any:
    if test(obj):
        return convert(obj)
    if isinstance(obj, dict):
        for key in list(obj):
            obj[key] = _convert(obj[key], test, convert)
        return obj
    if isinstance(obj, list):
        return [_convert(v, test, convert) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v, test, convert) for v in obj)
    return obj


def _check_arrays(obj: Any, path: str, depth: int = 0) -> None:
    """Defence in depth: no array of Python objects, whatever route built it."""
    if depth > 100:
        raise DataIntegrityError(path, "nested more than 100 levels deep: not a paddle.save file")
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise DataIntegrityError(path, "holds a numpy array of Python objects, which paddle.save never writes",
                                 _TRUST_HINT)
    if isinstance(obj, dict):
        for value in obj.values():
            _check_arrays(value, path, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _check_arrays(value, path, depth + 1)


def _join_big_params(obj: Dict[str, Any]) -> Dict[str, Any]:
    """Re-assemble tensors that protocol-2/3 ``paddle.save`` split into 1 GiB slices."""
    info = obj.pop(BIG_PARAM_KEY, None)
    if not info:
        return obj
    for key, parts in info.items():
        slices = [obj.pop(part) for part in parts["slices"]]
        obj[key] = np.concatenate(slices).reshape(parts["OriginShape"])
    return obj

