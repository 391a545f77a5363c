"""Writing files safely: the one atomic-write implementation of the package.

Every file soundscape writes (model files, training checkpoints, metrics, cached arrays,
score tables, JSON records) goes through `atomic_path`: the data is written to a
temporary file in the same folder, which then replaces the target with `os.replace`.
Readers never see half a file, and a failed write leaves the old file as it was.

Temporary files are created by the writer with ``open()``, so they get the ordinary
permissions of a new file (``0o666`` less the process umask), not the ``0o600`` of
`tempfile.mkstemp`; the renamed file keeps them.

Temporary names follow one pattern, ``.<name>.<pid>-<8 hex>.tmp<suffix>``, e.g.
``.epoch-2.tar.4711-1a2b3c4d.tmp.tar`` (the suffix is kept so that writers that look at
the extension, such as ``numpy.save``, behave). A process killed during a save leaves
such a file behind; `clean_stale_temp_files` removes them once their writer is gone.

Numpy, torch and path values become JSON values through `soundscape.metrics.to_json`
before `write_json` (``soundscape.workflow.runs.write_json`` does both).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no file locks
    fcntl = None

__all__ = ["atomic_path", "atomic_write", "write_json", "temp_path_for", "is_temp_file",
           "clean_stale_temp_files", "check_writable", "write_failure", "missing_file",
           "exclusive_lock", "STALE_AFTER_S"]

logger = logging.getLogger("soundscape.io")

#: temporary files of `atomic_path`: ``.<name>.<pid>-<token>.tmp<suffix>``
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\.tmp(?P<suffix>\.[^./]*)?$")
#: temporary files of soundscape versions before this module (``tempfile.mkstemp`` and
#: the old helpers.atomic_path); they hold no process id, so only their age counts
_LEGACY_TEMP = (
    re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$"),  # outputs / annotations: .x.csv.XXXXXXXX.tmp
    re.compile(r"^\..+\.(?:model|tar|pt|pth)\.[a-z0-9_]{8}$"),  # model files: .epoch-2.tar.XXXXXXXX
    re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(?:\.[A-Za-z0-9]+)?$"),  # helpers: .metrics.1a2b3c4d.tmp.csv
    re.compile(r"^tmp[a-z0-9_]{8}\.tmp$"),  # cache: tmpXXXXXXXX.tmp
)
#: default age (seconds) after which `clean_stale_temp_files` removes a temp file whose
#: writer is not running (an hour: no save takes that long without touching its file)
STALE_AFTER_S = 3600.0
#: temp files older than this are removed even if a process with their pid runs (the
#: pid was reused by another program, or the writer hangs)
_ABANDONED_AFTER_S = 24 * 3600.0


def temp_path_for(path: str | os.PathLike) -> Path:
    """A fresh temporary path beside `path` (same folder, same suffix), in the package's pattern."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def is_temp_file(name: str | os.PathLike) -> bool:
    """True when `name` (a file name or path) is a temporary file of `atomic_path`, old or new."""
    name = Path(name).name
    return bool(_TEMP.match(name)) or any(p.match(name) for p in _LEGACY_TEMP)


# --------------------------------------------------------------------------- write failures
#: errno values that mean "this place cannot take the file" (not a bug of the writer)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG,
                 getattr(errno, "EDQUOT", errno.ENOSPC)}
#: what torch.save's C++ writer says when the file cannot be written (disk full, I/O error)
_TORCH_WRITE_FAILURE = re.compile(r"inline_container|PytorchStreamWriter|iostream error|"
                                  r"file write failed|unexpected pos", re.IGNORECASE)
#: less free space than this on the disk after a failed write counts as "disk full"
_NEARLY_FULL = 1 << 20


