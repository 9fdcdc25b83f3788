"""The streaming data path: token cache, memory-mapped blocks, order, resume, the automatic choice.

Corpora are generated here (a tiny word language a GPT learns within a few hundred steps); the
threshold between the paths is lowered so that they stream at a few hundred kB.
"""

import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from trainer_helpers import TINY_GPT, make_job, settings_for
from trainwright.api import pod_contract as pod
from trainwright.trainer import data
from trainwright.trainer.checkpoint import PROGRESS_KEY, Checkpointer
from trainwright.trainer.data import choose_data_path, epoch_order_tensor
from trainwright.trainer.loop import train
from trainwright.trainer.records import DatasetFile, iter_rows
from trainwright.trainer.runner import prepare, run_job
from trainwright.trainer.settings import job_fingerprint
from trainwright.trainer.shards import BlockSet
from trainwright.trainer.token_cache import TokenSettings, cache_key, open_or_build

SUBJECTS = ["the cat", "a dog", "my bird", "the fish", "our cow"]
VERBS = ["eats", "sees", "likes", "wants"]
OBJECTS = ["red apples", "green grass", "small stones", "blue water", "warm bread"]


def corpus_lines(count: int, seed: int = 0) -> list[str]:
    """Sentences of a small grammar: predictable enough that the loss falls fast."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} and {rng.choice(SUBJECTS)} "
            f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}" for _ in range(count)]


def write_corpus(path, count: int = 4000) -> None:
    path.write_text("".join(json.dumps({"text": line}) + "\n" for line in corpus_lines(count)))


@pytest.fixture
def streaming(monkeypatch, tmp_path):
    """Every local causal-lm corpus streams; the cache lives in this test's folder."""
    monkeypatch.setattr(data, "IN_MEMORY_MAX_BYTES", 1000)
    monkeypatch.setenv(pod.TOKEN_CACHE_ENV, str(tmp_path / "token-cache"))
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus)
    return corpus


def gpt_job(corpus, **training):
    return make_job("scratch", {"task": "causal-lm", "architecture": TINY_GPT}, {"source": str(corpus), "validationSplit": 0.1},
                    {"epochs": 2, "batchSize": 8, "maxSeqLength": 32, "learningRate": 3e-3, **training})


def token_settings(max_length: int = 32) -> TokenSettings:
    return TokenSettings(task="causal-lm", text_field="text", max_length=max_length, validation_split=0.1, seed=0)


def test_a_second_run_reads_the_cache_and_tokenises_nothing(streaming, tmp_path, capsys):
    job = gpt_job(streaming)
    run_job(settings_for(job, tmp_path / "runs" / "first"))
    first = capsys.readouterr().err
    run_job(settings_for(job, tmp_path / "runs" / "second"))
    second = capsys.readouterr().err
    assert "data: streaming from" in first and "tokenised 4,000 documents" in first
    assert "data: streaming from" in second and "found in the cache, nothing tokenised" in second
    assert "tokenised 4,000" not in second
    assert len([p for p in (tmp_path / "token-cache").iterdir() if p.is_dir()]) == 1


def test_a_run_from_the_stream_learns_and_reports_its_data_wait(streaming, tmp_path):
    outcome = run_job(settings_for(gpt_job(streaming, epochs=3), tmp_path / "run"))
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["event"] == "step"]
    assert steps[-1]["loss"] < 0.5 * steps[0]["loss"], (steps[0]["loss"], steps[-1]["loss"])
    assert outcome.result.metrics["val_loss"] < 2.0
    waits = [s["metrics"]["data_wait_seconds"] for s in steps if "data_wait_seconds" in (s.get("metrics") or {})]
    assert waits and all(0 < w < 1 for w in waits)
    shares = [s["metrics"]["data_wait_share"] for s in steps if "data_wait_share" in (s.get("metrics") or {})]
    assert len(shares) == len(waits) and all(0 < share < 1 for share in shares)


def test_the_cache_key_changes_with_the_tokenizer_and_the_max_length(tmp_path):
    files = [DatasetFile("corpus.jsonl", 1234, "1700000000", lambda: io.BytesIO())]
    key = cache_key(files, '{"vocab": {"a": 0}}', token_settings())
    assert key == cache_key(files, '{"vocab": {"a": 0}}', token_settings())
    assert key != cache_key(files, '{"vocab": {"b": 0}}', token_settings())
    assert key != cache_key(files, '{"vocab": {"a": 0}}', token_settings(max_length=64))
    touched = [DatasetFile("corpus.jsonl", 1234, "1700000001", lambda: io.BytesIO())]
    assert key != cache_key(touched, '{"vocab": {"a": 0}}', token_settings())


