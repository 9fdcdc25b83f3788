"""Checkpoints: written to a temporary directory and renamed into place, so one either exists
whole or not at all; only the newest `keep` are kept. A run killed at any point resumes from
the newest complete one and loses only the steps since.
"""

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

PATTERN = re.compile(r"^step-(\d{9})$")
STATE_FILE = "state.pt"
BEST_FILE = "best-weights.pt"


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


def _save_synced(obj, path: Path) -> None:
    """torch.save, then flushed to the disk: the rename that follows must not expose a file
    whose bytes are still only in the page cache."""
    torch.save(obj, path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int):
        self.directory = Path(directory)
        self.keep = keep

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
        """Write `state` for `step` atomically, then drop all but the newest `keep`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(step)
        temporary = self.directory / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        _save_synced(state, temporary / STATE_FILE)
        if final.exists():  # the same step again after a resume: replace it
            stale = self.directory / f".old-{final.name}-{os.getpid()}"
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        temporary.rename(final)
        self._prune()
        return final

    def save_best(self, weights: dict) -> None:
        """The best evaluation's weights, beside the checkpoints (atomically, like them), so
        that a resumed run can still end with them."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".tmp-{BEST_FILE}-{os.getpid()}"
        _save_synced(weights, temporary)
        os.replace(temporary, self.directory / BEST_FILE)

    def load_best(self) -> dict | None:
        path = self.directory / BEST_FILE
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def load(self, path: Path) -> dict:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)

    def _prune(self) -> None:
        for step in self.steps()[: -self.keep]:
            shutil.rmtree(self.path(step), ignore_errors=True)
        for leftover in self.directory.glob(".tmp-*"):
            if not leftover.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(leftover, ignore_errors=True)