def _free_bytes(folder: Path) -> int | None:
    for place in (folder, *folder.parents):
        try:
            return shutil.disk_usage(place).free
        except OSError:
            continue
    return None


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def _reason(code: int | None, exc: BaseException, folder: Path) -> str:
    free = _free_bytes(folder)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or (
            code is None and free is not None and free < _NEARLY_FULL):
        where = f" ({_size(free)} free)" if free is not None else ""
        return f"no space left on the device{where}; free some space or write to another folder"
    if code == errno.EROFS:
        return "the file system is read-only; write to another folder"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied; write to another folder or change its permissions"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def write_failure(exc: BaseException, path: str | os.PathLike, what: str = "file"):
    """The `OutputError` for `exc` raised while writing `path`, or None if `exc` is no write failure.

    Write failures are OSErrors of a full disk, a read-only file system, missing
    permission or an I/O error, the RuntimeErrors torch.save raises for them
    (``enforce fail at inline_container.cc``, ``basic_ios::clear: iostream error``) and
    the short writes numpy reports without an errno when the disk is full.
    The message names `what` was being written, the path and the cause.
    """
    from .errors import OutputError

    if isinstance(exc, OutputError):
        return None
    path = Path(path)
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        code = exc.errno
    elif isinstance(exc, RuntimeError) and _TORCH_WRITE_FAILURE.search(str(exc)):
        code = None
    elif isinstance(exc, OSError) and exc.errno is None:  # numpy: "4096 requested and 4064 written"
        free = _free_bytes(path.parent)
        if free is None or free >= _NEARLY_FULL:
            return None
        code = None
    else:
        return None
    error = OutputError(f"could not write the {what} {path}: {_reason(code, exc, path.parent)}")
    if code is None:
        free = _free_bytes(path.parent)
        code = errno.ENOSPC if free is not None and free < _NEARLY_FULL else errno.EIO
    error.errno = code
    error.filename = str(path)
    return error


def missing_file(path: str | os.PathLike, what: str = "file") -> FileNotFoundError:
    """The FileNotFoundError for `path`, which does not exist: saying when it is a link loop,
    a broken link or has a folder on its way this user may not search."""
    path = Path(path)
    try:
        os.stat(path)
    except PermissionError:
        return FileNotFoundError(f"{what} {path} cannot be reached: permission denied on a folder "
                                 "of its path")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return FileNotFoundError(f"{what} {path} is a symbolic link loop (the link leads back "
                                     "to itself)")
    if os.path.islink(path):
        return FileNotFoundError(f"{what} {path} is a broken symbolic link (to {os.readlink(path)})")
    return FileNotFoundError(f"{what} not found: {path}")