def _tokenizer(vocab: int = 128):
    from trainwright.trainer.tokenization import train_tokenizer

    return train_tokenizer(corpus_lines(500), vocab, "gpt")


def _local(path) -> DatasetFile:
    stat = path.stat()
    return DatasetFile(str(path), stat.st_size, str(stat.st_mtime_ns), lambda: path.open("rb"))


def test_a_torn_cache_is_rebuilt_not_trusted(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus)
    tokenizer = _tokenizer()
    first = open_or_build(tmp_path / "cache", [_local(corpus)], tokenizer, token_settings())
    assert first.built and first.torn is None
    blocks = first.sets.train.collate(range(len(first.sets.train)))["input_ids"]
    shard = next((first.sets.directory).glob("train-*.bin"))
    shard.write_bytes(shard.read_bytes()[:1000])  # a write cut short
    second = open_or_build(tmp_path / "cache", [_local(corpus)], tokenizer, token_settings())
    assert second.built and f"{shard.name} has 1000 bytes" in second.torn
    assert torch.equal(second.sets.train.collate(range(len(second.sets.train)))["input_ids"], blocks)
    third = open_or_build(tmp_path / "cache", [_local(corpus)], tokenizer, token_settings())
    assert not third.built


def test_another_tokenizer_or_max_length_tokenises_again(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus)
    files = [_local(corpus)]
    assert open_or_build(tmp_path / "cache", files, _tokenizer(128), token_settings()).built
    assert not open_or_build(tmp_path / "cache", files, _tokenizer(128), token_settings()).built
    assert open_or_build(tmp_path / "cache", files, _tokenizer(48), token_settings()).built  # fewer merges: other ids
    longer = open_or_build(tmp_path / "cache", files, _tokenizer(128), token_settings(max_length=48))
    assert longer.built and longer.sets.train.collate([0])["input_ids"].shape == (1, 48)
    assert len({p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()}) == 3


def test_blocks_hold_the_documents_joined_by_eos_as_in_memory(tmp_path):
    """The stream packs as `data.pack_blocks` does: the same blocks from the same documents."""
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, 300)
    tokenizer = _tokenizer()
    settings = TokenSettings(task="causal-lm", text_field="text", max_length=8, validation_split=0.0, seed=0)
    sets = open_or_build(tmp_path / "cache", [_local(corpus)], tokenizer, settings).sets
    sequences = tokenizer(corpus_lines(300), truncation=True, max_length=8)["input_ids"]
    assert max(len(s) for s in tokenizer(corpus_lines(300))["input_ids"]) > 8  # truncation is exercised
    expected = data.pack_blocks(sequences, 8, tokenizer.eos_token_id)
    assert sets.validation is None and len(sets.train) == len(expected)
    assert sets.train.collate(range(len(expected)))["input_ids"].tolist() == expected


def test_epoch_order_is_deterministic_and_the_ranks_split_it_without_overlap():
    assert torch.equal(epoch_order_tensor(1001, 7, 3), epoch_order_tensor(1001, 7, 3))
    assert not torch.equal(epoch_order_tensor(1001, 7, 3), epoch_order_tensor(1001, 7, 4))
    assert not torch.equal(epoch_order_tensor(1001, 7, 3), epoch_order_tensor(1001, 8, 3))
    parts = [set(epoch_order_tensor(1001, 7, 3, rank, 4).tolist()) for rank in range(4)]
    assert all(len(p) == 250 for p in parts)
    assert len(set.union(*parts)) == 1000  # disjoint; the one left over is the 1001st, dropped this epoch
    assert set.union(*parts) <= set(range(1001))


class RecordingBlocks(BlockSet):
    """The real memory-mapped blocks, noting each index the loop reads for training."""

    def __init__(self, blocks: BlockSet):
        self.__dict__.update(blocks.__dict__)
        self.seen: list[int] = []

    def collate(self, indices, device=None):
        self.seen.extend(int(i) for i in indices)
        return super().collate(indices, device)


def _stop_after(calls: int):
    count = 0

    def should_stop() -> bool:
        nonlocal count
        count += 1
        return count == calls

    return should_stop


