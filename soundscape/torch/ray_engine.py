"""The Ray engine of `predict_recordings`: one model per Ray actor, one recording per task.

``predict_recordings(..., engine="ray")`` plans the recordings on the driver (the same
`RecordingJob` as the local engine: output folder, resume, claims), starts `num_actors`
actors that each load the model once per process (from the model file's bytes, with the same safe
loader as `load_model`; code in the file runs only with ``trusted=True``) and build a
`WindowScorer`, the local engine's own scoring code, and hands them one recording at a
time. An actor returns the recording's score table; the driver writes it through the
`OutputFolder` at once and forgets it (unless scores are returned), so folder layout,
``manifest.jsonl``, ``errors.csv``, resume and `read_scores` are those of a local run.

Back-pressure: at most `IN_FLIGHT_PER_ACTOR` recordings are queued on an actor (one
scoring, one waiting, so an actor never waits for the driver), and the driver takes the
results one at a time; its memory does not grow with the number of recordings.

Fault tolerance: an actor whose process dies is restarted by Ray (``max_restarts=-1``),
which runs the recordings it held again (``max_task_retries``: `MAX_ATTEMPTS` tries in
all; a recording that keeps killing its worker goes to ``errors.csv``). Nothing of a
recording is written before its whole table is back, so a retried recording is written once. A
driver that dies takes its actors with it; a re-run with the same `output_dir` resumes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections import deque
from typing import Iterator

import torch

from ..errors import ParameterError
from ..model_file import Detector, model_payload

logger = logging.getLogger("soundscape.predict")

RAY_HINT = 'the Ray engine needs Ray: pip install "soundscape[ray]" (or pip install "ray>=2.9")'
#: recordings queued on an actor at a time (one scoring, one waiting)
IN_FLIGHT_PER_ACTOR = 2
#: times a recording is handed out before a dying worker makes it an error
MAX_ATTEMPTS = 3
#: object store of the local Ray instance started when no address is given
LOCAL_OBJECT_STORE_BYTES = 400 * 2**20
#: environment variables the actors get from the driver (they change results)
PROPAGATED_ENV = ("SOUNDSCAPE_PRECISION", "SOUNDSCAPE_OFFLINE")


def import_ray():
    """The `ray` module, or a ParameterError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ParameterError(RAY_HINT) from exc
    return ray


