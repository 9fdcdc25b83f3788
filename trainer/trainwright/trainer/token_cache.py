"""The token cache: a corpus tokenised once into shards, found again by a key, shared by jobs.

The key hashes what decides the tokens: each data file's name, size and version stamp (mtime, or
an object's ETag), the tokenizer's serialized form (vocabulary, merges, special tokens), and the
settings that change them (task, text field, max length, validation split and seed). A restarted
pod or a second job with the same key reads the shards instead of tokenising again. A folder is
built under a temporary name and renamed when whole (with its index written last), behind a lock
file, so concurrent workers build it once; a folder whose shards do not match its index (a
cut-short write) is rebuilt, never trusted.
"""

import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainwright.api import pod_contract as pod
from trainwright.trainer.data import check_text
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.records import DatasetFile, iter_file_rows
from trainwright.trainer.shards import ShardSets, ShardWriter, check_shards, open_shards, read_index, token_dtype, write_index

KEY_FORMAT = 1
BATCH_ROWS = 1000  # texts per tokenizer call: the fast tokenizer's batch, the same as datasets.map's default
CACHE_FOLDER = Path(".trainwright") / "token-cache"


def cache_root(env: dict, checkpoint_dir: str) -> Path:
    """Where token caches live: TRAINWRIGHT_TOKEN_CACHE, else beside the job folders, two levels
    above the checkpoints: CLAIM/.trainwright/token-cache for a pod's claim (its checkpoints are
    CLAIM/JOB/checkpoints), RUNS/.trainwright/token-cache for `trainwright run` (RUNS/JOB/checkpoints),
    so every job on that claim, or under that runs folder, shares one cache."""
    if env.get(pod.TOKEN_CACHE_ENV):
        return Path(env[pod.TOKEN_CACHE_ENV])
    return Path(checkpoint_dir).absolute().parent.parent / CACHE_FOLDER


@dataclass(frozen=True)
class TokenSettings:
    """What, besides the files and the tokenizer, decides the cached tokens."""

    task: str
    text_field: str
    max_length: int
    validation_split: float
    seed: int


def cache_key(files: list[DatasetFile], tokenizer_json: str, settings: TokenSettings) -> str:
    document = {
        "format": KEY_FORMAT, "files": [[f.name, f.size, f.version] for f in files],
        "tokenizer": hashlib.sha256(tokenizer_json.encode()).hexdigest(), **settings.__dict__,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:24]


def tokenizer_identity(tokenizer) -> str:
    """The tokenizer's serialized form without its call-time state: a fast tokenizer records the
    last call's truncation and padding in it, which do not change the ids (max length is keyed
    apart)."""
    document = json.loads(tokenizer.backend_tokenizer.to_str())
    document.pop("truncation", None)
    document.pop("padding", None)
    return json.dumps(document, sort_keys=True)


