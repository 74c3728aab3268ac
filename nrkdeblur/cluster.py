"""The Ray engine: a batch deblurred by a pool of Ray Data actors, on one machine or a cluster.

A thin layer over pipeline.py. The driver plans and skips exactly as the local engine does
(pipeline.process_jobs); only the jobs left to do go out, as a Ray Dataset of paths, one
photo per block. Each actor loads the model once and runs pipeline.attempt (so
process_one: read, choose_tile, deblur, write atomically) on the photos it is given, then
returns each photo's Outcome (megapixels, or why it failed) to the driver, which reports
it as the local engine would.

- Paths, not pixels, travel: every node must see the inputs, the outputs and the weights
  at the same paths (a shared file system). Object-store URIs (s3://...) are not supported.
- With GPUs in the cluster each actor gets one GPU; without, each gets CPUs and uses as
  many torch threads. The jobs are already in the driver's object store (from_items), so
  no read task competes with the actors for CPUs: a pool that fills the cluster cannot
  starve its own input.
- An actor holds one photo at a time. If its process dies (killed, out of memory), Ray
  restarts it and tries the photo again, up to RETRIES more times; after that the photo is
  reported by name and the batch goes on. Outputs are written atomically, so a death
  mid-photo leaves no partial file.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from .errors import NrkdeblurError
from .batch import Job
from .pipeline import DeblurOptions, Outcome, Report, SilentReport, attempt, failure_reason, open_default_weights
from .settings import flatten, override

RETRIES = 2  # more tries for a photo whose worker died; then it is reported as failed
CPUS_PER_WORKER = 4  # without GPUs and without --workers: one worker per 4 CPUs of a node


class ClusterError(NrkdeblurError):
    """Ray is missing, the cluster cannot be joined, or it cannot run the workers asked for."""


class Placement(NamedTuple):
    """How many actors, and what each one reserves."""

    workers: int
    cpus: int
    gpus: int
    device: str  # what the actors pass to torch


def place(node_cpus: list[int], gpus: int, options: DeblurOptions, jobs: int) -> Placement:
    """Size the actor pool for a cluster with these nodes' CPUs and GPUs in all.

    GPUs (unless --device cpu): one GPU and one CPU per actor, one actor per GPU by default.
    CPUs only: each actor gets the most CPUs such that the actors still fit the nodes
    (a node of 8 CPUs holds two 4-CPU actors, never one and a half). Never more actors
    than jobs.
    """
    device = options.inference.device
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ClusterError(f"--device {device}: the ray engine runs on cpu or cuda")
    if device.startswith("cuda") and gpus == 0:
        raise ClusterError(f"--device {device}: the Ray cluster has no GPU")
    if device != "cpu" and gpus > 0:
        workers = options.engine.workers or gpus
        if workers > gpus:
            raise ClusterError(f"--workers {workers}: the Ray cluster has {gpus} GPUs (one per worker)")
        return Placement(min(workers, jobs), 1, 1, "cuda")  # Ray shows each actor its own GPU as cuda:0
    workers = options.engine.workers or sum(max(1, n // CPUS_PER_WORKER) for n in node_cpus)
    if workers > sum(node_cpus):
        raise ClusterError(f"--workers {workers}: the Ray cluster has {sum(node_cpus)} CPUs (one per worker at least)")
    cpus = max(c for c in range(1, max(node_cpus) + 1) if sum(n // c for n in node_cpus) >= workers)
    return Placement(min(workers, jobs), cpus, 0, "cpu")


class Worker:
    """A Ray Data actor: the model loaded once, then one batch of jobs (rows of paths) per call."""

    def __init__(self, options: DeblurOptions, threads: int):
        import torch

        from .inference import resolve_device

        torch.set_num_threads(threads)
        self.options = options
        self.model = open_default_weights(options.inference.weights, resolve_device(options.inference.device))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs = [Job(Path(s), Path(o), Path(r)) for s, o, r in zip(batch["source"], batch["output"], batch["relative"])]
        outcomes = [self.run(job) for job in jobs]
        return {"index": batch["index"],
                "done": np.array([o.reason is None for o in outcomes]),
                "megapixels": np.array([o.megapixels for o in outcomes], dtype=np.float64),
                "reason": np.array([o.reason or "" for o in outcomes], dtype=object)}

    def run(self, job: Job) -> Outcome:
        """pipeline.attempt; an error it lets through (a bug) is reported for this photo too,
        as its traceback is on another machine (--debug raises it on the driver)."""
        try:
            return attempt(self.model, job, self.options, SilentReport())
        except Exception as e:
            if self.options.engine.debug:
                raise
            return Outcome(0.0, failure_reason(job, e))


def ray_engine(todo: list[Job], options: DeblurOptions, report: Report) -> Iterator[tuple[Job, Outcome]]:
    """pipeline.Engine on Ray: start or join Ray, start the actors, yield outcomes as they come."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ClusterError("the ray engine needs Ray: pip install 'nrkdeblur[ray]'") from None
    import torch

    open_default_weights(options.inference.weights, torch.device("cpu"))  # a bad weights file: one clear error, here
    stderr = NativeStderr(hidden=not options.engine.debug)
    try:
        started = connect(ray, options)
    except BaseException:
        stderr.restore()
        raise
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1]
        gpus = sum(int(n["Resources"].get("GPU", 0)) for n in nodes)
        if not node_cpus:
            raise ClusterError("the Ray cluster has no node with a CPU")
        where = place(node_cpus, gpus, options, len(todo))
        data = dataset(ray, todo, options, where)
    except BaseException:
        if started:
            ray.shutdown()
        stderr.restore()
        raise
    return outcomes(ray, data, todo, options, started, stderr)


