"""Where a model or dataset lives: `model.source` / `dataset.source` strings resolved to places.

Pure: mapping `pvc://CLAIM/PATH` to `$TRAINWRIGHT_PVC_ROOT/CLAIM/PATH` needs no file system.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trainwright.trainer.errors import TrainerError

SourceKind = Literal["hf", "local", "builtin", "s3"]


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    value: str  # hub id, local path, builtin name or s3:// URL
    text: str  # as the user wrote it, for messages
    field: str = "source"  # the spec field it came from, for messages

    @property
    def path(self) -> Path:
        return Path(self.value)


def resolve_source(text: str, pvc_root: str | Path, field: str = "source") -> Source:
    """The place `text` names; s3:// objects are read through trainer/storage.py."""
    if text.startswith("hf://"):
        return Source("hf", text.removeprefix("hf://"), text)
    if text.startswith("builtin:"):
        return Source("builtin", text.removeprefix("builtin:"), text)
    if text.startswith("pvc://"):
        claim_and_path = text.removeprefix("pvc://").strip("/")
        return Source("local", str(Path(pvc_root) / claim_and_path), text)
    if text.startswith("file://"):
        return Source("local", text.removeprefix("file://"), text)
    if text.startswith("s3://"):
        return Source("s3", text, text, field)
    return Source("local", text, text)
