"""s3:// sources against a real S3-compatible server (tests/s3kit.py): datasets stream, model
folders are copied once, and every failure is one line naming the spec field, never the secret."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from trainer_helpers import TINY_GPT, make_job
from trainwright.cli import main
from trainwright.trainer import demo, storage
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.models import TaskLabels, build_scratch, load_pretrained, scratch_tokenizer
from trainwright.trainer.records import read_records
from trainwright.trainer.sources import resolve_source
from trainwright.api.spec import ArchitectureSpec

DATASET = "spec.dataset.source"
MODEL = "spec.model.source"


def _rows(count: int, seed: int = 0) -> bytes:
    rows = demo.builtin_records("topics", count)
    return "".join(json.dumps({"text": row["text"]}) + "\n" for row in rows).encode()


@pytest.fixture(scope="module")
def bucket(s3_server):
    """A bucket holding one jsonl file, a folder of two, and a folder without data files."""
    name = s3_server.create_bucket("corpus")
    s3_server.put(name, "one.jsonl", _rows(40))
    s3_server.put(name, "parts/a.jsonl", _rows(10))
    s3_server.put(name, "parts/b.jsonl", _rows(20))
    s3_server.put(name, "parts/README", b"not data\n")
    s3_server.put(name, "notes/README", b"not data\n")
    return name


def source(text: str, field: str = DATASET):
    return resolve_source(text, ".", field)


def error_of(call, *args) -> str:
    with pytest.raises(TrainerError) as caught:
        call(*args)
    return str(caught.value)


def test_a_jsonl_object_reads_as_rows_named_by_their_url(bucket, s3_env):
    records = read_records(source(f"s3://{bucket}/one.jsonl"))
    assert len(records) == 40
    assert records.origins[0] == f"s3://{bucket}/one.jsonl line 1"
    assert records.rows[:3] == [json.loads(line) for line in _rows(40).decode().splitlines()[:3]]


def test_a_folder_reads_its_data_files_in_key_order(bucket, s3_env):
    records = read_records(source(f"s3://{bucket}/parts"))
    assert len(records) == 30
    assert records.origins[0].startswith(f"s3://{bucket}/parts/a.jsonl ")
    assert records.origins[-1].startswith(f"s3://{bucket}/parts/b.jsonl ")


STREAM_CHILD = """
import sys
from trainwright.trainer.records import dataset_files, iter_file_rows
from trainwright.trainer.sources import resolve_source

def kilobytes(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])

