"""Several devices and several workers (tf.distribute): where this process stands in the cluster
TF_CONFIG describes, how a batch shares out over workers and replicas, the strategy, the gather by
which the workers agree, the watch that names a hung peer, and a worker's scratch folder.

TensorFlow is passed in or imported inside the functions that need it: plan.py reads the cluster
before train.py pays for that import.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterator

import runs
from utils import OWNER_TAG, CharRNNError, left_by_gone_owner, owner_tag

if TYPE_CHECKING:  # for annotations only
    import numpy as np
    import tensorflow as tf


# ---------------------------------------------------------------------------------------------
# The cluster, read before TensorFlow is imported (plan.py)

# What may differ between the workers of one run: where each keeps its files and finds its text, and
# how that is stored (the text itself must be the same); what it prints; how many checkpoints it keeps.
PER_WORKER_FLAGS = ("init_from", "save_dir", "log_dir", "run_name", "data_dir", "input", "encoding", "verbose",
                    "print_every", "keep", "peer_timeout")
# How to train on fewer of this machine's GPUs.
GPU_CHOICE = "fewer GPUs, e.g. CUDA_VISIBLE_DEVICES=0,1, or one with --strategy one"


@dataclass(frozen=True)
class Cluster:
    """Where this process stands among the training workers (TF_CONFIG for multiworker)."""
    worker_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0


def check_batch_shares(batch_size: int, parts: int, what: str, *, resumed: bool, how_to_use_fewer: str) -> None:
    """Each worker or replica trains an equal share of the streams: a remainder would never be
    trained, and a share of none would make the loss NaN."""
    if batch_size % parts:
        fits = parts * max(1, round(batch_size / parts))
        fix = (f"Go on with a number of {what} that divides it ({how_to_use_fewer}), or with --batch_size {fits} "
               f"(at another batch than the run's, it goes on from the same point in its epoch, in other streams)"
               if resumed else f"Try --batch_size {fits}")
        raise CharRNNError(f"--batch_size {batch_size} must be a multiple of the number of {what} ({parts}): "
                           f"each trains an equal share of the streams. {fix}")


def cluster_from_env(strategy: str) -> Cluster:
    """Read TF_CONFIG (without TensorFlow) so that a bad cluster spec fails before any work."""
    if strategy != "multiworker":
        return Cluster()
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if "TF_CONFIG" not in os.environ:
        raise CharRNNError(f"--strategy multiworker needs TF_CONFIG set on each worker, e.g. {example}")
    try:
        spec = json.loads(os.environ["TF_CONFIG"])
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
        task, cluster = spec["task"], spec["cluster"]
        if not isinstance(cluster, dict):
            raise ValueError(f"its cluster is {cluster!r}, not an object of jobs")
        # A job MultiWorkerMirroredStrategy does not use (a parameter server's "ps") left the workers
        # waiting for it for ever, and one it does not know, or two chiefs, ended in its traceback.
        others = set(cluster) - {"chief", "worker", "evaluator"}
        if others:
            raise ValueError(f"its cluster has the job {sorted(others)[0]!r}: --strategy multiworker trains with "
                             f"\"chief\" and \"worker\" jobs only (no parameter servers)")
        for job, addresses in cluster.items():
            if not isinstance(addresses, list):
                raise ValueError(f"cluster.{job} is {addresses!r}, not a list of \"host:port\" strings")
        chiefs, workers = cluster.get("chief", []), cluster.get("worker", [])
        if len(chiefs) > 1:
            raise ValueError(f"cluster.chief lists {len(chiefs)} addresses: a cluster has one chief at most")
        for address in chiefs + workers:  # TensorFlow's own parse of it is a traceback
            if not (isinstance(address, str) and re.fullmatch(r".+:\d{1,5}", address)
                    and 0 < int(address.rpartition(":")[2]) < 65536):
                raise ValueError(f"{address!r} is not host:port")
        twice = [address for address in dict.fromkeys(chiefs + workers) if (chiefs + workers).count(address) > 1]
        if twice:  # the second task's server cannot start, and the first waits for it for ever
            raise ValueError(f"{twice[0]!r} is listed twice: each task needs an address of its own")
        given_index = task.get("index", 0)
        if not isinstance(given_index, int) or isinstance(given_index, bool):  # TensorFlow waits for ever on "1"
            raise ValueError(f"the task's index {given_index!r} is not a number")
        # Within its own list: worker -1 beside a chief would be taken for the chief, chief 1 for it too.
        own = chiefs if task["type"] == "chief" else workers
        position = given_index if task["type"] == "chief" else task["index"]
        if task["type"] not in ("chief", "worker"):
            raise ValueError(f"task {task}: train.py runs the \"chief\" and \"worker\" tasks of a cluster, not "
                             f"{task['type']!r}")
        if not 0 <= position < len(own):
            raise ValueError(f"task {task} is not in the cluster")
        index = 0 if task["type"] == "chief" else len(chiefs) + position
    except KeyError as missing:
        raise CharRNNError(f"--strategy multiworker needs TF_CONFIG with {missing} set, e.g. {example}") from None
    except (ValueError, TypeError, AttributeError) as error:  # AttributeError: a list where an object belongs
        raise CharRNNError(f"--strategy multiworker: TF_CONFIG is not valid ({error}); e.g. {example}") from None
    return Cluster(worker_index=index, num_workers=len(chiefs) + len(workers))
# A non-chief worker's scratch folder, named by its process and host (new_worker_scratch_dir).
_WORKER_SCRATCH = re.compile(rf"charrnn-worker\d+-{OWNER_TAG}-\w+")


def new_worker_scratch_dir(worker_index: int) -> Path:
    """A new temporary folder for what a worker other than the chief writes (its checkpoints, which
    nobody reads). A worker removes its own when it stops; those of workers killed first (kill -9),
    each a model's checkpoints, go here."""
    for stranded in Path(tempfile.gettempdir()).glob("charrnn-worker*-*@*"):
        if stranded.is_dir() and left_by_gone_owner(_WORKER_SCRATCH.fullmatch(stranded.name)):
            shutil.rmtree(stranded, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"charrnn-worker{worker_index}-{owner_tag()}-"))


