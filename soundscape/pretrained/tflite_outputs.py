"""Expose intermediate tensors of a TFLite model as graph outputs, by rewriting its flatbuffer.

The LiteRT interpreter runs most of a float model inside the XNNPACK delegate, which
hands back only the graph's output tensors: reading an intermediate tensor (e.g. an
embedding layer) gives "Tensor data is null" or stale memory. The slow alternative,
``experimental_preserve_all_tensors=True``, turns the delegate off and keeps every
intermediate buffer. Instead, this module appends the wanted tensors to the model's
output list, so the fast path returns them like any other output.

The rewrite reads the model into the flatbuffer object API of the LiteRT schema
(``ai_edge_litert.schema_py_generated.ModelT``), appends tensor indices to
``subgraphs[i].outputs`` and serialises it again (about 0.6 s for a 50 MB model).
Rewritten models are cached in memory for the life of the process, keyed by the
SHA-256 of the original bytes and the tensor names; nothing is written to disk.
"""

from __future__ import annotations

import difflib
import hashlib
import threading
from typing import Sequence

from ..errors import ModelFileError
from ._extras import require

_TFLITE_IDENTIFIER = b"TFL3"
_CACHE: dict[tuple[str, int, tuple[str, ...]], bytes] = {}
_CACHE_LOCK = threading.Lock()


def _schema(needed_for: str):
    require("flatbuffers", "birdnet", needed_for)
    return require("ai_edge_litert.schema_py_generated", "birdnet", needed_for)


def tensor_names(model: bytes, subgraph: int = 0) -> list[str]:
    """Names of all tensors of one subgraph of a TFLite model, in index order.

    Parameters
    ----------
    model : bytes
        Contents of a ``.tflite`` file.
    subgraph : int
        Subgraph index (0 is the main graph).
    """
    schema = _schema("reading a TFLite model")
    graph = _read_model(schema, model).subgraphs[subgraph]
    return [_decode(t.name) for t in graph.tensors]


def add_outputs(
    model: bytes, names: Sequence[str], subgraph: int = 0, source: str = "model"
) -> bytes:
    """A copy of a TFLite model whose graph also outputs the named tensors.

    Outputs already in the graph are kept first, in their order; the named tensors
    follow in the order given (those that are outputs already are not repeated).
    The result is cached in memory, so calling this again is cheap.

    Parameters
    ----------
    model : bytes
        Contents of a ``.tflite`` file.
    names : sequence of str
        Exact tensor names (see `tensor_names`), e.g. ``["model/GLOBAL_AVG_POOL/Mean"]``.
    subgraph : int
        Subgraph index (0 is the main graph).
    source : str
        Where the model came from (a file path), for error messages.

    Returns
    -------
    bytes
        The rewritten model, to pass as ``Interpreter(model_content=...)``.

    Raises
    ------
    soundscape.errors.ModelFileError
        The bytes are not a TFLite model, or a name is not a tensor of the subgraph.
    """
    names = tuple(names)
    key = (hashlib.sha256(model).hexdigest(), subgraph, names)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _rewrite(model, names, subgraph, source)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget all rewritten models (frees their memory once no interpreter uses them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _rewrite(model: bytes, names: tuple[str, ...], subgraph: int, source: str) -> bytes:
    schema = _schema("exposing a TFLite model's intermediate tensors")
    flatbuffers = require("flatbuffers", "birdnet", "writing a TFLite model")
    tree = _read_model(schema, model, source)
    if not 0 <= subgraph < len(tree.subgraphs or []):
        raise ModelFileError(f"{source} has no subgraph {subgraph}")
    graph = tree.subgraphs[subgraph]
    all_names = [_decode(t.name) for t in graph.tensors]
    outputs = [int(i) for i in graph.outputs]
    for name in names:
        if name not in all_names:
            close = difflib.get_close_matches(name, all_names, n=3)
            raise ModelFileError(
                f"{source} has no tensor named {name!r} in subgraph {subgraph}"
                + (f"; close names: {close}" if close else "")
            )
        index = all_names.index(name)
        if index not in outputs:
            outputs.append(index)
    graph.outputs = outputs
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _read_model(schema, model: bytes, source: str = "model"):
    if len(model) < 8 or model[4:8] != _TFLITE_IDENTIFIER:
        raise ModelFileError(f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier)")
    return schema.ModelT.InitFromPackedBuf(model, 0)


def _decode(name: bytes | str | None) -> str:
    if name is None:
        return ""
    return name.decode("utf-8") if isinstance(name, bytes) else name