files = dataset_files(resolve_source(sys.argv[1], ".", "spec.dataset.source"))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before = kilobytes("VmRSS:")
rows = sum(1 for file in files for _ in iter_file_rows(file)) if sys.argv[2] == "stream" else len(files[0].open().read())
print(rows, (kilobytes("VmHWM:") - before) * 1024)
"""


def test_an_object_is_streamed_in_bounded_ranges_not_read_whole(s3_server, bucket, s3_env):
    line = (json.dumps({"text": "word " * 60}) + "\n").encode()
    count = 64 * 1024 * 1024 // len(line)
    url = s3_server.put(bucket, "big.jsonl", line * count)

    def peak_growth(how):
        done = subprocess.run([sys.executable, "-c", STREAM_CHILD, url, how], capture_output=True, text=True, check=True)
        return map(int, done.stdout.split())

    rows, streamed = peak_growth("stream")
    assert rows == count
    assert streamed < 6 * storage.READ_BUFFER
    length, whole = peak_growth("whole")  # the same measure sees a whole read: 64 MB and more
    assert length == len(line) * count and whole > 64 * 1024 * 1024


def test_a_stream_seeks_as_parquet_needs(s3_server, bucket, s3_env):
    data = bytes(range(256)) * (3 * storage.READ_BUFFER // 256 + 7)
    url = s3_server.put(bucket, "bytes.bin", data)
    with storage.open_source(source(url)) as handle:
        assert handle.read(10) == data[:10]
        handle.seek(-300, 2)
        assert handle.read() == data[-300:]
        handle.seek(storage.READ_BUFFER - 5)
        assert handle.read(10) == data[storage.READ_BUFFER - 5:storage.READ_BUFFER + 5]
        handle.seek(0)
        assert handle.read() == data


def test_a_wrong_secret_is_access_denied_naming_the_field_and_never_the_secret(s3_server, bucket, monkeypatch):
    wrong = "wrong-" + s3_server.secret_key[::-1]
    for key, value in s3_server.env(secret_key=wrong).items():
        monkeypatch.setenv(key, value)
    for field, text in ((DATASET, f"s3://{bucket}/one.jsonl"), (MODEL, f"s3://{bucket}/parts")):
        call = read_records if field == DATASET else (lambda s: load_pretrained(s, "causal-lm", TaskLabels()))
        message = error_of(call, source(text, field))
        assert message.startswith(f"{field}: {text}: access denied (SignatureDoesNotMatch)")
        assert "AWS_SECRET_ACCESS_KEY" in message and "spec.objectStorage.secret" in message
        assert wrong not in message and s3_server.secret_key not in message
        assert len(message.splitlines()) == 1


def test_a_wrong_key_id_is_access_denied(s3_server, bucket, monkeypatch):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDNOBODY")
    message = error_of(read_records, source(f"s3://{bucket}/one.jsonl"))
    assert message.startswith(f"{DATASET}: s3://{bucket}/one.jsonl: access denied (InvalidAccessKeyId)")
    assert s3_server.secret_key not in message


@pytest.mark.parametrize("field", [DATASET, MODEL])
def test_a_missing_bucket_is_named(bucket, s3_env, field):
    call = read_records if field == DATASET else (lambda s: load_pretrained(s, "causal-lm", TaskLabels()))
    message = error_of(call, source("s3://no-such-bucket/one.jsonl", field))
    assert message.startswith(f"{field}: s3://no-such-bucket/")
    assert "bucket 'no-such-bucket' does not exist" in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("field", [DATASET, MODEL])
def test_a_missing_object_is_named(bucket, s3_env, field):
    call = read_records if field == DATASET else (lambda s: load_pretrained(s, "causal-lm", TaskLabels()))
    message = error_of(call, source(f"s3://{bucket}/nothing-here.jsonl", field))
    assert message == f"{field}: s3://{bucket}/nothing-here.jsonl: no such object or folder in bucket '{bucket}'"


def test_a_folder_without_data_files_is_named(bucket, s3_env):
    message = error_of(read_records, source(f"s3://{bucket}/notes"))
    assert message.startswith(f"{DATASET}: s3://{bucket}/notes: folder has no .jsonl")


def test_missing_credentials_name_the_variables_and_the_secret_field(bucket, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    message = error_of(read_records, source(f"s3://{bucket}/one.jsonl"))
    assert message.startswith(f"{DATASET}: s3:// needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    assert "spec.objectStorage.secret" in message


def test_credentials_never_show_the_secret_in_their_repr(s3_server):
    credentials = storage.Credentials.from_env(s3_server.env(), DATASET)
    assert s3_server.secret_key not in repr(credentials) and s3_server.secret_key not in str(credentials)


@pytest.fixture(scope="module")
def s3_model(s3_server, bucket, tmp_path_factory):
    """A tiny GPT saved with save_pretrained and uploaded as a folder."""
    folder = tmp_path_factory.mktemp("gpt")
    arch = ArchitectureSpec(**TINY_GPT)
    tokenizer = scratch_tokenizer(arch, [row["text"] for row in demo.builtin_records("topics", 200)])
    torch.manual_seed(0)
    model = build_scratch(arch, "causal-lm", tokenizer, TaskLabels())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return s3_server.put_folder(bucket, "models/gpt", folder), model


def test_a_model_folder_is_copied_once_and_loads_as_saved(s3_model, s3_env, tmp_path, monkeypatch):
    url, saved = s3_model
    monkeypatch.setenv("TRAINWRIGHT_OBJECT_CACHE", str(tmp_path / "cache"))
    loaded = load_pretrained(source(url, MODEL), "causal-lm", TaskLabels()).model
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), loaded.state_dict().values()))
    copy = storage.local_copy(source(url, MODEL), tmp_path / "cache")
    stamps = {p: p.stat().st_mtime_ns for p in copy.iterdir()}
    assert (copy / "config.json").exists()
    storage.local_copy(source(url, MODEL), tmp_path / "cache")  # ETags unchanged: nothing downloaded
    assert {p: p.stat().st_mtime_ns for p in copy.iterdir()} == stamps


def test_a_cache_folder_that_cannot_be_written_is_one_line(s3_model, s3_env, tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder goes")
    message = error_of(storage.local_copy, source(s3_model[0], MODEL), tmp_path / "cache")
    assert message.startswith(f"{MODEL}: {s3_model[0]}: cannot copy to {tmp_path / 'cache'}: ")
    assert len(message.splitlines()) == 1


def _s3_job_manifest(tmp_path, dataset: str, model: dict, strategy: str, endpoint: str):
    job = make_job("scratch", {"task": "causal-lm", "architecture": TINY_GPT},
                   {"source": "builtin:topics"}, {"epochs": 1, "batchSize": 8}, name="s3")
    wire = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    wire["spec"].update(strategy=strategy, model=model, objectStorage={"secret": "s3-creds", "endpoint": endpoint})
    wire["spec"]["dataset"]["source"] = dataset
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(wire))
    return manifest


@pytest.mark.slow
def test_run_trains_from_an_s3_dataset_with_credentials_from_the_environment(s3_server, bucket, s3_env, tmp_path, capsys):
    manifest = _s3_job_manifest(tmp_path, f"s3://{bucket}/one.jsonl", {"task": "causal-lm", "architecture": TINY_GPT},
                                "scratch", s3_server.endpoint)
    assert main(["run", str(manifest), "--output", str(tmp_path / "out"), "--reporters", "jsonl"]) == 0
    out, err = capsys.readouterr()
    assert "done: " in out and (tmp_path / "out" / "model" / "model.safetensors").exists()
    assert s3_server.secret_key not in out + err
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and not [p for p in written if s3_server.secret_key.encode() in p.read_bytes()]


@pytest.mark.slow
def test_a_large_s3_corpus_streams_into_the_token_cache_once(s3_server, bucket, s3_env, tmp_path, monkeypatch, capsys):
    from trainwright.trainer import data

    monkeypatch.setattr(data, "IN_MEMORY_MAX_BYTES", 1000)  # every corpus counts as large
    monkeypatch.setenv("TRAINWRIGHT_TOKEN_CACHE", str(tmp_path / "token-cache"))
    manifest = _s3_job_manifest(tmp_path, f"s3://{bucket}/parts", {"task": "causal-lm", "architecture": TINY_GPT},
                                "scratch", s3_server.endpoint)
    for run in ("first", "second"):
        assert main(["run", str(manifest), "--output", str(tmp_path / run), "--reporters", "jsonl"]) == 0
    first, second = capsys.readouterr().err.split("data: streaming from")[1:]
    assert "tokenised 30 documents" in first  # both objects of the folder, read as streams
    assert "found in the cache, nothing tokenised" in second  # the ETags did not change


@pytest.mark.slow
def test_run_fine_tunes_an_s3_model_on_an_s3_dataset(s3_server, bucket, s3_model, s3_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRAINWRIGHT_OBJECT_CACHE", str(tmp_path / "cache"))
    manifest = _s3_job_manifest(tmp_path, f"s3://{bucket}/parts", {"task": "causal-lm", "source": s3_model[0]},
                                "fine-tune", s3_server.endpoint)
    assert main(["run", str(manifest), "--output", str(tmp_path / "out"), "--reporters", "jsonl"]) == 0
    out, err = capsys.readouterr()
    assert (tmp_path / "out" / "model" / "model.safetensors").exists()
    assert s3_server.secret_key not in out + err
