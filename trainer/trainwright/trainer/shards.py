"""Token shards: a tokenised corpus as flat binary files of token ids, read back memory-mapped.

nanoGPT's format: each shard is the raw uint16 (vocabularies up to 65,536) or uint32 ids of
documents joined by the EOS token, no header; `index.json` beside them lists each shard's token
count. Shards hold a whole number of blocks (but the last), so a causal-lm block is one slice of
one memory map: reading a batch copies only its own tokens, and the page cache, not the process,
holds the corpus. A shard whose size is not the index's count is torn (`check_shards`).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

INDEX_FILE = "index.json"
FORMAT = 1
# Tokens per shard, rounded down to whole blocks: 8M ids is 16 MB of uint16, the writer's buffer
# (its memory does not grow with the corpus) and a file size every volume handles well.
SHARD_TOKENS = 8 * 1024 * 1024


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends token ids to `prefix-NNNNN.bin` files in `directory`; `close` returns their list."""

    def __init__(self, directory: Path, prefix: str, dtype: np.dtype, block: int):
        self.directory, self.prefix, self.dtype = Path(directory), prefix, np.dtype(dtype)
        self.capacity = max(block, SHARD_TOKENS // block * block)
        self.buffer = np.empty(self.capacity, dtype=self.dtype)
        self.filled = 0
        self.shards: list[dict] = []

    def add(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=self.dtype)
        while len(ids):
            take = min(len(ids), self.capacity - self.filled)
            self.buffer[self.filled:self.filled + take] = ids[:take]
            self.filled += take
            ids = ids[take:]
            if self.filled == self.capacity:
                self._flush()

    def _flush(self) -> None:
        if not self.filled:
            return
        name = f"{self.prefix}-{len(self.shards):05d}.bin"
        with open(self.directory / name, "wb") as handle:
            handle.write(memoryview(self.buffer[:self.filled]))
            handle.flush()
            os.fsync(handle.fileno())
        self.shards.append({"file": name, "tokens": self.filled})
        self.filled = 0

    def close(self) -> list[dict]:
        self._flush()
        self.buffer = np.empty(0, dtype=self.dtype)
        return self.shards


def write_index(directory: Path, index: dict) -> None:
    """The index last, flushed: a cache folder without it was never finished."""
    path = Path(directory) / INDEX_FILE
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"format": FORMAT, **index}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def read_index(directory: Path) -> dict:
    """The folder's index; ValueError when it is missing, unreadable or of another format."""
    try:
        index = json.loads((Path(directory) / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"no readable {INDEX_FILE} ({error})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{INDEX_FILE} is of another format")
    return index


def check_shards(directory: Path, index: dict) -> str | None:
    """Why the shards in `directory` cannot be trusted (None when each has its listed size)."""
    itemsize = np.dtype(index["dtype"]).itemsize
    for split in ("train", "validation"):
        for shard in index[split]:
            path = Path(directory) / shard["file"]
            want = shard["tokens"] * itemsize
            try:
                size = path.stat().st_size
            except OSError:
                return f"{shard['file']} is missing"
            if size != want:
                return f"{shard['file']} has {size} bytes, {want} expected"
    return None


class BlockSet:
    """Causal-lm blocks of `block` tokens read from memory-mapped shards: the same interface as
    `data.TokenizedSet` (len, collate, tokens_in, same_length), so the loop and evaluation take
    either. A shard's last partial block is dropped (as `pack_blocks` drops the corpus's)."""

    task = "causal-lm"

    def __init__(self, directory: Path, shards: list[dict], dtype: str, block: int, pad_id: int):
        self.block, self.pad_id = block, pad_id
        self.maps = [np.memmap(Path(directory) / s["file"], dtype=np.dtype(dtype), mode="r", shape=(s["tokens"],))
                     for s in shards if s["tokens"] >= block]
        counts = [len(m) // block for m in self.maps]
        self.starts = np.cumsum([0] + counts)  # the first block of each shard

    def __len__(self) -> int:
        return int(self.starts[-1])

    def tokens(self) -> int:
        return len(self) * self.block

    def tokens_in(self, indices) -> int:
        return len(indices) * self.block

    def same_length(self, indices) -> bool:
        return True

    def block_ids(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        offset = (index - int(self.starts[shard])) * self.block
        return self.maps[shard][offset:offset + self.block]

    def collate(self, indices, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        rows = np.stack([self.block_ids(int(i)) for i in indices]).astype(np.int64)
        input_ids = torch.from_numpy(rows)
        batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids.clone()}
        if device is not None and device.type == "cuda":
            batch = {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
        return batch


@dataclass(frozen=True)
class ShardSets:
    """A finished cache folder's train and validation blocks."""

    directory: Path
    train: BlockSet
    validation: BlockSet | None
    shards: int
    bytes: int


def open_shards(directory: Path, index: dict, block: int, pad_id: int) -> ShardSets:
    train = BlockSet(directory, index["train"], index["dtype"], block, pad_id)
    validation = BlockSet(directory, index["validation"], index["dtype"], block, pad_id) if index["validation"] else None
    listed = index["train"] + index["validation"]
    size = sum(s["tokens"] for s in listed) * np.dtype(index["dtype"]).itemsize
    return ShardSets(Path(directory), train, validation if validation is not None and len(validation) else None,
                     len(listed), size)
