"""Embeddings of long recordings at scale: `embed` and the Parquet `EmbeddingStore`.

`embed` runs a backbone over every window of every recording through the one predictor,
`soundscape.predict_recordings` (a `Detector` whose network outputs the embedding, with
``activation=None``), so it streams recordings in chunks, batches windows, and resumes
from its `output_dir` like any scoring run. The folder is a `predict_recordings` output
folder (``manifest.jsonl``, ``run.json``, ``errors.csv``, ``scores/*.parquet``; one table
per recording, columns ``file, start_time, end_time, emb_0000 ... emb_1023``) plus
``embedding.json`` naming the backbone. `EmbeddingStore` reads it lazily, block by block
(pyarrow), so tables of millions of windows never need to fit in memory.

>>> store = soundscape.embed("birdnet", "recordings/", output_dir="embeddings/")  # doctest: +SKIP
>>> for keys, vectors in store.blocks(65536):        # doctest: +SKIP
...     ...          # keys: file/start_time/end_time; vectors: float32 (rows, 1024)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..io import write_json
from ..model_file import Detector, to_plain
from ..torch.outputs import INDEX
from .backbone import Backbone, get_backbone
from .networks import EmbeddingNetwork, backbone_preprocessing, backbone_spec, embedding_columns

__all__ = ["embed", "embedding_detector", "EmbeddingStore", "EMBEDDING_INFO"]

#: the file of an embedding folder that names its backbone
EMBEDDING_INFO = "embedding.json"


def embedding_detector(backbone: str | Backbone = "birdnet", **backbone_kwargs) -> Detector:
    """A `Detector` whose outputs are the backbone's embedding values (``emb_0000`` ...).

    Run it with ``activation=None``; `embed` does.
    """
    backbone = get_backbone(backbone, **backbone_kwargs)
    name, kwargs = backbone_spec(backbone)
    return Detector(EmbeddingNetwork(backbone), "backbone_embedding",
                    embedding_columns(backbone.embedding_size), True,
                    backbone_preprocessing(backbone), {"backbone": name, "backbone_kwargs": kwargs},
                    {"backbone": name, "license": backbone.license})


def _info(backbone: Backbone, detector: Detector) -> dict:
    return to_plain({"backbone": detector.architecture_kwargs["backbone"],
                     "backbone_kwargs": detector.architecture_kwargs["backbone_kwargs"],
                     "embedding_size": backbone.embedding_size, "sample_rate": backbone.sample_rate,
                     "clip_duration": backbone.clip_duration, "license": backbone.license})


def embed(
    backbone: str | Backbone,
    files,
    clip_overlap: float = 0.0,
    output_dir: str | os.PathLike | None = None,
    progress: bool | str = True,
    batch_size: int = 16,
    num_workers: int = 1,
    final_clip: str | None = "remainder",
    overwrite: bool = False,
    chunk_duration: float = 60.0,
    backbone_kwargs: dict | None = None,
    **engine,
) -> "EmbeddingStore | pd.DataFrame":
    """Embeddings of every window of every recording, through `predict_recordings`.

    Parameters
    ----------
    backbone : str or Backbone
        A registry name (``"birdnet"``; ``"onnx"`` with `backbone_kwargs` ``path``,
        ``sample_rate``, ``clip_duration``) or a built backbone; windows are its
        `clip_duration` long, at its `sample_rate`.
    files : path, folder, glob string or list of paths
        A folder means every audio file in it, recursively.
    clip_overlap : float
        Seconds shared by consecutive windows.
    output_dir : path, optional
        Write one Parquet table per recording (resumable: a re-run skips finished
        recordings) and return an `EmbeddingStore` of it; without it, the embeddings come
        back as one DataFrame in memory.
    progress : bool or "always"
        Progress bars (see `predict_recordings`).
    batch_size : int
        Windows per backbone call (BirdNET runs them `BirdNET.batch_size` at a time).
    num_workers : int
        Threads reading and resampling recordings while the backbone runs.
    final_clip : {"remainder", None, "full", "extend"}
        The last, short window: kept and zero-padded (default, as BirdNET does), dropped,
        moved back to end at the end of the file, or extended.
    overwrite : bool
        Start over in an `output_dir` holding results of other settings.
    chunk_duration : float
        Seconds of audio read at a time.
    backbone_kwargs : dict, optional
        Arguments of the backbone's constructor, with a registry name.
    **engine
        ``engine``, ``address``, ``num_actors``, ``num_cpus``, ``num_gpus``... of
        `predict_recordings`: ``engine="ray"`` computes the embeddings on Ray actors.

    Returns
    -------
    EmbeddingStore or DataFrame
        With `output_dir` an `EmbeddingStore` (``.summary`` and ``.errors`` of this run);
        else a DataFrame indexed by ``(file, start_time, end_time)`` with float32 columns
        ``emb_0000`` ... (``attrs``: ``summary``, ``errors``, ``backbone``).
    """
    from ..torch.predict import predict_recordings

    backbone = get_backbone(backbone, **(backbone_kwargs or {}))
    detector = embedding_detector(backbone)
    info = _info(backbone, detector)
    if output_dir is not None:
        folder = Path(output_dir)
        previous = folder / EMBEDDING_INFO
        if previous.is_file() and not overwrite:
            old = json.loads(previous.read_text(encoding="utf-8"))
            if old != info:
                raise ParameterError(
                    f"{folder} holds embeddings of another backbone ({old.get('backbone')} "
                    f"{old.get('backbone_kwargs')}); use another output_dir or overwrite=True")
    table = predict_recordings(
        detector, files, clip_overlap=clip_overlap, final_clip=final_clip, batch_size=batch_size,
        num_workers=num_workers, output_dir=output_dir, output_format="parquet", activation=None,
        progress=progress, chunk_duration=chunk_duration, overwrite=overwrite,
        precision="fp32",  # the backbone runs outside torch: nothing for autocast to speed up
        return_scores=output_dir is None, **engine)
    if output_dir is None:
        table.attrs["backbone"] = info
        return table
    write_json(info, Path(output_dir) / EMBEDDING_INFO, sort_keys=True)
    store = EmbeddingStore(output_dir)
    store.summary, store.errors = table.attrs["summary"], table.attrs["errors"]
    return store


class EmbeddingStore:
    """Lazy reader of an `embed` output folder (per-recording Parquet tables).

    Parameters
    ----------
    output_dir : path
        A folder written by `embed`.

    Attributes
    ----------
    info : dict
        ``embedding.json``: backbone name and settings, embedding size, rate, clip length.
    columns : list of str
        The embedding columns (``emb_0000`` ...).
    summary, errors
        Those of the `embed` run that returned this store (empty when opened directly).
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.root = Path(output_dir)
        info = self.root / EMBEDDING_INFO
        if not info.is_file():
            raise FileNotFoundError(f"{self.root}: no {EMBEDDING_INFO}; not a folder written by "
                                    "soundscape.embed(..., output_dir=...)")
        self.info = json.loads(info.read_text(encoding="utf-8"))
        self.columns = embedding_columns(int(self.info["embedding_size"]))
        self.summary: dict = {}
        self.errors: list = []

    # ------------------------------------------------------------------ what is there
    @property
    def backbone(self) -> str:
        """Registry name of the backbone that made the embeddings."""
        return str(self.info["backbone"])

    @property
    def embedding_size(self) -> int:
        return len(self.columns)

    def _tables(self) -> dict[str, Path]:
        """Recording (as `embed` named it) -> its Parquet table, in manifest order."""
        from ..torch.outputs import _parse_records

        manifest = self.root / "manifest.jsonl"
        if not manifest.is_file():
            return {}
        records, _ = _parse_records(manifest.read_bytes() + b"\n")
        latest = {r["key"]: r for r in records}
        tables = {str(r.get("file", r["key"])): self.root / r["output"] for r in latest.values()}
        return {f: p for f, p in tables.items() if p.is_file()}

    def paths(self) -> list[Path]:
        """The Parquet tables, one per finished recording, in manifest order."""
        return list(self._tables().values())

    def dataset(self):
        """A ``pyarrow.dataset.Dataset`` over all tables (filter, project, scan lazily)."""
        import pyarrow.dataset as ds

        return ds.dataset([str(p) for p in self.paths()], format="parquet")

    def __len__(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.paths())

    def __repr__(self) -> str:
        return (f"<EmbeddingStore {str(self.root)!r}: {len(self.paths())} recordings, backbone "
                f"{self.backbone!r}, {self.embedding_size}-d>")

    # ------------------------------------------------------------------ reading
    def blocks(self, block_rows: int = 65536, files: Sequence[str | Path] | None = None
               ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """Yield ``(keys, vectors)`` blocks of at most `block_rows` windows.

        `keys` is a DataFrame with columns ``file, start_time, end_time``; `vectors` a
        C-contiguous float32 array ``(rows, embedding_size)``. Only one block is in
        memory at a time. `files` limits the reading to those tables.
        """
        import pyarrow.parquet as pq

        if int(block_rows) < 1:
            raise ParameterError(f"block_rows must be >= 1, got {block_rows!r}")
        for path in (self.paths() if files is None else [Path(f) for f in files]):
            source = pq.ParquetFile(path)
            batches = source.iter_batches(batch_size=int(block_rows), columns=INDEX + self.columns)
            for batch in batches:
                vectors = np.empty((batch.num_rows, len(self.columns)), np.float32)
                for j, name in enumerate(self.columns):
                    vectors[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
                keys = pd.DataFrame({c: batch.column(c).to_numpy(zero_copy_only=False)
                                     for c in INDEX})
                keys["file"] = keys["file"].astype(str)
                yield keys, vectors

    def keys(self) -> pd.DataFrame:
        """``file, start_time, end_time`` of every window (the embedding columns unread)."""
        parts = [self.dataset().to_table(columns=INDEX).to_pandas()] if self.paths() else []
        frame = pd.concat(parts) if parts else pd.DataFrame(columns=INDEX)
        return frame.reset_index(drop=True).astype({"file": str})

    def to_pandas(self) -> pd.DataFrame:
        """Everything in memory: index ``(file, start_time, end_time)``, float32 columns."""
        frames = [pd.concat([k, pd.DataFrame(v, columns=self.columns)], axis=1)
                  for k, v in self.blocks()]
        if not frames:
            frame = pd.DataFrame(columns=INDEX + self.columns)
        else:
            frame = pd.concat(frames, ignore_index=True)
        frame = frame.set_index(INDEX)
        frame.attrs["backbone"] = self.info
        return frame

    def lookup(self, keys) -> pd.DataFrame:
        """Embeddings of the given windows, read from their recordings' tables only.

        Parameters
        ----------
        keys : DataFrame or MultiIndex
            ``(file, start_time, end_time)`` as index or columns (e.g. a review table).

        Returns
        -------
        DataFrame
            Indexed like `keys` (same order), embedding columns.

        Raises
        ------
        KeyError
            A window that is not in the store (the message names the first ones).
        """
        wanted = _key_frame(keys)
        tables = self._tables()
        found = []
        for file in wanted["file"].unique():
            if file in tables:
                for k, v in self.blocks(files=[tables[file]]):
                    found.append(pd.concat([k, pd.DataFrame(v, columns=self.columns)], axis=1))
        table = (pd.concat(found, ignore_index=True) if found
                 else pd.DataFrame(columns=INDEX + self.columns))
        table["start_time"] = table["start_time"].astype(float).round(6)
        table["end_time"] = table["end_time"].astype(float).round(6)
        table = table.drop_duplicates(INDEX).set_index(INDEX)
        index = pd.MultiIndex.from_arrays([wanted["file"], wanted["start_time"].round(6),
                                           wanted["end_time"].round(6)], names=INDEX)
        missing = index[~index.isin(table.index)]
        if len(missing):
            raise KeyError(f"{len(missing)} window(s) are not in {self.root}, e.g. "
                           f"{list(missing[:3])}; embed those recordings first")
        out = table.loc[index].astype(np.float32)
        out.index = pd.MultiIndex.from_frame(wanted[INDEX])
        return out


def vector_columns(frame: pd.DataFrame) -> list:
    """The embedding columns of a table (``emb_*``), or all its columns when none is named so."""
    return [c for c in frame.columns if str(c).startswith("emb_")] or list(frame.columns)


def _key_frame(keys) -> pd.DataFrame:
    """`keys` as a DataFrame with columns file (str), start_time, end_time (float)."""
    if isinstance(keys, pd.MultiIndex):
        frame = keys.to_frame(index=False)
    elif isinstance(keys, pd.DataFrame):
        frame = keys.reset_index() if any(n in INDEX for n in keys.index.names) else keys
    else:
        raise ParameterError(f"keys must be a DataFrame or MultiIndex of {INDEX}, "
                             f"got {type(keys).__name__}")
    missing = [c for c in INDEX if c not in frame.columns]
    if missing:
        raise ParameterError(f"keys lack column(s) {missing}; they have {list(frame.columns)}")
    return pd.DataFrame({"file": frame["file"].astype(str).to_numpy(),
                         "start_time": frame["start_time"].astype(float).to_numpy(),
                         "end_time": frame["end_time"].astype(float).to_numpy()})
