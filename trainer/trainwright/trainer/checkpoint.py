"""Checkpoints: written to a temporary directory and renamed into place, so one either exists
whole or not at all; only the newest `keep` are kept. A run killed at any point resumes from
the newest good one and loses only the steps since.

Each checkpoint is `step-NNNNNNNNN/` holding `state.pt` (torch.save of the loop's state) and
`meta.json`: the format, the step, the size of `state.pt` as written, and the fingerprint of the
job that wrote it. On resume a checkpoint is refused, with one line saying why, when it is torn
(no or unreadable `meta.json`, `state.pt` shorter than written or unreadable), from another job
(another fingerprint) or does not fit the run (`check`: the step count, the model's shapes); a
refused one is renamed `refused-step-NNNNNNNNN` (kept for a person, never used or pruned again)
and the one before it is tried. A failed write (a full disk) removes its temporary directory and
leaves every earlier checkpoint as it was.
"""

import io
import json
import os
import random
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from trainwright.trainer.errors import TrainerError

if TYPE_CHECKING:
    from trainwright.trainer.remote_checkpoints import RemoteCheckpoints

# The keys of a checkpoint's state, named once (as torchtune names its own in torchtune.training).
MODEL_KEY = "model"
OPTIMIZER_KEY = "optimizer"
SCHEDULER_KEY = "scheduler"
SCALER_KEY = "scaler"
RNG_KEY = "rng"  # every rank's RNG states, in rank order
PROGRESS_KEY = "progress"  # the loop's LoopState, as a dict
TOTAL_STEPS_KEY = "total_steps"

PATTERN = re.compile(r"^step-(\d{9})$")
STATE_FILE = "state.pt"
META_FILE = "meta.json"
FILES = (STATE_FILE, META_FILE)  # a checkpoint's files, in the order they are written and copied
BEST_FILE = "best-weights.pt"
FORMAT = 2  # 1: state.pt alone (no meta.json), refused


class Refused(Exception):
    """A checkpoint that must not be resumed from; the message says why, on one line."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _File(io.FileIO):
    """An unbuffered file that keeps the OSError of a failed write: torch.save reports one as a
    RuntimeError ("unexpected pos ..."), and a full disk must read as what it is."""

    error: OSError | None = None

    def write(self, data) -> int:
        try:
            return super().write(data)
        except OSError as error:
            self.error = error
            raise


def _save_synced(obj, path: Path) -> int:
    """torch.save, then flushed to the disk: the rename that follows must not expose a file
    whose bytes are still only in the page cache. Returns the size written."""
    with _File(path, "wb") as handle:
        try:
            torch.save(obj, handle)
        except Exception as error:
            if handle.error is not None:
                raise handle.error from error
            raise
        os.fsync(handle.fileno())
        return handle.tell()


def _write_synced(text: str, path: Path) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _warn(message: str) -> None:
    """A failed copy to or from `remote` does not stop training: the log says so."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def differing(written: dict | None, expected: dict | None) -> list[str]:
    """The parts of two job fingerprints that differ (none when either is unknown)."""
    if written is None or expected is None:
        return []
    return sorted(k for k in set(written) | set(expected) if written.get(k) != expected.get(k))


