"""From rows to batches: field and label checks, the validation split, tokenisation, padding.

The checks run before the first step, so bad data fails with the file, row and field named.
Order is deterministic: the split and each epoch's shuffle come from the seed alone.
"""

import random
from dataclasses import dataclass

import torch

from trainwright.trainer.errors import TrainerError
from trainwright.trainer.records import Records

IGNORE_INDEX = -100  # label value the loss skips (padding in causal-lm)


@dataclass(frozen=True)
class Labels:
    """Label ids per row and the names behind them (names are str(id) for integer labels)."""

    ids: list[int]
    names: list[str]


def check_texts(records: Records, field: str) -> list[str]:
    return [check_text(row, origin, field) for row, origin in zip(records.rows, records.origins)]


def check_text(row: dict, origin: str, field: str) -> str:
    """The row's text, or the error naming the row and the field."""
    if field not in row or row[field] is None:
        raise TrainerError(origin, f"missing text field {field!r} (spec.dataset.textField)")
    value = row[field]
    if not isinstance(value, str):
        raise TrainerError(origin, f"field {field!r} must be text, got {type(value).__name__}")
    if not value.strip():
        raise TrainerError(origin, f"field {field!r} is empty")
    return value


def _as_label(value, origin: str, field: str):
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise TrainerError(origin, f"label field {field!r} must be an integer or a string, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise TrainerError(origin, f"label field {field!r} must be an integer or a string, got {value!r}")
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)  # csv gives every cell as text
    return value


def check_labels(records: Records, field: str, num_labels: int | None) -> Labels:
    """Integer labels 0..n-1 or string labels (mapped to ids in sorted order); never a mix."""
    values, kind, first_origin = [], None, None
    for row, origin in zip(records.rows, records.origins):
        if field not in row:
            raise TrainerError(origin, f"missing label field {field!r} (spec.dataset.labelField)")
        value = _as_label(row[field], origin, field)
        this_kind = type(value)
        if kind is None:
            kind, first_origin = this_kind, origin
        elif this_kind is not kind:
            raise TrainerError(origin, f"label field {field!r} is {this_kind.__name__} here but "
                               f"{kind.__name__} at {first_origin}; use one type")
        if isinstance(value, int) and value < 0:
            raise TrainerError(origin, f"label {value} is negative")
        values.append(value)
    if kind is str:
        names = sorted(set(values))
        if num_labels is not None and len(names) > num_labels:
            raise TrainerError("spec.model.numLabels", f"{num_labels} but the data has {len(names)} labels: {', '.join(names)}")
        index = {name: i for i, name in enumerate(names)}
        return Labels([index[v] for v in values], names)
    count = num_labels or max(values) + 1
    for value, origin in zip(values, records.origins):
        if value >= count:
            raise TrainerError(origin, f"label {value} is out of range for spec.model.numLabels {count}")
    if count < 2:
        raise TrainerError(records.origins[0], f"label field {field!r}: classification needs at least 2 labels")
    return Labels(values, [str(i) for i in range(count)])


def split_indices(count: int, validation_split: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and validation row indices: a seeded shuffle, the last share held out."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    held_out = int(round(count * validation_split)) if validation_split > 0 else 0
    if validation_split > 0 and count > 1:
        held_out = min(max(held_out, 1), count - 1)
    return order[: count - held_out], order[count - held_out:]


def pack_blocks(sequences: list[list[int]], block: int, separator: int | None) -> list[list[int]]:
    """Causal-lm: documents joined (with `separator` between) and cut into blocks of `block` tokens."""
    stream: list[int] = []
    for sequence in sequences:
        stream.extend(sequence)
        if separator is not None:
            stream.append(separator)
    blocks = [stream[i:i + block] for i in range(0, len(stream) - block + 1, block)]
    return blocks or ([stream] if len(stream) > 1 else [])


class TokenizedSet:
    """Token id sequences (and labels), padded per batch to the longest sequence in it."""

    def __init__(self, sequences: list[list[int]], labels: list[int] | None, pad_id: int, task: str):
        self.sequences = [torch.tensor(s, dtype=torch.long) for s in sequences]
        self.labels = torch.tensor(labels, dtype=torch.long) if labels is not None else None
        self.pad_id = pad_id
        self.task = task

    def __len__(self) -> int:
        return len(self.sequences)

    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    def tokens_in(self, indices) -> int:
        return sum(len(self.sequences[i]) for i in indices)

    def same_length(self, indices) -> bool:
        """Whether the batch of `indices` needs no padding (known on the host)."""
        return len({len(self.sequences[i]) for i in indices}) == 1

    def collate(self, indices, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        chosen = [self.sequences[i] for i in indices]
        input_ids = torch.nn.utils.rnn.pad_sequence(chosen, batch_first=True, padding_value=self.pad_id)
        lengths = torch.tensor([len(s) for s in chosen])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        if self.task == "causal-lm":
            labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        else:
            labels = self.labels[torch.as_tensor(indices)]
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if device is not None and device.type == "cuda":
            batch = {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
        return batch


def epoch_order(count: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This worker's rows for `epoch`: a seeded permutation, dealt out round-robin, equal shares."""
    return epoch_order_tensor(count, seed, epoch, rank, world).tolist()


def epoch_order_tensor(count: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """`epoch_order` as an int64 tensor: 8 bytes a row instead of a Python int's ~36, which
    matters for the millions of blocks of a streamed corpus."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(count, generator=generator)
    share = count // world
    return order[rank::world][:share].clone()


# Sources up to this size train from memory; larger ones stream from token shards. In memory a
# token costs ~100 bytes at peak (Python ints in lists, then tensors), so 8 MB of text (~2M
# tokens) peaks near 200 MB, small beside torch itself, and skips writing and hashing a cache;
# above it that cost grows with the corpus while the stream's stays flat. Measured in
# bench/data_stream.py (the same steps/s either way; docs/trainer.md, Data at scale).
IN_MEMORY_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class DataChoice:
    streaming: bool
    why: str


def choose_data_path(task: str, source_kind: str, source_bytes: int | None, limit: int | None = None) -> DataChoice:
    """In memory or streamed from token shards, and why (the trainer logs it)."""
    limit = IN_MEMORY_MAX_BYTES if limit is None else limit
    if task != "causal-lm":
        return DataChoice(False, "classification keeps rows and labels in memory")
    if source_kind in ("builtin", "hf") or source_bytes is None:
        return DataChoice(False, f"{source_kind} datasets are read whole")
    if source_bytes <= limit:
        return DataChoice(False, f"{source_bytes:,} bytes <= {limit:,}")
    return DataChoice(True, f"{source_bytes:,} bytes > {limit:,}")
