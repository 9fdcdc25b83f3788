"""Reading rows from a dataset source: jsonl, csv, parquet, txt files, hf:// sets, builtin sets.

I/O only; each row keeps where it came from so an error can name the file and the row. Files are
read as a stream (`iter_file_rows`), so a caller that keeps no rows needs no memory for them.
"""

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

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


@dataclass(frozen=True)
class DatasetFile:
    """One data file, not yet opened: its name (for errors), size, a stamp that changes when its
    content does (mtime here; an object store's ETag), and how to open it as a binary stream. A
    local path or an object in a bucket: the readers below see only the open file object."""

    name: str
    size: int
    version: str
    open: Callable[[], BinaryIO]


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
    rows, origins = [], []
    for file in dataset_files(source):
        for row, origin in iter_file_rows(file, text_field):
            rows.append(row)
            origins.append(origin)
    return Records(rows, origins)


def dataset_files(source: Source) -> list[DatasetFile]:
    """The files of a local or s3:// `source` (a file, or a folder's data files in name order), not opened."""
    if source.kind == "s3":
        from trainwright.trainer import storage

        return storage.dataset_files(source, SUFFIXES)
    path = source.path
    if not path.exists():
        where = f" ({path})" if source.text != str(path) else ""
        raise TrainerError(source.text, f"does not exist{where}")
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise TrainerError(source.text, f"directory has no {', '.join(SUFFIXES)} files")
    return [_local_file(file) for file in files]


def _local_file(path: Path) -> DatasetFile:
    try:
        stat = path.stat()
    except OSError as error:
        raise TrainerError(str(path), f"cannot read: {error.strerror or error}") from None
    return DatasetFile(str(path), stat.st_size, f"{stat.st_mtime_ns}", lambda: path.open("rb"))


def read_file(path: Path, text_field: str = "text") -> Records:
    rows, origins = [], []
    for row, origin in iter_file_rows(_local_file(path), text_field):
        rows.append(row)
        origins.append(origin)
    return Records(rows, origins)


def iter_file_rows(file: DatasetFile, text_field: str = "text") -> Iterator[tuple[dict, str]]:
    """The rows of one file and where each came from, read as they are needed (one line, or one
    parquet row group, at a time); missing, empty, unreadable or row-less files are errors."""
    kind = SUFFIXES.get(PurePosixPath(file.name).suffix)
    if kind is None:
        raise TrainerError(file.name, f"unknown file type {PurePosixPath(file.name).suffix!r}; use {', '.join(SUFFIXES)}")
    if file.size == 0:
        raise TrainerError(file.name, "is empty")
    count = 0
    try:
        with file.open() as handle:
            for row, origin in iter_rows(handle, file.name, kind, text_field):
                count += 1
                yield row, origin
    except OSError as error:
        raise TrainerError(file.name, f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise TrainerError(file.name, f"not UTF-8 text (byte {error.start})") from None
    if count == 0:
        raise TrainerError(file.name, "has no rows")


def iter_rows(handle: BinaryIO, name: str, kind: str, text_field: str = "text") -> Iterator[tuple[dict, str]]:
    """Rows of one open binary file object of `kind` (jsonl, csv, parquet, text), named `name` in
    errors. Any file object works (a local file, an object store's stream): parquet needs seeks."""
    if kind == "parquet":
        yield from _parquet_rows(handle, name)
        return
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="" if kind == "csv" else None)
    try:
        yield from {"jsonl": _jsonl_rows, "csv": _csv_rows, "text": _text_rows}[kind](text, name, text_field)
    finally:
        text.detach()  # the caller closes the handle


def _jsonl_rows(handle, name: str, text_field: str):
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise TrainerError(f"{name} line {number}", f"not valid JSON: {error.msg}") from None
        if not isinstance(row, dict):
            raise TrainerError(f"{name} line {number}", f"expected a JSON object, got {type(row).__name__}")
        yield row, f"{name} line {number}"


def _csv_rows(handle, name: str, text_field: str):
    for i, row in enumerate(csv.DictReader(handle)):
        yield dict(row), f"{name} line {i + 2}"


def _parquet_rows(handle, name: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(handle)
        number = 0
        for group in range(table.num_row_groups):
            for row in table.read_row_group(group).to_pylist():
                number += 1
                yield row, f"{name} row {number}"
    except (pa.ArrowException, ValueError) as error:
        raise TrainerError(name, f"cannot read parquet: {error}") from None


def _text_rows(handle, name: str, text_field: str):
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield {text_field: line.rstrip("\n")}, f"{name} line {number}"


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