def in_validation(document: int, seed: int, share: float) -> bool:
    """Whether document number `document` is held out: a seeded hash of its number (splitmix64),
    so the split needs neither the document count nor a list of indices."""
    if share <= 0:
        return False
    mask = (1 << 64) - 1
    z = (document * 0x9E3779B97F4A7C15 + (seed + 1) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return z / 2**64 < share


def iter_texts(files: list[DatasetFile], text_field: str) -> Iterator[str]:
    """Every row's checked text, streamed file by file."""
    for file in files:
        for row, origin in iter_file_rows(file, text_field):
            yield check_text(row, origin, text_field)


def training_texts(files: list[DatasetFile], text_field: str, validation_split: float, seed: int) -> Iterator[str]:
    """The texts the training split holds, streamed (a scratch tokenizer learns from their start)."""
    for number, text in enumerate(iter_texts(files, text_field)):
        if not in_validation(number, seed, validation_split):
            yield text


@dataclass(frozen=True)
class CacheResult:
    sets: ShardSets
    built: bool  # False: found whole in the cache, nothing tokenised
    documents: int | None = None  # when built
    seconds: float | None = None
    torn: str | None = None  # why an earlier folder of this key was thrown away


def open_or_build(root: Path, files: list[DatasetFile], tokenizer, settings: TokenSettings) -> CacheResult:
    """The cached shards of this corpus and tokenizer, tokenising first when there are none whole."""
    key = cache_key(files, tokenizer_identity(tokenizer), settings)
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f"{key}.lock", "a")
    except OSError as error:
        raise TrainerError(str(root), f"cannot write the token cache: {error.strerror or error} "
                           f"(set {pod.TOKEN_CACHE_ENV} to a writable folder)") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait, then find it whole
        folder, torn = root / key, None
        if folder.exists():
            try:
                index = read_index(folder)
                torn = check_shards(folder, index)
            except (ValueError, KeyError, TypeError) as error:
                torn = str(error)
            if torn is None:
                return CacheResult(open_shards(folder, index, settings.max_length, tokenizer.pad_token_id), built=False)
            _discard(folder)
        started = time.perf_counter()
        index, documents = _build(root, key, files, tokenizer, settings)
        return CacheResult(open_shards(folder, index, settings.max_length, tokenizer.pad_token_id), built=True,
                           documents=documents, seconds=time.perf_counter() - started, torn=torn)


def _discard(folder: Path) -> None:
    aside = folder.with_name(f"{folder.name}.torn-{socket.gethostname()}-{os.getpid()}")
    folder.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)


def _build(root: Path, key: str, files: list[DatasetFile], tokenizer, settings: TokenSettings) -> tuple[dict, int]:
    """Tokenise the corpus into a temporary folder, then rename it to `key`."""
    building = root / f"{key}.building-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        dtype = token_dtype(len(tokenizer))
        eos = tokenizer.eos_token_id
        encoder = _encoder(tokenizer, settings.max_length)
        writers = {split: ShardWriter(building, split, dtype, settings.max_length) for split in ("train", "validation")}
        documents = 0
        for split, texts in _batches(iter_texts(files, settings.text_field), settings):
            ids = [encoding.ids for encoding in encoder.encode_batch_fast(texts)]
            writers[split].add(_joined(ids, eos))
            documents += len(texts)
        index = {"key": key, "dtype": dtype.name, "documents": documents,
                 **{split: writer.close() for split, writer in writers.items()}}
        write_index(building, index)
        try:
            building.rename(root / key)
        except OSError:  # built meanwhile by a pod the lock did not reach (a volume without flock)
            if not (root / key / "index.json").exists():
                raise
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return index, documents


def _encoder(tokenizer, max_length: int):
    """The fast tokenizer's Rust core, truncating at `max_length`: the ids of
    `tokenizer(texts, truncation=True, max_length=...)` without building the attention masks,
    offsets and Python encodings that call adds (about a sixth of the time)."""
    from tokenizers import Tokenizer

    encoder = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    encoder.enable_truncation(max_length)
    encoder.no_padding()
    return encoder


def _batches(texts: Iterable[str], settings: TokenSettings) -> Iterator[tuple[str, list[str]]]:
    """Texts in batches of BATCH_ROWS, each batch of one split, in corpus order within a split."""
    pending: dict[str, list[str]] = {"train": [], "validation": []}
    for number, text in enumerate(texts):
        split = "validation" if in_validation(number, settings.seed, settings.validation_split) else "train"
        pending[split].append(text)
        if len(pending[split]) == BATCH_ROWS:
            yield split, pending[split]
            pending[split] = []
    for split, rest in pending.items():
        if rest:
            yield split, rest


def _joined(sequences: list[list[int]], separator: int | None) -> np.ndarray:
    """Documents end to end, each followed by `separator` (as `data.pack_blocks` joins them)."""
    flat: list[int] = []
    for sequence in sequences:
        flat.extend(sequence)
        if separator is not None:
            flat.append(separator)
    return np.asarray(flat, dtype=np.int64)
