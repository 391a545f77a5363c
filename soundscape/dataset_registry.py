"""Named data sets: downloaders for public sets and adapters for local ones, each writing a CSV.

Every data set ends up as ``<folder>/<name>.csv`` with one row per clip and an audio-path column
(relative to the CSV's folder, or absolute for local sets), ready for ``soundscape train``:

========== ======== ===========================================================================
name       kind     CSV columns
========== ======== ===========================================================================
emodb      download audio, emotion, gender, age, speaker, text (EMO-DB, 535 German utterances)
esc50      download audio_path, target, target_id, fold, esc10, src_file (ESC-50, 2000 clips)
woodcock   download audio, woodcock, sound_type, filename (OpenSoundscape's woodcock tutorial)
sample_woodcock local audio, woodcock, sound_type, filename (this repository's sample_data/)
esc10      local    audio, label, fold, is_animal (needs ``--data_root`` / ``SOUNDSCAPE_DATA_ROOT``)
fsdd       local    audio, label, speaker, index, split (needs a data root too)
========== ======== ===========================================================================

Downloads use one attempt with a short timeout (5 s) and no retries; when offline (or with
``SOUNDSCAPE_OFFLINE=1``) they fail at once with a message naming the URL to fetch by hand and
where to put the file; the next ``download`` then uses that file. ``ludwig://NAME`` and
``soundscape://NAME`` resolve to an existing ``NAME.csv`` in the current folder,
``SOUNDSCAPE_DATASETS_DIR`` (default ``~/.cache/soundscape/datasets``) or the data root; local
sets are prepared on the fly; nothing is downloaded by resolving.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import ParameterError, SoundscapeError

__all__ = [
    "DatasetInfo",
    "DatasetUnavailableError",
    "REGISTRY",
    "list_datasets",
    "download",
    "load",
    "resolve",
    "is_uri",
    "datasets_dir",
]

log = logging.getLogger("soundscape.datasets")
URI_SCHEMES = ("ludwig://", "soundscape://")
DEFAULT_TIMEOUT = 5.0


class DatasetUnavailableError(SoundscapeError, FileNotFoundError):
    """A named data set is not on this machine and could not be downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set.

    ``prepare(source, out_dir)`` writes ``out_dir/<name>.csv`` and returns its path; ``source``
    is the archive (downloads) or the local folder (local sets).
    """

    name: str
    description: str
    kind: str  # "download" or "local"
    prepare: Callable[[Path, Path], Path]
    url: str | None = None
    archive: str | None = None
    license: str = ""
    size: str = ""


REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add (or replace) a data set in the registry."""
    REGISTRY[info.name] = info
    return info


def list_datasets() -> list[DatasetInfo]:
    """The registered data sets, by name."""
    return [REGISTRY[k] for k in sorted(REGISTRY)]


