"""Reading rows from a dataset source: jsonl, csv, parquet, txt files, hf:// sets, builtin sets.

I/O only; each row keeps where it came from so an error can name the file and the row.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from trainwright.trainer import demo
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.sources import Source

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


@dataclass
class Records:
    rows: list[dict]
    origins: list[str]  # "file.jsonl line 7", one per row

    def __len__(self) -> int:
        return len(self.rows)


def read_records(source: Source, text_field: str = "text", samples: int | None = None) -> Records:
    """All rows of `source`; a clear TrainerError for missing, empty or unreadable input."""
    if source.kind == "builtin":
        if source.value not in demo.builtin_dataset_names():
            raise TrainerError("spec.dataset.source", f"{source.text}: unknown built-in dataset; one of "
                               + ", ".join(f"builtin:{n}" for n in demo.builtin_dataset_names()))
        rows = demo.builtin_records(source.value, samples)
        return Records(rows, [f"{source.text} row {i + 1}" for i in range(len(rows))])
    if source.kind == "hf":
        return _read_hub(source)
    path = source.path
    if not path.exists():
        where = f" ({path})" if source.text != str(path) else ""
        raise TrainerError(source.text, f"does not exist{where}")
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise TrainerError(source.text, f"directory has no {', '.join(SUFFIXES)} files")
    rows, origins = [], []
    for file in files:
        part = read_file(file, text_field)
        rows.extend(part.rows)
        origins.extend(part.origins)
    return Records(rows, origins)


def read_file(path: Path, text_field: str = "text") -> Records:
    kind = SUFFIXES.get(path.suffix)
    if kind is None:
        raise TrainerError(str(path), f"unknown file type {path.suffix!r}; use {', '.join(SUFFIXES)}")
    try:
        if path.stat().st_size == 0:
            raise TrainerError(str(path), "is empty")
        records = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet, "text": _read_text}[kind](path, text_field)
    except OSError as error:
        raise TrainerError(str(path), f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise TrainerError(str(path), f"not UTF-8 text (byte {error.start})") from None
    if not records.rows:
        raise TrainerError(str(path), "has no rows")
    return records


def _read_jsonl(path: Path, text_field: str) -> Records:
    rows, origins = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrainerError(f"{path} line {number}", f"not valid JSON: {error.msg}") from None
            if not isinstance(row, dict):
                raise TrainerError(f"{path} line {number}", f"expected a JSON object, got {type(row).__name__}")
            rows.append(row)
            origins.append(f"{path} line {number}")
    return Records(rows, origins)


def _read_csv(path: Path, text_field: str) -> Records:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [dict(row) for row in reader]
    return Records(rows, [f"{path} line {i + 2}" for i in range(len(rows))])


def _read_parquet(path: Path, text_field: str) -> Records:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, ValueError) as error:
        raise TrainerError(str(path), f"cannot read parquet: {error}") from None
    return Records(rows, [f"{path} row {i + 1}" for i in range(len(rows))])


def _read_text(path: Path, text_field: str) -> Records:
    rows, origins = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append({text_field: line.rstrip("\n")})
                origins.append(f"{path} line {number}")
    return Records(rows, origins)


def _read_hub(source: Source) -> Records:
    try:
        import datasets
    except ImportError:
        raise TrainerError(source.text, "hf:// datasets need the `datasets` package") from None
    try:
        table = datasets.load_dataset(source.value, split="train")
    except Exception as error:  # network, auth, missing set: all one message for the user
        raise TrainerError(source.text, f"cannot load from the Hugging Face hub: {error}") from None
    rows = table.to_list()
    return Records(rows, [f"{source.text} row {i + 1}" for i in range(len(rows))])
