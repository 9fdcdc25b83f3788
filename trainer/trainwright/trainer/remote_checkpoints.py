"""Checkpoints copied to object storage (`spec.checkpoint.uri`, s3://): they outlive the pod, the
claim and the node, and a pod anywhere resumes from them.

The local checkpoint folder stays the working copy (checkpoint.py writes there, atomically, as
always); each checkpoint written is then copied to `URI/step-NNNNNNNNN/`, `state.pt` first and
`meta.json` last, so a copy cut short has no `meta.json` and is never used. A resume pulls, on
demand and newest first, the steps the local folder lacks; the checks on `meta.json` (its
`stateBytes`, the job fingerprint) then apply to the pulled copy as to any other. The best
evaluation's weights are copied the same way, so early stopping's `restoreBest` survives a move.
"""

import os
import shutil
from pathlib import Path

from trainwright.trainer.checkpoint import FILES, PATTERN
from trainwright.trainer.storage import Bucket


class RemoteCheckpoints:
    """The checkpoints under one s3:// prefix (a `Bucket` on `spec.checkpoint.uri`)."""

    def __init__(self, bucket: Bucket):
        self.bucket = bucket
        self.prefix = bucket.key

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket.name}/{self.prefix}".rstrip("/")

    def steps(self) -> list[int]:
        """The steps whose copy is whole (its last file, meta.json, is there), oldest first."""
        found = set()
        for info in self.bucket.folder(self.prefix):
            parts = info.key.removeprefix(self.prefix).strip("/").split("/")
            if len(parts) == 2 and parts[1] == FILES[-1] and (match := PATTERN.match(parts[0])):
                found.add(int(match.group(1)))
        return sorted(found)

    def push(self, folder: Path) -> None:
        """Copy the checkpoint ``folder``'s files in the order they were written (the last marks it whole)."""
        for name in FILES:
            self.bucket.upload(folder / name, self._key(folder.name, name))

    def pull(self, step_folder: Path) -> None:
        """Copy the remote step into ``step_folder``: into a temporary folder (checkpoint.py's
        prefix, so a killed pull is cleaned up like a killed write), then renamed. Another rank
        that pulled the same step first wins; this copy is dropped."""
        temporary = step_folder.with_name(f".tmp-pull-{step_folder.name}-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        try:
            for name in FILES:
                info = self.bucket.head(self._key(step_folder.name, name))
                if info is not None:  # a missing file is the torn copy checkpoint.py refuses
                    self.bucket.download(info, temporary / name)
            if not step_folder.exists():
                temporary.rename(step_folder)
        except OSError:
            if not step_folder.exists():
                raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    def drop(self, steps: list[int]) -> None:
        """Delete these steps' copies (meta.json first: a copy half deleted is a torn one)."""
        for step in steps:
            self.bucket.delete([self._key(f"step-{step:09d}", name) for name in reversed(FILES)])

    def push_file(self, path: Path) -> None:
        self.bucket.upload(path, self._key(path.name))

    def pull_file(self, path: Path) -> bool:
        """Copy the remote file of this name to ``path``; False when there is none."""
        info = self.bucket.head(self._key(path.name))
        if info is not None:
            self.bucket.download(info, path)
        return info is not None

    def drop_file(self, name: str) -> None:
        self.bucket.delete([self._key(name)])