def connect(ray, options: DeblurOptions) -> bool:
    """Join the cluster at options.engine.ray_address or $RAY_ADDRESS, else start a local instance
    with this machine's CPUs and GPUs; Ray's own messages only with --debug. Returns whether
    this call connected (and so should disconnect); an existing connection is reused."""
    quiet(options.engine.debug)
    if ray.is_initialized():
        return False
    address = options.engine.ray_address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)

    level = logging.INFO if options.engine.debug else logging.ERROR
    try:
        if address is None:
            # Ray runs its workers at niceness 15, below everything else on the machine; here
            # they are this command's own work, so they run as the local engine would
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address="local", include_dashboard=False, log_to_driver=options.engine.debug, logging_level=level)
        else:
            ray.init(address=address, log_to_driver=options.engine.debug, logging_level=level)
    except (ConnectionError, RuntimeError, ValueError) as e:
        if options.engine.debug:
            raise
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        causes = [e]
        while causes[-1].__cause__ is not None:
            causes.append(causes[-1].__cause__)
        if any("AuthenticationError" in f"{type(c).__name__} {c}" for c in causes):  # Ray nests it as text
            raise ClusterError(f"{where} asks for its token: set RAY_AUTH_MODE=token, with the cluster's "
                               "token in ~/.ray/auth_token or RAY_AUTH_TOKEN") from e
        raise ClusterError(f"cannot start or join {where}: {str(e).splitlines()[0]}") from e
    return True


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ClusterError within `timeout` seconds if nothing listens at a HOST:PORT (or
    ray://HOST:PORT) address: ray.init waits many minutes for a cluster that is not there,
    then names another address than the one given. Other forms ("auto") are left to Ray."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e) or type(e).__name__).lower()
        raise ClusterError(f"cannot join the Ray cluster at {address}: {reason}") from None


def quiet(debug: bool) -> None:
    """Keep Ray Data's progress bars, execution logs and deprecation notices off the terminal
    (its log file under the Ray log folder keeps them) and, for the rest of this process,
    the raylet's worker-death notices off stdout: the engine reports every photo itself.
    --debug shows them all."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = debug
    context.print_on_execution_start = debug
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.INFO if debug else logging.CRITICAL)
    if not debug:
        from ray._private import worker  # private: the driver's printer of raylet error messages

        if hasattr(worker, "print_to_stdstream"):
            worker.print_to_stdstream = lambda data, ignore_prefix: None


def dataset(ray, todo: list[Job], options: DeblurOptions, where: Placement):
    """The jobs as a Dataset (one photo per block) mapped by a pool of `where.workers` actors."""
    rows = [{"index": i, "source": str(job.source.absolute()), "output": str(job.output.absolute()),
             "relative": job.relative.as_posix()} for i, job in enumerate(todo)]
    flat = flatten(options)
    # every path setting (weights, mask, map folders, report page) made absolute: an actor's
    # working folder is not the driver's
    absolute = {k: v.absolute() for k, v in flat.items() if isinstance(v, Path)}
    worker_options = override(options, device=where.device, **absolute)
    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = 0 if options.engine.debug else -1  # a photo whose retries ran out: reported below
    data = ray.data.from_items(rows, override_num_blocks=len(rows))
    with warnings.catch_warnings():
        # max_task_retries has no named parameter yet (Ray 2.60); without it Ray retries forever
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return data.map_batches(
            Worker, fn_constructor_kwargs={"options": worker_options, "threads": where.cpus},
            batch_size=1, batch_format="numpy", num_cpus=where.cpus, num_gpus=where.gpus,
            compute=ray.data.ActorPoolStrategy(size=where.workers, max_tasks_in_flight_per_actor=1),
            max_restarts=-1, max_task_retries=RETRIES)


def outcomes(ray, data, todo: list[Job], options: DeblurOptions, started: bool,
             stderr: NativeStderr) -> Iterator[tuple[Job, Outcome]]:
    """Each photo's Outcome as its actor returns it; photos that never came back are failures."""
    back: set[int] = set()
    try:
        try:
            for row in data.iter_rows():
                i = int(row["index"])
                back.add(i)
                yield todo[i], Outcome(float(row["megapixels"]), None if row["done"] else str(row["reason"]))
        except ray.exceptions.RayError as e:
            if options.engine.debug:
                raise
            raise ClusterError(f"the Ray job failed: {str(e).strip().splitlines()[0]}") from e
        lost = f"its worker died {RETRIES + 1} times (killed, or out of memory: try a smaller --tile)"
        for i, job in enumerate(todo):
            if i not in back:
                yield job, Outcome(0.0, lost)
    finally:
        if started:
            ray.shutdown()
        stderr.restore()


class NativeStderr:
    """Ray's C++ core writes its warnings straight to file descriptor 2 (they are in its
    log files too), e.g. one per actor about its constructor arguments. While hidden, fd 2
    goes to /dev/null and Python's sys.stderr (the progress bar, the report) is moved to a
    copy of the original descriptor, so only the C++ lines disappear."""

    def __init__(self, hidden: bool):
        self.saved = self.python = None
        if not hidden:
            return
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
        except OSError:  # no descriptor 2 at all: nothing to hide
            return
        try:
            python_on_fd2 = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):  # a captured stream (tests), not fd 2
            python_on_fd2 = False
        if python_on_fd2:
            self.python = sys.stderr
            sys.stderr = os.fdopen(os.dup(self.saved), "w", buffering=1, encoding=self.python.encoding,
                                   errors=self.python.errors)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def restore(self) -> None:
        if self.saved is None:
            return
        if self.python is not None:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = self.python
            self.python = None
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.saved = None