def test_a_resumed_run_neither_repeats_nor_skips_a_sample(streaming, tmp_path):
    job = gpt_job(streaming, epochs=2, batchSize=4, gradientAccumulation=2)
    settings = settings_for(job, tmp_path / "run")
    device = torch.device("cpu")

    def trained(checkpoints, should_stop=lambda: False):
        prepared = prepare(settings, device)
        blocks = RecordingBlocks(prepared.train_set)
        checkpointer = Checkpointer(checkpoints, 2, fingerprint=job_fingerprint(settings)) if checkpoints else None
        result = train(prepared.built, blocks, None, prepared.config, device=device, checkpointer=checkpointer,
                       should_stop=should_stop)
        return blocks.seen, result

    whole, whole_result = trained(None)
    per_epoch = whole_result.total_steps // 2
    stop_at = per_epoch + per_epoch // 3  # in the middle of the second epoch
    before, stopped = trained(tmp_path / "checkpoints", _stop_after(stop_at))
    assert stopped.interrupted and stopped.step == stop_at
    saved = torch.load(stopped.checkpoint + "/state.pt", weights_only=False)[PROGRESS_KEY]
    assert (saved["epoch"], saved["position"]) == (1, (stop_at - per_epoch) * 4 * 2)
    after, resumed = trained(tmp_path / "checkpoints")
    assert resumed.step == whole_result.step and not resumed.interrupted
    assert before + after == whole
    assert len(whole) == whole_result.total_steps * 8


def test_the_choice_is_automatic_and_logged(tmp_path, capsys):
    assert not choose_data_path("causal-lm", "local", 100).streaming
    assert choose_data_path("causal-lm", "local", data.IN_MEMORY_MAX_BYTES + 1).streaming
    assert not choose_data_path("sequence-classification", "local", 10**12).streaming
    assert not choose_data_path("causal-lm", "builtin", None).streaming
    corpus = tmp_path / "small.jsonl"
    write_corpus(corpus, 400)
    prepared = prepare(settings_for(gpt_job(corpus), tmp_path / "run"), torch.device("cpu"))
    line = [l for l in capsys.readouterr().err.splitlines() if l.startswith("data:")]
    assert line == [f"data: in memory (400 rows, {sum(len(t) for t in corpus_lines(400)) / 1e3:.1f} kB of text; "
                    f"{corpus.stat().st_size:,} bytes <= {data.IN_MEMORY_MAX_BYTES:,})"]
    assert isinstance(prepared.train_set, data.TokenizedSet)


def test_the_cache_sits_beside_the_job_folders(monkeypatch, tmp_path):
    from trainwright.trainer.token_cache import cache_root

    assert cache_root({}, "/mnt/trainwright/job-a/checkpoints") == cache_root({}, "/mnt/trainwright/job-b/checkpoints")
    assert str(cache_root({}, "/mnt/trainwright/job-a/checkpoints")) == "/mnt/trainwright/.trainwright/token-cache"
    assert str(cache_root({pod.TOKEN_CACHE_ENV: "/data/tokens"}, "/x/y/z")) == "/data/tokens"


@pytest.mark.parametrize("kind", ["jsonl", "csv", "text", "parquet"])
def test_rows_stream_from_any_binary_file_object(kind):
    texts = ["one line", "two, with a comma", "three"]
    if kind == "parquet":
        buffer = io.BytesIO()
        pq.write_table(pa.table({"text": texts}), buffer, row_group_size=2)
        raw = buffer.getvalue()
    else:
        raw = {"jsonl": "".join(json.dumps({"text": t}) + "\n" for t in texts),
               "csv": "text\n" + "".join(f'"{t}"\n' for t in texts),
               "text": "".join(t + "\n" for t in texts)}[kind].encode()
    rows = list(iter_rows(io.BytesIO(raw), f"s3://bucket/data.{kind}", kind))
    assert [row["text"] for row, _ in rows] == texts
    assert rows[1][1].startswith(f"s3://bucket/data.{kind} ")


@pytest.mark.slow
def test_two_ray_workers_stream_their_own_halves_of_a_large_corpus_and_learn(monkeypatch, tmp_path):
    """Local Ray, 2 workers, a corpus above the real in-memory limit (Ray's worker processes do
    not see a lowered one): one worker builds the cache under its lock while the other waits,
    each reads its own half of every epoch, and the run learns."""
    monkeypatch.setenv(pod.TOKEN_CACHE_ENV, str(tmp_path / "token-cache"))
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, count=130_000)
    assert corpus.stat().st_size > data.IN_MEMORY_MAX_BYTES
    job = gpt_job(corpus, epochs=1, batchSize=256)
    outcome = run_job(settings_for(job, tmp_path / "run", workers=2))
    result = outcome.result
    [cache] = [p for p in (tmp_path / "token-cache").iterdir() if p.is_dir()]
    index = json.loads((cache / "index.json").read_text())
    train_blocks = sum(shard["tokens"] // 32 for shard in index["train"])  # blocks of maxSeqLength tokens
    # Each optimizer step reads 256 blocks on each worker: together, the epoch once over.
    assert result.step == result.total_steps == (train_blocks // 2) // 256
    assert result.samples == result.step * 2 * 256
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if s["event"] == "step" and s.get("loss") is not None]
    assert losses[-1] < 0.5 * losses[0], losses