def check_writable(folder: str | os.PathLike, what: str = "output folder",
                   needed_bytes: int | None = None) -> Path:
    """Make sure files can be written into `folder` (created if missing) before work starts.

    A small probe file is written and removed. Raises `OutputError` naming `what` and the
    folder when it cannot be created or written (read-only, no permission, a file in the
    way), or when its disk has less than `needed_bytes` free.
    """
    from .errors import OutputError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"the {what} {folder} cannot be created: a file of that name is in "
                          "the way") from None
    except NotADirectoryError:
        raise OutputError(f"the {what} {folder} cannot be created: part of its path is a file, "
                          "not a folder") from None
    except OSError as exc:
        raise OutputError(f"the {what} {folder} cannot be created: "
                          f"{_reason(exc.errno, exc, folder)}") from exc
    if not folder.is_dir():
        raise OutputError(f"the {what} {folder} is not a folder")
    probe = temp_path_for(folder / ".write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(fd, b"soundscape write probe\n")
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write into the {what} {folder}: "
                          f"{_reason(exc.errno, exc, folder)}") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if needed_bytes:
        free = _free_bytes(folder)
        if free is not None and free < needed_bytes:
            raise OutputError(f"the {what} {folder} has {_size(free)} free but about "
                              f"{_size(needed_bytes)} will be written; free some space or write to "
                              "another folder")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, make_parents: bool = False,
                what: str = "file") -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` when the block succeeds.

    The block must create the file at the yielded path (e.g. ``torch.save(obj, tmp)``).
    It replaces `path` with `os.replace` only if the block exits without error;
    otherwise it is removed and `path` is left as it was.

    Parameters
    ----------
    path : path
        The file to write.
    make_parents : bool
        Create missing parent folders; by default a missing folder is an error.
    what : str
        What the file is ("training checkpoint", "score table"...), for error messages.

    Raises
    ------
    FileNotFoundError
        The folder of `path` does not exist (and `make_parents` is False), or the block
        wrote nothing.
    OutputError
        The file could not be written: disk full, read-only, no permission (see
        `write_failure`); names `what` and `path`.

    Examples
    --------
    >>> with atomic_path("model.pt") as tmp:  # doctest: +SKIP
    ...     torch.save(state, tmp)
    """
    path = Path(path)
    if make_parents:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            failure = write_failure(exc, path, what)
            if failure is None:
                raise
            raise failure from exc
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    tmp = temp_path_for(path)
    try:
        try:
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"nothing was written to the temporary file for {path}")
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            failure = write_failure(exc, path, what)  # while the temp file still takes its space
            if failure is None:
                raise
            raise failure from exc
    finally:
        if os.path.lexists(tmp):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` of `lock_path` (created if missing) for the block.

    Between processes on POSIX (on a shared disk where ``flock`` works); a no-op where
    ``fcntl`` is missing (Windows). Closing the file releases the lock, also when the
    process dies.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any], *,
                 make_parents: bool = False, what: str = "file") -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result onto `path`; return `path`.

    See `atomic_path` for `make_parents`, `what` and the errors.
    """
    with atomic_path(path, make_parents=make_parents, what=what) as tmp:
        writer(tmp)
    return Path(path)


def write_json(obj: Any, path: str | os.PathLike, *, indent: int | None = 2,
               sort_keys: bool = False, make_parents: bool = True, what: str = "JSON file") -> Path:
    """Write `obj` as JSON (UTF-8, ending with a newline) atomically; return the path.

    `obj` must hold JSON values only (convert numpy values first); NaN and infinity are
    refused (ValueError) rather than written as invalid JSON.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                        make_parents=make_parents, what=what)


def _pid_running(pid: int) -> bool:
    """True when a process `pid` exists on this machine (or cannot be checked)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError as exc:  # e.g. not supported: assume it runs
        return exc.errno != errno.ESRCH
    return True


def clean_stale_temp_files(folder: str | os.PathLike, older_than_s: float = STALE_AFTER_S,
                           recursive: bool = False) -> list[Path]:
    """Remove temporary files that interrupted saves left in `folder`; return those removed.

    A temporary file of `atomic_path` (``.<name>.<pid>-<token>.tmp<suffix>``) is removed
    when it was last modified more than `older_than_s` seconds ago and no process with
    its pid runs on this machine (or it is over a day old, whatever runs). Temp files of
    older soundscape versions, which name no process, are removed on age alone. A file
    another process is still writing is therefore left alone: its writer runs, and it
    is being modified. The age threshold also protects writers on other machines
    sharing the folder.

    Parameters
    ----------
    folder : path
        Folder to clean; a missing folder is nothing to clean.
    older_than_s : float
        Minimum age in seconds (default an hour); 0 removes every temp file whose
        writer is gone.
    recursive : bool
        Also clean subfolders.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    entries = folder.rglob(".*") if recursive else folder.iterdir()
    candidates = list(entries)
    if recursive:
        candidates += list(folder.rglob("tmp*.tmp"))
    for entry in candidates:
        name = entry.name
        match = _TEMP.match(name)
        if not match and not any(p.match(name) for p in _LEGACY_TEMP):
            continue
        try:
            st = entry.lstat()
        except OSError:
            continue
        if not entry.is_file() or entry.is_symlink():
            continue
        age = now - st.st_mtime
        if age < older_than_s:
            continue
        if match:
            pid = int(match["pid"])
            if pid == os.getpid() or (_pid_running(pid) and age < _ABANDONED_AFTER_S):
                continue
        try:
            entry.unlink()
        except OSError as exc:
            logger.warning("could not remove stale temporary file %s: %s", entry, exc)
            continue
        removed.append(entry)
    if removed:
        logger.info("removed %d stale temporary file(s) left by interrupted saves in %s "
                    "(e.g. %s)", len(removed), folder, removed[0].name)
    return removed
