"""Checkpoints copied to S3 (`spec.checkpoint.uri`) against a real S3-compatible server: a run
stopped on one machine resumes on another from the copy, to the same weights; a copy cut short
is never used; copies past `keep` are deleted; an unreachable store costs a warning, not the run."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from trainwright.api import parse_job
from trainer_helpers import TINY_CLASSIFIER, assert_same_weights, cpu_plan, make_job, settings_for
from trainer_helpers import saved_weights as weights
from trainwright.trainer.checkpoint import META_FILE, STATE_FILE, Checkpointer
from trainwright.trainer.remote_checkpoints import RemoteCheckpoints
from trainwright.trainer.runner import run_job
from trainwright.trainer.sources import Source
from trainwright.trainer.storage import Bucket

FIELD = "spec.checkpoint.uri"


def job_with_uri(uri: str):
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:topics", "samples": 3000}, {"epochs": 3, "learningRate": 3e-3, "batchSize": 8},
                   {"everySteps": 25, "keep": 2}, name="remote")
    document = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["checkpoint"]["uri"] = uri
    document["spec"]["objectStorage"] = {"secret": "s3-creds"}
    return parse_job(document)


def remote(s3_server, url: str) -> RemoteCheckpoints:
    return RemoteCheckpoints(Bucket(Source("s3", url, url, FIELD), env=s3_server.env()))


@pytest.fixture(scope="module")
def bucket(s3_server):
    return s3_server.create_bucket("checkpoints")


def test_a_run_stopped_on_one_machine_resumes_on_another_from_the_s3_copy(bucket, s3_server, s3_env, tmp_path):
    reference = tmp_path / "reference"
    run_job(settings_for(job_with_uri(f"s3://{bucket}/reference"), reference))
    job = job_with_uri(f"s3://{bucket}/moved")
    document = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["status"] = {"plan": cpu_plan("scratch").to_wire()}
    (tmp_path / "job.json").write_text(json.dumps(document))

    def entrypoint(output):
        env = {**os.environ, "TRAINWRIGHT_JOB_FILE": str(tmp_path / "job.json"), "TRAINWRIGHT_OUTPUT_DIR": str(output),
               "TRAINWRIGHT_REPORTERS": "jsonl", "OMP_NUM_THREADS": "1"}
        return subprocess.Popen([sys.executable, "-m", "trainwright.trainer"], env=env, stderr=subprocess.PIPE, text=True)

    first = entrypoint(tmp_path / "first-machine")
    copies = remote(s3_server, f"s3://{bucket}/moved")
    while not copies.steps():
        assert first.poll() is None, first.stderr.read()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 143, first.stderr.read()
    stopped_at = max(copies.steps())

    second = entrypoint(tmp_path / "second-machine")  # nothing on its disk: only the S3 copies
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert f"copied checkpoint step {stopped_at} from s3://{bucket}/moved" in stderr
    assert f"at step {stopped_at} of " in stderr and s3_server.secret_key not in stderr
    assert_same_weights(weights(tmp_path / "second-machine"), weights(reference))


def test_a_copy_without_its_meta_or_with_a_short_state_is_never_used(bucket, s3_server, tmp_path):
    copies = remote(s3_server, f"s3://{bucket}/torn")
    Checkpointer(tmp_path / "a", keep=5, remote=copies).save(5, {"step": 5})
    written = Checkpointer(tmp_path / "a", keep=5, remote=copies).save(9, {"step": 9, "big": torch.zeros(1000)})
    s3_server.put(bucket, "torn/step-000000012/state.pt", (written / STATE_FILE).read_bytes())  # no meta.json: cut short
    s3_server.put(bucket, "torn/step-000000009/state.pt", (written / STATE_FILE).read_bytes()[:100])  # short
    assert copies.steps() == [5, 9]

    path, state = Checkpointer(tmp_path / "b", keep=5, remote=copies).resume()
    assert path.name == "step-000000005" and state == {"step": 5}
    assert (tmp_path / "b" / "refused-step-000000009").is_dir()


def test_copies_past_keep_are_deleted_with_the_local_ones(bucket, s3_server, tmp_path):
    copies = remote(s3_server, f"s3://{bucket}/kept")
    checkpointer = Checkpointer(tmp_path, keep=2, remote=copies)
    for step in (1, 2, 3, 4):
        checkpointer.save(step, {"step": step})
    assert copies.steps() == [3, 4] and checkpointer.steps() == [3, 4]
    assert {i.key for i in copies.bucket.folder("kept")} == {
        f"kept/step-00000000{s}/{f}" for s in (3, 4) for f in (STATE_FILE, META_FILE)}


def test_an_unreachable_store_keeps_the_local_checkpoint_and_warns_without_the_secret(bucket, s3_server, tmp_path, capsys):
    wrong = RemoteCheckpoints(Bucket(Source("s3", f"s3://{bucket}/x", f"s3://{bucket}/x", FIELD),
                                     env=s3_server.env(secret_key="wrong-" + "s" * 20)))
    path = Checkpointer(tmp_path, keep=2, remote=wrong).save(3, {"step": 3})
    assert (path / META_FILE).exists()
    err = capsys.readouterr().err
    assert f"checkpoint step-000000003 is not copied to s3://{bucket}/x ({FIELD}: " in err and "access denied" in err
    assert "wrong-" not in err and s3_server.secret_key not in err
