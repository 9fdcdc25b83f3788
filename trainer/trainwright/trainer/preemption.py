"""Stopping on SIGTERM (spot reclaims, node drains, evictions, `kubectl delete`): one stop request
per process, raised by a SIGTERM to that process or passed on from the Ray driver's.

The loop reads `stop_requested()` after every step; with more than one worker the ranks agree on
it (an all-reduce, `loop.train`), so all stop at the same step and rank 0 writes the checkpoint.
Torch-free: the driver and the entrypoint import it before anything heavy.

Where a handler can be installed: Python runs signal handlers on a process's main thread, and
only that thread may install one. The single process and the Ray driver install theirs there
(`handling_sigterm`). Ray runs the training function in a thread of the worker's actor process,
whose main thread executes the actor's methods (Ray Train's worker is a plain, single-threaded
actor), so `distributed` asks its own actor to run `install` there (`RayTrainWorker.execute`).

Who sends the signal: in a batch Job pod the trainer is PID 1, the process the kubelet signals.
In a KubeRay pod PID 1 is `ray start`, which would end the Ray node without a checkpoint; there a
process that installs the handler also registers its PID (when $TRAINWRIGHT_PROCESS_DIR is set),
and the pod's preStop hook (`prestop.py`) signals the registered processes first.
"""

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

_STOP = threading.Event()
_reason: str | None = None
_requested_at: float | None = None  # time.monotonic(): one clock for every process of a machine


def request_stop(reason: str) -> None:
    """Ask this process's training to stop at the next step boundary (idempotent: the first reason stays)."""
    global _reason, _requested_at
    if not _STOP.is_set():
        _reason, _requested_at = reason, time.monotonic()
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def reason() -> str | None:
    return _reason


def seconds_since_request() -> float | None:
    return None if _requested_at is None else time.monotonic() - _requested_at


def reset() -> None:
    """A new run in this process (tests run several): no stop requested."""
    global _reason, _requested_at
    _STOP.clear()
    _reason = _requested_at = None


def wait(timeout: float) -> bool:
    return _STOP.wait(timeout)


def _on_sigterm(signum, frame) -> None:
    # Only sets flags: the main thread may be anywhere (inside ray.get, torch, a write).
    request_stop(f"SIGTERM to pid {os.getpid()}")


def install() -> bool:
    """Make SIGTERM a stop request in this process; False when not on the main thread (no effect)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    from trainwright.api import pod_contract  # after the handler: this import takes a moment

    register(os.environ.get(pod_contract.PROCESS_DIR_ENV))
    return True


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat, field 22): with the
    PID, it names one process, never a later one that reuses the number. None when it has exited
    (gone, or a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # field 3 onwards: they follow the command's closing parenthesis
    return None if fields[0] == "Z" else fields[19]


def register(directory: str | None) -> None:
    """Leave this process's PID (a file named by it, holding its start time) for the preStop hook."""
    if not directory:
        return
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / str(os.getpid())).write_text(start_time(os.getpid()) or "")
    except OSError as error:  # the hook will not find this process: the kubelet's SIGKILL ends it
        print(f"warning: cannot register pid {os.getpid()} in {directory} ({error}); a pod stop will "
              "not checkpoint it", file=sys.stderr, flush=True)


@contextlib.contextmanager
def handling_sigterm():
    """SIGTERM requests a stop for the duration, then the old handler is back. A fresh start,
    unless the process already handles SIGTERM this way (the entrypoint installs it first
    thing): a stop requested during start-up stands."""
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if on_main else None
    if previous is not _on_sigterm:
        reset()
    if on_main:
        install()
    else:
        print("warning: not on the main thread: SIGTERM will not checkpoint", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        if on_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