def check_address(address: str | None) -> str | None:
    """`address` if Ray can take it: None (a local instance), "auto", "ray://host:port", "host:port"."""
    if address is None or address == "auto":
        return address
    if not isinstance(address, str) or not address.strip():
        raise ParameterError(f"address must be None, 'auto', 'ray://HOST:PORT' or 'HOST:PORT'; got {address!r}")
    if "://" in address and not address.startswith("ray://"):
        raise ParameterError(f"address {address!r}: a Ray cluster address is 'auto', 'ray://HOST:10001' "
                             "(Ray Client) or 'HOST:6379' (on a cluster node)")
    return address


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator:
    """Connected to Ray for the duration: the caller's connection if there is one, else
    `address`, else a new local instance on this machine (shut down afterwards).

    Yields ``(ray, started_here)``: `started_here` is True for a local instance started here.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray, False
        return
    if address is None:
        ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 _node_ip_address="127.0.0.1", logging_level=logging.WARNING)  # loopback only
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield ray, address is None
    finally:
        ray.shutdown()


def model_bytes(model: Detector) -> bytes:
    """The model file of `model`, in memory (what `Detector.save` writes)."""
    buffer = io.BytesIO()
    torch.save(model_payload(model), buffer)
    return buffer.getvalue()


class ScoringActor:
    """One model on a Ray worker (made a Ray actor class by `_actor_class`).

    The model comes with the calls (``model``: ``[ObjectRef]`` of the model file's bytes,
    `model_bytes`, which the driver holds for the whole run) and is loaded by the first
    one, with `load_model(trusted=trusted)`; so an actor that Ray restarts loads it again
    with the first task it is given, and no constructor argument lives in the object store.

    Parameters
    ----------
    trusted : bool
    options : dict
        ``prep``, ``activation``, ``device``, ``batch_size``, ``chunk_duration``,
        ``num_workers``, ``precision``, ``compile``, ``backend``, ``calibration``,
        ``threads``: the `WindowScorer` settings.
    """

    def __init__(self, trusted: bool, options: dict):
        self.trusted, self.options = trusted, dict(options)
        self.num_workers = self.options["num_workers"]
        self.scorer = None

    def _load(self, model: list):
        if self.scorer is not None:
            return self.scorer
        import ray

        from ..model_file import load_model
        from .predict import _activation, _error_record
        from .scoring import WindowScorer

        with tempfile.TemporaryDirectory(prefix="soundscape-ray-") as tmp:
            path = os.path.join(tmp, "model.model")
            with open(path, "wb") as fh:
                fh.write(ray.get(model[0]))
            detector = load_model(path, trusted=self.trusted)
        o = self.options
        torch.set_num_threads(o["threads"])
        _, act = _activation(detector, o["activation"])
        self.scorer = WindowScorer(
            detector, o["prep"], act, torch.device(o["device"]), o["batch_size"], o["chunk_duration"],
            _error_record, o["precision"], o["compile"], o["backend"], o["calibration"], o["threads"])
        return self.scorer

    def pid(self) -> int:
        """The worker's process id (tests kill it)."""
        return os.getpid()

    def info(self, model: list) -> dict:
        """How the model runs here (`WindowScorer.run_info`) and the worker's pid and host."""
        import socket

        return {"pid": os.getpid(), "host": socket.gethostname(), **self._load(model).run_info}

    def score(self, k: int, plan, model: list) -> tuple:
        """``(kind, k, payload)`` of recording k: ``("scores", k, table)`` or ``("error", k, record)``."""
        (kind, _, payload), = self._load(model).score([(k, plan)], self.num_workers)
        return kind, k, payload

    def summary(self) -> dict | None:
        """`WindowScorer.summary` (None for an actor restarted after its last task)."""
        return None if self.scorer is None else self.scorer.summary()


def _actor_class(ray):
    # a task of a dead worker is run again (on the restarted actor) by Ray itself
    return ray.remote(max_restarts=-1, max_task_retries=MAX_ATTEMPTS - 1)(ScoringActor)


