"""The review web app (FastAPI) and `serve`, which runs it with uvicorn.

Routes: ``/`` the page (plain HTML and JavaScript from the package's ``static/`` folder),
``/api/items`` the clips with their verdicts and the progress, ``POST /api/verdict`` one
verdict (saved at once), ``/image`` a spectrogram PNG and ``/audio`` a WAV cut of a
recording (``?path=...&start=...&end=...``; paths outside the audio root get 403),
``/api/report`` and ``/report.png`` the report of the verdicts so far.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

import pandas as pd

from soundscape.errors import AudioFileError, ParameterError

from .media import AudioRoot, PathRefused, spectrogram_png, wav_bytes
from .selection import read_candidates, select_clips
from .table import VERDICTS, ReviewTable, default_review_path

__all__ = ["ReviewSession", "create_app", "serve", "ReviewServer", "STATIC"]

#: the page's HTML, JavaScript and CSS
STATIC = Path(__file__).with_name("static")


class ReviewSession:
    """What one review page works on: the review table and the audio root.

    Parameters
    ----------
    table : ReviewTable or path
        The review table (see `ReviewTable`).
    audio_root : path
        The only folder audio is served from.
    context : float
        Seconds shown before and after each clip in its spectrogram.
    classes : list of str, optional
        Classes offered for "other class"; default those of the table.
    """

    def __init__(self, table: ReviewTable | str | os.PathLike, audio_root: str | os.PathLike,
                 context: float = 1.0, classes: list[str] | None = None):
        self.table = table if isinstance(table, ReviewTable) else ReviewTable(table)
        self.root = AudioRoot(audio_root)
        self.context = float(context)
        self.classes = classes

    def state(self) -> dict:
        table = self.table.read()
        classes = self.classes or sorted(set(table["annotation"]) | set(
            table.loc[table["other_class"] != "", "other_class"]))
        rows = table.astype(object).where(table.notna(), None).to_dict("records")
        return {"items": rows, "classes": classes,
                "verdicts": list(VERDICTS), "progress": self.table.progress(table),
                "review_table": str(self.table.path), "audio_root": str(self.root.root),
                "context": self.context}


def create_app(session: ReviewSession, allowed_hosts: list[str] | None = None):
    """The FastAPI application serving `session`.

    `allowed_hosts`: the ``Host`` header values accepted (None: any). `serve` on a loopback
    address accepts only ``127.0.0.1``, ``localhost`` and ``::1``, so that a web page
    elsewhere cannot reach the app through a domain name that resolves to this machine
    (DNS rebinding).
    """
    from fastapi import Body, FastAPI, Query
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="soundscape review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.session = session
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.exception_handler(PathRefused)
    async def _refused(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(FileNotFoundError)
    async def _missing(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ParameterError)
    async def _bad(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(AudioFileError)
    async def _unreadable(request, exc):  # a recording that is not (readable) audio
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/items")
    def items():
        return session.state()

    @app.post("/api/verdict")
    def verdict(item_id: str = Body(...), verdict: str = Body(...), other_class: str = Body(""),
                note: str | None = Body(None)):
        row = session.table.set_verdict(item_id, verdict, other_class=other_class, note=note)
        return {"item": row, "progress": session.table.progress()}

    no_store = {"Cache-Control": "no-store"}

    @app.get("/audio")
    def audio(path: str = Query(...), start: float = Query(...), end: float = Query(...)):
        data = wav_bytes(session.root.resolve(path), start, end)
        return Response(data, media_type="audio/wav")

    @app.get("/image")
    def image(path: str = Query(...), start: float = Query(...), end: float = Query(...),
              low_f: float | None = Query(None), high_f: float | None = Query(None),
              context: float | None = Query(None)):
        data = spectrogram_png(session.root.resolve(path), start, end,
                               context=session.context if context is None else context,
                               low_f=low_f, high_f=high_f)
        return Response(data, media_type="image/png")

    @app.get("/api/report")
    def report(target_precision: float = Query(0.9)):
        from .report import review_report

        return review_report(session.table.read(), target_precision=target_precision)

    @app.get("/report.png")
    def report_png(target_precision: float = Query(0.9)):
        import io

        from .report import plot_report, review_report

        table = session.table.read()
        fig = plot_report(review_report(table, target_precision=target_precision), table)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return Response(buffer.getvalue(), media_type="image/png", headers=no_store)

    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ReviewServer:
    """A running review page: `url`, the review `table`; `stop()` ends it."""

    def __init__(self, server, thread: threading.Thread | None, url: str, table: ReviewTable):
        self._server = server
        self._thread = thread
        self.url = url
        self.table = table

    def __repr__(self) -> str:
        return f"ReviewServer({self.url!r}, table={str(self.table.path)!r})"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait for it to finish."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "ReviewServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _clips_for(source, audio_root, mode, n, bins, min_score, classes, seed) -> pd.DataFrame:
    from .selection import candidates

    if isinstance(source, pd.DataFrame):
        cands = candidates(source, min_score=min_score, classes=classes)
    else:
        cands = read_candidates(source, audio_root=audio_root, min_score=min_score, classes=classes)
    return select_clips(cands, mode=mode, n=n, bins=bins, seed=seed)


def _check_files(files, root: AudioRoot) -> None:
    """Every recording the clips name lies under the root (else the page could show nothing)."""
    outside, missing = [], []
    for f in files:
        try:
            root.resolve(f)
        except PathRefused:
            outside.append(f)
        except FileNotFoundError:
            missing.append(f)
    if outside:
        raise ParameterError(f"{len(outside)} of {len(files)} recording(s) the clips name are "
                             f"outside the audio root {root.root} (e.g. {outside[0]}); give as "
                             "the audio root the folder that holds them")
    if missing:
        warnings.warn(f"{len(missing)} of {len(files)} recording(s) the clips name are not "
                      f"found under the audio root {root.root} (e.g. {missing[0]}); their clips "
                      "cannot be shown", UserWarning, stacklevel=3)


def serve(source, audio_root: str | os.PathLike, review_table: str | os.PathLike | None = None,
          mode: str = "all", n: int | None = None, bins: int = 10, min_score: float | None = None,
          classes: list[str] | None = None, seed: int = 0, host: str = "127.0.0.1",
          port: int = 8765, context: float = 1.0, block: bool = True,
          quiet: bool = False) -> ReviewServer:
    """Start the review page for the clips of a score or detection table.

    Parameters
    ----------
    source : path or DataFrame
        A score table, detection table, Raven table or `predict_recordings` output
        folder (see `read_candidates`), or such a table in memory.
    audio_root : path
        The folder the recordings are in; nothing outside it is served.
    review_table : path, optional
        Where verdicts are saved (CSV or Parquet). Default: beside `source`
        (`default_review_path`); required when `source` is a DataFrame. An existing
        table is continued.
    mode, n, bins, seed : see `select_clips`
    min_score, classes : see `candidates`
    host : str
        Address to listen on; default only this machine. Any other address prints a
        warning: everyone who can reach it can listen to the recordings and change the
        verdicts.
    port : int
        Port (0: any free port).
    context : float
        Seconds of spectrogram shown before and after each clip.
    block : bool
        True: serve until interrupted (Ctrl-C). False: serve in a background thread and
        return at once (notebooks, tests); call ``.stop()`` on the result.
    quiet : bool
        Do not print the address.

    Returns
    -------
    ReviewServer
        With ``url``, ``table`` (the `ReviewTable`) and ``stop()``.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ImportError(f"the review page needs fastapi and uvicorn ({exc}); install them with "
                          "pip install 'soundscape[review]'") from exc
    if review_table is None:
        if isinstance(source, pd.DataFrame):
            raise ParameterError("review_table= is needed when source is a DataFrame (where "
                                 "should the verdicts go?)")
        review_table = default_review_path(source)
    clips = _clips_for(source, audio_root, mode, n, bins, min_score, classes, seed)
    root = AudioRoot(audio_root)
    _check_files(clips["file"].unique(), root)
    table = ReviewTable(review_table, clips)
    session = ReviewSession(table, audio_root, context=context)
    if not _is_loopback(host):
        warnings.warn(f"the review page listens on {host}, not only on this machine: anyone who "
                      f"can reach port {port} can listen to the recordings under "
                      f"{session.root.root} and change the verdicts (there is no login)",
                      UserWarning, stacklevel=2)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(128)  # connections wait in the queue until uvicorn has started
    except OSError as exc:
        sock.close()
        raise ParameterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another "
                             "review page running? Choose another --port") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else shown}:{bound}/"
    allowed = ["127.0.0.1", "localhost", "[::1]", "::1"] if _is_loopback(host) else None
    config = uvicorn.Config(create_app(session, allowed_hosts=allowed), log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    progress = table.progress()
    if not quiet:
        print(f"review page: {url}  ({progress['reviewed']} of {progress['total']} clips "
              f"reviewed; verdicts go to {table.path})", file=sys.stderr, flush=True)
    if block:
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn shut down cleanly, then passed Ctrl-C on
            pass
        finally:
            sock.close()
        if not quiet:
            progress = table.progress()
            print(f"review page stopped: {progress['reviewed']} of {progress['total']} clips "
                  f"reviewed, in {table.path}", file=sys.stderr, flush=True)
        return ReviewServer(server, None, url, table)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="soundscape-review")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise RuntimeError(f"the review server did not start on {url}")
    return ReviewServer(server, thread, url, table)