# ---------------------------------------------------------------------------------------------
# Under TensorFlow: the strategy, the gather and the hang watch


def make_strategy(tf: ModuleType, name: str) -> "tf.distribute.Strategy":
    """tf.distribute does the distributing: one device, several GPUs, or several workers."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "multiworker":
        # No timeout per collective: TensorFlow starts a watchdog thread for each one that sleeps the whole
        # timeout (tensorflow#62466), and a tiny model's 2,600 steps a minute died of 16,000 threads. A peer
        # that dies or is stopped misses the heartbeats of TensorFlow's coordination service instead (found
        # in about 10 s here); one whose process lives on but hangs, by HangWatch.
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except tf.errors.OpError as error:
            reason = runs.tf_error_reason(error)
            if "Could not start gRPC server" in reason:
                raise CharRNNError(f"--strategy multiworker: this worker's server did not start ({reason}): its "
                                   f"host:port in TF_CONFIG is taken by another process, or not an address of this "
                                   f"machine") from None
            raise CharRNNError(f"--strategy multiworker: the workers of TF_CONFIG's cluster did not all connect "
                               f"({reason}); start every worker, and check their addresses") from None
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")


class HangWatch:
    """--strategy multiworker: a worker whose process lives on but hangs (a deadlock, a stalled disk)
    keeps the others waiting in their next exchange for ever, since TensorFlow's coordination service
    finds only workers that die or are stopped. When an exchange with the other workers (a step's
    all-reduce, a gather) waits longer than --peer_timeout, a thread aborts this worker's collectives:
    the wait ends in an error, which train_run names. What a worker does alone (its evaluation, its
    save: TensorFlow's saves are not collectives) is not watched; the others wait for it in their
    next exchange, and work that only the chief does is followed by an unwatched meeting."""

    def __init__(self, timeout_s: float):
        """timeout_s 0: nothing is watched (one worker, or --peer_timeout 0)."""
        self.timeout_s, self.fired = timeout_s, False
        self.waiting_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around an exchange with the other workers (not nested: one exchange at a time)."""
        if self.timeout_s and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="hang-watch", daemon=True)
            self._thread.start()
        self.waiting_since = time.monotonic()
        try:
            yield
        finally:
            self.waiting_since = None

    def watched(self, function: Callable, from_call: int = 1) -> Callable:
        """function, each call from the from_call-th on an exchange with the other workers (a first
        call that compiles takes as long as the slowest worker's compilation). Unchanged when nothing
        is watched."""
        if not self.timeout_s:
            return function
        calls = 0

        @functools.wraps(function)
        def exchange(*args, **kwargs):
            nonlocal calls
            calls += 1
            with self.waiting() if calls >= from_call else contextlib.nullcontext():
                return function(*args, **kwargs)
        return exchange

    def stop(self) -> None:
        """End the watch (the thread is a daemon: it never keeps the process alive)."""
        self._stop.set()

    def _watch(self) -> None:
        import tensorflow as tf
        from tensorflow.python.eager import context  # no public API aborts collectives (tf.distribute's own use)
        # Checked a few times per timeout: it fires at most a quarter late, and costs nothing between.
        while not self._stop.wait(min(10.0, self.timeout_s / 4)):
            since = self.waiting_since
            if since is not None and time.monotonic() - since > self.timeout_s:
                self.fired = True
                context.context().abort_collective_ops(tf.errors.UNAVAILABLE, "--peer_timeout: waited too long")
                return


def identical_replica_updates(next_creator: Callable, **kwargs) -> "tf.Variable":
    """Every replica applies the same all-reduced update, so a variable takes the first
    replica's value instead of needing a merge (a no-op on one device)."""
    import tensorflow as tf
    kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    return next_creator(**kwargs)


def make_gather(strategy: "tf.distribute.Strategy") -> Callable[[list[float]], "np.ndarray"]:
    """values -> every replica's values, [replicas, len(values)] (replica 0 is the chief's), on
    every worker: one tiny all-reduce, each replica adding its values into its own row."""
    import tensorflow as tf
    from model import graph_function

    @graph_function
    def gather(values):
        def replica(values):
            ctx = tf.distribute.get_replica_context()
            row = tf.one_hot(ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync, dtype=tf.float64)
            return ctx.all_reduce("SUM", row[:, None] * values[None, :])
        return strategy.experimental_local_results(strategy.run(replica, args=(values,)))[0]

    return lambda values: gather(tf.constant(values, tf.float64)).numpy()