def _runtime_env(ray_options: dict, local: bool) -> dict:
    """`ray_options`' runtime_env with the driver's `PROPAGATED_ENV` variables added; on a
    `local` instance, also a PYTHONPATH that finds the driver's own soundscape first."""
    env = dict(ray_options.get("runtime_env") or {})
    wanted = {k: os.environ[k] for k in PROPAGATED_ENV if k in os.environ}
    if local:
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        wanted["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    if wanted:
        env["env_vars"] = {**wanted, **(env.get("env_vars") or {})}
    return env


def _default_actors(ray, num_cpus: float, num_gpus: float) -> int:
    resources = ray.cluster_resources()
    if num_gpus:
        return max(1, int(resources.get("GPU", 0) // num_gpus))
    return max(1, int(resources.get("CPU", 1) // max(num_cpus, 1e-9)))


def score_on_ray(job, model: Detector, options: dict, address: str | None = None,
                 num_actors: int | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 trusted: bool = False, ray_options: dict | None = None):
    """Run `job` (a `RecordingJob`) on Ray; returns its table (see the module docstring).

    `options` are the `ScoringActor` settings except ``threads`` and ``device`` (from
    `num_cpus` and `num_gpus`, unless ``device`` is given).
    """
    ray_options = dict(ray_options or {})
    with ray_session(address) as (ray, local):
        from ray.exceptions import ObjectLostError, RayActorError, WorkerCrashedError

        lost = (RayActorError, ObjectLostError, WorkerCrashedError)
        n = num_actors if num_actors is not None else _default_actors(ray, num_cpus, num_gpus)
        options = {**options, "threads": max(1, int(num_cpus))}
        if options.get("device") is None:
            options["device"] = "cuda" if num_gpus else "cpu"
        actor_options = {**ray_options, "num_cpus": num_cpus, "num_gpus": num_gpus}
        runtime_env = _runtime_env(ray_options, local)
        if runtime_env:
            actor_options["runtime_env"] = runtime_env
        cls = _actor_class(ray)
        weights = [ray.put(model_bytes(model))]  # held here for the whole run (actor restarts)
        # one actor first: its precision names the run (run.json) before any file is planned
        actors = [cls.options(**actor_options).remote(trusted, options)]
        try:
            infos = _started(ray, actors, weights)
            precision = infos[0]["precision"]
            plans = job.open(precision)
            n = max(1, min(n, len(plans)))
            actors += [cls.options(**actor_options).remote(trusted, options) for _ in range(n - 1)]
            infos += _started(ray, actors[1:], weights)
            other = sorted({i["precision"] for i in infos} - {precision})
            if other:
                raise ParameterError(f"the Ray actors run the model in different precisions ({precision}, "
                                     f"{other}); pass precision= explicitly")
            queue = deque(plans)
            pending: dict = {}  # ObjectRef -> (actor index, k, plan)
            load = [0] * len(actors)

            def submit() -> None:
                while queue:
                    i = min(range(len(actors)), key=load.__getitem__)
                    if load[i] >= IN_FLIGHT_PER_ACTOR:
                        return
                    k, plan = queue.popleft()
                    pending[actors[i].score.remote(k, plan, weights)] = (i, k, plan)
                    load[i] += 1

            submit()
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                i, k, plan = pending.pop(ref)
                load[i] -= 1
                try:
                    kind, _, payload = ray.get(ref)
                except lost as exc:  # its worker died MAX_ATTEMPTS times (Ray retried it meanwhile)
                    kind, payload = "error", {"file": str(plan.path), "error": (
                        f"lost on the Ray cluster after {MAX_ATTEMPTS} tries, its worker or node died "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")}
                del ref
                if kind == "scores":
                    job.windows_done(len(payload))
                    job.scored(k, payload)
                else:
                    job.failed(k, payload)
                del payload
                submit()
            pids = ray.get([a.pid.remote() for a in actors])
            restarts = sum(p != info["pid"] for p, info in zip(pids, infos))
            summaries = [s for s in ray.get([a.summary.remote() for a in actors]) if s is not None]
        finally:
            job.close()
            for actor in actors:
                ray.kill(actor)
    return job.table(_summary(summaries, infos, restarts))


def _started(ray, actors: list, model: list) -> list[dict]:
    """The `ScoringActor.info` of `actors` once they run; a ParameterError naming the cause
    when one could not start (its model did not load, say)."""
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return ray.get([a.info.remote(model) for a in actors])
    except RayTaskError as exc:  # the model did not load
        cause = getattr(exc, "cause", None) or exc
        raise ParameterError(f"a Ray actor could not start: {cause}") from exc
    except RayActorError as exc:
        text = str(exc)
        lines = [line.strip() for line in text.splitlines() if "Error" in line and ":" in line]
        raise ParameterError(f"a Ray actor could not start: {lines[-1] if lines else text[:500]}") from exc


def _summary(summaries: list[dict], infos: list[dict], restarts: int) -> dict:
    """The engine's part of ``attrs["summary"]``: the first actor's run info, timings summed."""
    if not summaries:  # every actor was restarted after its last task: run info only
        summaries = [{k: v for k, v in infos[0].items() if k not in ("pid", "host")}]
    first = dict(summaries[0])
    for key in ("max_chunk_samples", "runner_setup_seconds"):
        first[key] = max(s.get(key, 0) for s in summaries)
    for key in ("model_seconds", "input_wait_seconds"):
        first[key] = round(sum(s.get(key, 0.0) for s in summaries), 3)
    first.update(engine="ray", num_actors=len(infos),
                 ray_hosts=sorted({i["host"] for i in infos}), n_actor_restarts=restarts)
    return first