def datasets_dir() -> Path:
    """Where downloads are kept and looked for: ``$SOUNDSCAPE_DATASETS_DIR`` or the user cache."""
    env = os.environ.get("SOUNDSCAPE_DATASETS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "soundscape" / "datasets"


def _data_root(data_root=None) -> Path | None:
    value = data_root or os.environ.get("SOUNDSCAPE_DATA_ROOT")
    return Path(value).expanduser() if value else None


def _info(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise ParameterError(f"unknown data set {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def is_uri(text: str) -> bool:
    """True for ``ludwig://NAME`` and ``soundscape://NAME``."""
    return isinstance(text, str) and text.startswith(URI_SCHEMES)


def _search_dirs(data_root=None) -> list[Path]:
    dirs = [Path.cwd(), datasets_dir()]
    root = _data_root(data_root)
    return dirs + ([root] if root else [])


# ---------------------------------------------------------------------------- fetching
def _safe_extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
                _check_members(names, root, archive)
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                members = [m for m in t.getmembers() if m.isfile() or m.isdir()]
                _check_members([m.name for m in members], root, archive)
                t.extractall(dest, members=members)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetUnavailableError(f"{archive}: not a readable archive ({exc}); delete it and download again") from None


def _check_members(names: list[str], root: Path, archive: Path) -> None:
    for name in names:
        if not (root / name).resolve().is_relative_to(root):
            raise DatasetUnavailableError(f"{archive}: refusing to extract {name!r} outside {root}")


def _fetch(info: DatasetInfo, target: Path, url: str, timeout: float, progress: bool) -> None:
    by_hand = (f"download {url} by hand, save it as {target}, then run "
               f"`soundscape datasets download {info.name}` again")
    if os.environ.get("SOUNDSCAPE_OFFLINE"):
        raise DatasetUnavailableError(f"{info.name} is not downloaded and SOUNDSCAPE_OFFLINE is set: {by_hand}")
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=info.name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    bar.update(len(chunk))
        os.replace(part, target)
    except (OSError, ValueError) as exc:  # URLError, timeouts and HTTP errors are OSErrors
        reason = getattr(exc, "reason", None) or exc
        raise DatasetUnavailableError(
            f"could not download {info.name} from {url} ({reason}; one try, {timeout:g} s timeout): {by_hand}"
        ) from None
    finally:
        if part.exists():
            part.unlink()


def download(
    name: str,
    output_directory: str | os.PathLike = ".",
    data_root: str | os.PathLike | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    url: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch (or, for local sets, index) a data set and write ``<output_directory>/<name>.csv``.

    An archive already at ``<output_directory>/<archive>`` or in :func:`datasets_dir` is used
    without downloading. Returns the CSV path.

    Raises
    ------
    DatasetUnavailableError
        Offline, or the local source folder is missing (the message says what to do).
    """
    info = _info(name)
    out = Path(output_directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if info.kind == "local":
        return info.prepare(_local_source(info, data_root), out)
    csv = out / f"{name}.csv"
    if csv.is_file() and (out / name).is_dir():
        log.info("%s is already downloaded: %s", name, csv)
        return csv
    archive = next((d / info.archive for d in (out, datasets_dir()) if (d / info.archive).is_file()), None)
    if archive is None:
        archive = out / info.archive
        _fetch(info, archive, url or info.url, timeout, progress)
    return info.prepare(archive, out)


def resolve(uri: str, data_root: str | os.PathLike | None = None) -> Path:
    """The local CSV of ``ludwig://NAME`` / ``soundscape://NAME`` (never downloads)."""
    name = uri.split("://", 1)[1].strip("/")
    info = _info(name)
    for folder in _search_dirs(data_root):
        if (folder / f"{name}.csv").is_file():
            return folder / f"{name}.csv"
    if info.kind == "local":
        return info.prepare(_local_source(info, data_root), datasets_dir())
    for folder in _search_dirs(data_root):
        if (folder / info.archive).is_file():
            return info.prepare(folder / info.archive, folder)
    raise DatasetUnavailableError(
        f"data set {name!r} is not downloaded: run `soundscape datasets download {name}` "
        f"(fetches {info.url}), or download that file by hand and put it at "
        f"{Path.cwd() / info.archive}"
    )


def load(name: str, data_root: str | os.PathLike | None = None, seed: int = 42,
         probabilities: tuple[float, float, float] = (0.7, 0.2, 0.1)):
    """``(train_df, test_df, val_df)`` of an already available data set (audio paths absolute).

    Uses a ``split`` column when the CSV has one (0/train, 1/validation, 2/test), otherwise a
    random split with ``probabilities`` (train, test, validation). Like :func:`resolve`, it never
    downloads.
    """
    csv = resolve(f"soundscape://{name}", data_root=data_root)
    frame = pd.read_csv(csv)
    for column in frame.columns:
        if column in ("audio", "audio_path"):
            frame[column] = [p if Path(p).is_absolute() else str((csv.parent / p).resolve())
                             for p in frame[column].astype(str)]
    if "split" in frame.columns:
        key = frame["split"].astype(str).str.lower()
        parts = [key.isin(v) for v in (("0", "train", "training"), ("2", "test"),
                                       ("1", "validation", "valid", "val"))]
    else:
        import numpy as np

        order = np.random.default_rng(seed).permutation(len(frame))
        cuts = np.round(np.cumsum(probabilities)[:2] * len(frame)).astype(int)
        which = np.empty(len(frame), dtype=int)
        which[order[: cuts[0]]], which[order[cuts[0]: cuts[1]]], which[order[cuts[1]:]] = 0, 1, 2
        parts = [pd.Series(which == k) for k in range(3)]
    return tuple(frame[p.to_numpy()].reset_index(drop=True) for p in parts)


# ---------------------------------------------------------------------------- preparing
def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    from .helpers import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    log.debug("wrote %s (%d rows)", path, len(frame))
    return path


def _find(root: Path, pattern: str, archive: Path) -> Path:
    hits = sorted(root.rglob(pattern))
    if not hits:
        raise DatasetUnavailableError(f"{archive}: no {pattern} inside; is it the right archive?")
    return hits[0]


_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
             "T": "sadness", "N": "neutral"}
#: EMO-DB speakers: id -> (gender, age in years)
_SPEAKERS = {"03": ("male", 31), "08": ("female", 34), "09": ("female", 21), "10": ("male", 32),
             "11": ("male", 26), "12": ("male", 30), "13": ("female", 32), "14": ("female", 35),
             "15": ("male", 25), "16": ("female", 31)}


def _prepare_emodb(archive: Path, out: Path) -> Path:
    dest = out / "emodb"
    _safe_extract(archive, dest)
    rows = []
    for wav in sorted(dest.rglob("*.wav")):
        stem = wav.stem
        speaker, emotion = stem[:2], _EMOTIONS.get(stem[5:6])
        if len(stem) < 7 or emotion is None or speaker not in _SPEAKERS:
            log.warning("emodb: skipped %s (name does not follow the EMO-DB pattern)", wav.name)
            continue
        gender, age = _SPEAKERS[speaker]
        rows.append({"audio": wav.relative_to(out).as_posix(), "emotion": emotion, "gender": gender,
                     "age": age, "speaker": speaker, "text": stem[2:5]})
    if not rows:
        raise DatasetUnavailableError(f"{archive}: no EMO-DB .wav files inside")
    return _write_csv(pd.DataFrame(rows), out / "emodb.csv")


def _prepare_esc50(archive: Path, out: Path) -> Path:
    dest = out / "esc50"
    _safe_extract(archive, dest)
    meta_path = _find(dest, "esc50.csv", archive)
    meta = pd.read_csv(meta_path)
    audio_dir = meta_path.parent.parent / "audio"
    frame = pd.DataFrame({
        "audio_path": [(audio_dir / f).relative_to(out).as_posix() for f in meta["filename"]],
        "target": meta["category"], "target_id": meta["target"], "fold": meta["fold"],
        "esc10": meta["esc10"], "src_file": meta["src_file"],
    })
    return _write_csv(frame, out / "esc50.csv")


def _prepare_woodcock(archive: Path, out: Path) -> Path:
    dest = out / "woodcock"
    _safe_extract(archive, dest)
    labels_path = _find(dest, "woodcock_labels.csv", archive)
    labels = pd.read_csv(labels_path)
    frame = labels.copy()
    frame.insert(0, "audio", [(labels_path.parent / f).relative_to(out).as_posix() for f in labels["filename"]])
    return _write_csv(frame, out / "woodcock.csv")


def _local_source(info: DatasetInfo, data_root=None) -> Path:
    if info.name == "sample_woodcock":
        for base in (Path(__file__).resolve().parents[1], Path.cwd()):
            folder = base / "sample_data" / "woodcock_labeled_data"
            if (folder / "woodcock_labels.csv").is_file():
                return folder
        generated = datasets_dir() / "sample_woodcock_data" / "woodcock_labeled_data"
        if not (generated / "woodcock_labels.csv").is_file():
            from .sample_data import generate

            log.info("sample_data/ not found: generating the synthetic woodcock clips in %s", generated.parent)
            generate(generated.parent)
        return generated
    root = _data_root(data_root)
    if root is None:
        raise DatasetUnavailableError(
            f"{info.name} is a local data set: pass --data_root (or set SOUNDSCAPE_DATA_ROOT) to the "
            f"folder that holds {info.name}/labels.csv"
        )
    folder = root / info.name
    if not (folder / "labels.csv").is_file():
        raise DatasetUnavailableError(f"{info.name}: {folder / 'labels.csv'} not found under data root {root}")
    return folder


def _local_csv(columns: list[str], audio_column: str = "filename"):
    def prepare(folder: Path, out: Path, name: str) -> Path:
        labels = pd.read_csv(folder / ("woodcock_labels.csv" if name == "sample_woodcock" else "labels.csv"))
        frame = labels[[c for c in columns if c in labels.columns]].copy()
        frame.insert(0, "audio", [str((folder / f).resolve()) for f in labels[audio_column]])
        return _write_csv(frame, out / f"{name}.csv")

    return prepare


def _bind(name: str, fn) -> Callable[[Path, Path], Path]:
    return lambda source, out: fn(source, out, name)


register_dataset(DatasetInfo(
    "emodb", "Berlin Database of Emotional Speech: 535 utterances, 10 actors, 7 emotions",
    "download", _prepare_emodb, url="http://emodb.bilderbar.info/download/download.zip",
    archive="emodb.zip", license="free for research", size="~40 MB"))
register_dataset(DatasetInfo(
    "esc50", "ESC-50 environmental sounds: 2000 5-s clips, 50 classes, 5 folds",
    "download", _prepare_esc50, url="https://github.com/karolpiczak/ESC-50/archive/master.zip",
    archive="ESC-50-master.zip", license="CC BY-NC 3.0", size="~600 MB"))
register_dataset(DatasetInfo(
    "woodcock", "OpenSoundscape tutorial clips: American woodcock song present/absent",
    "download", _prepare_woodcock, url="https://pitt.box.com/shared/static/79fi7d715dulcldsy6uogz02rsn5uesd.gz",
    archive="woodcock_labeled_data.tar.gz", license="see OpenSoundscape", size="~10 MB"))
register_dataset(DatasetInfo(
    "sample_woodcock", "this repository's synthetic woodcock clips (sample_data/), 29 clips",
    "local", _bind("sample_woodcock", _local_csv(["filename", "woodcock", "sound_type"])), size="2 MB"))
register_dataset(DatasetInfo(
    "esc10", "ESC-10 (local copy under the data root): 400 clips, 10 classes, 5 folds",
    "local", _bind("esc10", _local_csv(["label", "fold", "is_animal"])), license="CC BY 3.0"))
register_dataset(DatasetInfo(
    "fsdd", "Free Spoken Digit Dataset (local copy under the data root): 3000 clips, 6 speakers",
    "local", _bind("fsdd", _local_csv(["label", "speaker", "index", "split"])), license="CC BY-SA 4.0"))


def remove_download(name: str, output_directory: str | os.PathLike = ".") -> None:
    """Delete ``<output_directory>/<name>.csv`` and ``<output_directory>/<name>/``."""
    out = Path(output_directory)
    (out / f"{name}.csv").unlink(missing_ok=True)
    shutil.rmtree(out / name, ignore_errors=True)