class Checkpointer:
    """`fingerprint`: what identifies the job (its spec's parts, hashed), stored in every
    checkpoint and compared on resume. `writer`: this process writes and sets refused ones aside
    (rank 0); the other ranks only read. `remote`: where each checkpoint is also copied
    (`spec.checkpoint.uri`), and where a resume finds the ones this folder lacks."""

    def __init__(self, directory: str | Path, keep: int, fingerprint: dict[str, str] | None = None, writer: bool = True,
                 remote: "RemoteCheckpoints | None" = None):
        self.directory = Path(directory)
        self.keep = keep
        self.fingerprint = fingerprint
        self.writer = writer
        self.remote = remote

    def steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := PATTERN.match(p.name)))

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step:09d}"

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def save(self, step: int, state: dict) -> Path:
        """Write `state` for `step` atomically, then drop all but the newest `keep`. On an error
        (OSError: a full disk) nothing is left of this write and earlier checkpoints stand."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(step)
        temporary = self.directory / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            temporary.mkdir()
            size = _save_synced(state, temporary / STATE_FILE)
            meta = {"format": FORMAT, "step": step, "stateBytes": size, "fingerprint": self.fingerprint,
                    "writtenBy": {"host": socket.gethostname(), "pid": os.getpid()}}
            _write_synced(json.dumps(meta, indent=2), temporary / META_FILE)
            _fsync_directory(temporary)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        if final.exists():  # the same step again after a resume: replace it
            stale = self.directory / f".old-{final.name}-{os.getpid()}"
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        temporary.rename(final)
        _fsync_directory(self.directory)
        self._prune()
        self._copy(f"checkpoint {final.name} is not copied to", lambda: (
            self.remote.push(final), self.remote.drop(self.remote.steps()[: -self.keep])))
        return final

    def _copy(self, failure: str, action: Callable[[], object]) -> None:
        """Rank 0 mirrors a change to `remote`; a failure is a warning, and the local copy stands."""
        if self.remote is None or not self.writer:
            return
        try:
            action()
        except TrainerError as error:
            _warn(f"{failure} {self.remote.url} ({error}); training goes on with the local copy")

    def meta(self, path: Path) -> dict:
        try:
            meta = json.loads((path / META_FILE).read_text())
        except FileNotFoundError:
            raise Refused(f"no {META_FILE}: torn, or written before checkpoint format {FORMAT}") from None
        except (OSError, ValueError) as error:
            raise Refused(f"{META_FILE} unreadable (torn): {error}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise Refused(f"checkpoint format {meta.get('format') if isinstance(meta, dict) else '?'}; "
                          f"this trainer reads format {FORMAT}")
        return meta

    def load(self, path: Path) -> dict:
        """The state of the checkpoint at `path`; `Refused` when it is torn or another job's."""
        meta = self.meta(path)
        if parts := differing(meta.get("fingerprint"), self.fingerprint):
            raise Refused("written by another job: its " + ", ".join(f"spec.{p}" for p in parts)
                          + " differ from this job's")
        state_file = path / STATE_FILE
        try:
            size = state_file.stat().st_size
        except OSError as error:
            raise Refused(f"{STATE_FILE} unreadable (torn): {error.strerror}") from None
        if size != meta.get("stateBytes"):
            raise Refused(f"torn: {STATE_FILE} has {size} bytes, {meta.get('stateBytes')} were written")
        try:
            return torch.load(state_file, map_location="cpu", weights_only=False)
        except Exception as error:  # a torn zip, a bad pickle: whatever torch says, on one line
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise Refused(f"{STATE_FILE} unreadable (torn): {first}") from None

    def resume(self, check: Callable[[dict], str | None] | None = None) -> tuple[Path, dict] | None:
        """The newest good checkpoint and its state, or None. `check(state)` returns why a state
        does not fit this run (or None). Each refused one is named on stderr and set aside."""
        refused_any = False
        local = set(self.steps())
        for step in sorted(local | set(self._remote_steps()), reverse=True):
            path = self.path(step)
            try:
                if step not in local:
                    self._pull(step)
                state = self.load(path)
                if check is not None and (problem := check(state)):
                    raise Refused(problem)
            except Refused as refused:
                refused_any = True
                if self.writer:
                    print(f"checkpoint {path} refused: {refused}; trying the one before", file=sys.stderr, flush=True)
                    self._set_aside(path)
                continue
            return path, state
        if refused_any and self.writer:
            print(f"no good checkpoint left in {self.directory}: starting from step 0", file=sys.stderr, flush=True)
        return None

    def _remote_steps(self) -> list[int]:
        if self.remote is None:
            return []
        try:
            return self.remote.steps()
        except TrainerError as error:
            _warn(f"cannot list the checkpoints in {self.remote.url} ({error}); resuming from the local ones only")
            return []

    def _pull(self, step: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.remote.pull(self.path(step))
        except (TrainerError, OSError) as error:
            raise Refused(f"cannot copy it from {self.remote.url}: {error}") from None
        print(f"copied checkpoint step {step} from {self.remote.url}", file=sys.stderr, flush=True)

    def _set_aside(self, path: Path) -> None:
        target = path.with_name(f"refused-{path.name}")
        suffix = 1
        while target.exists():
            target, suffix = path.with_name(f"refused-{path.name}.{suffix}"), suffix + 1
        try:
            path.rename(target)
        except OSError:  # gone already, or a read-only volume: it is not used either way
            pass

    def save_best(self, weights: dict) -> None:
        """The best evaluation's weights, beside the checkpoints (atomically, like them), so
        that a resumed run can still end with them."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".tmp-{BEST_FILE}-{os.getpid()}"
        try:
            _save_synced(weights, temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        os.replace(temporary, self.directory / BEST_FILE)
        self._copy(f"{BEST_FILE} is not copied to", lambda: self.remote.push_file(self.directory / BEST_FILE))

    def forget_best(self) -> None:
        (self.directory / BEST_FILE).unlink(missing_ok=True)
        self._copy(f"{BEST_FILE} is not deleted from", lambda: self.remote.drop_file(BEST_FILE))

    def load_best(self) -> dict | None:
        path = self.directory / BEST_FILE
        if not path.exists() and self.remote is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.remote.pull_file(path)
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def _prune(self) -> None:
        for step in self.steps()[: -self.keep]:
            shutil.rmtree(self.path(step), ignore_errors=True)
        for leftover in self.directory.glob(".tmp-*"):
            if not leftover.name.endswith(f"-{os.getpid()}"):  # a killed writer's
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
