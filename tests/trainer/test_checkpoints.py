"""Checkpoints that must not be resumed from: torn ones, another job's, another model's; and a full
disk while writing, which must leave the previous checkpoint as it was."""

import dataclasses
import errno
import shutil
import subprocess
import uuid

import pytest
import torch

from trainer_helpers import TINY_CLASSIFIER, assert_same_weights, make_job, settings_for
from trainer_helpers import saved_weights as weights
from trainwright.trainer import checkpoint as checkpoint_module
from trainwright.trainer.checkpoint import META_FILE, PROGRESS_KEY, RNG_KEY, STATE_FILE, Checkpointer
from trainwright.trainer.runner import run_job
from trainwright.trainer.settings import job_fingerprint

# 480 training rows, batch 8: 60 steps an epoch, 120 in all; a checkpoint every 5 steps, the newest 3 kept
JOB = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
               {"source": "builtin:topics", "samples": 600}, {"epochs": 2, "learningRate": 3e-3, "batchSize": 8},
               {"everySteps": 5, "keep": 3}, name="ckpt")
OTHER_JOB = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                     {"source": "builtin:topics", "samples": 700}, {"epochs": 2, "learningRate": 3e-3, "batchSize": 8},
                     {"everySteps": 5, "keep": 3}, name="ckpt")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted run of JOB: its output directory (checkpoints at steps 110, 115, 120)."""
    output = tmp_path_factory.mktemp("ckpt-reference")
    assert run_job(settings_for(JOB, output)).result.step == 120
    return output


def copy_of(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "model")
    return copy


def test_a_torn_checkpoint_is_refused_with_one_line_and_the_one_before_resumes_to_the_same_weights(
        finished, tmp_path, capfd):
    output = copy_of(finished, tmp_path)
    newest = output / "checkpoints" / "step-000000120"
    state = newest / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # torn: half of it reached the disk
    capfd.readouterr()
    run_job(settings_for(JOB, output))
    err = capfd.readouterr().err
    assert f"checkpoint {newest} refused: torn: {STATE_FILE} has " in err
    assert f"resumed from {output / 'checkpoints' / 'step-000000115'} at step 115 of 120" in err
    assert (output / "checkpoints" / "refused-step-000000120").is_dir()
    assert_same_weights(weights(output), weights(finished))


def test_an_unreadable_state_of_the_right_size_is_refused_too(finished, tmp_path, capfd):
    output = copy_of(finished, tmp_path)
    state = output / "checkpoints" / "step-000000120" / STATE_FILE
    state.write_bytes(b"\0" * state.stat().st_size)  # the size the metadata says, but no zip archive
    capfd.readouterr()
    run_job(settings_for(JOB, output))
    err = capfd.readouterr().err
    assert f"step-000000120 refused: {STATE_FILE} unreadable (torn): " in err
    assert_same_weights(weights(output), weights(finished))


def test_another_jobs_checkpoint_is_refused_and_this_jobs_newest_is_used(finished, tmp_path, capfd):
    other = tmp_path / "other"
    run_job(settings_for(OTHER_JOB, other))  # 140 steps: its checkpoints are newer than ours
    output = copy_of(finished, tmp_path)
    shutil.copytree(other / "checkpoints" / "step-000000140", output / "checkpoints" / "step-000000140")
    capfd.readouterr()
    outcome = run_job(settings_for(JOB, output))
    err = capfd.readouterr().err
    assert (f"checkpoint {output / 'checkpoints' / 'step-000000140'} refused: written by another job: "
            "its spec.dataset differ from this job's; trying the one before") in err
    assert f"resumed from {output / 'checkpoints' / 'step-000000120'} at step 120 of 120" in err
    assert outcome.result.step == 120
    assert_same_weights(weights(output), weights(finished))


def test_a_checkpoint_of_another_model_is_refused_by_its_shapes(tmp_path, capfd):
    from trainwright.trainer.data import TokenizedSet
    from trainwright.trainer.loop import LoopConfig, train
    from trainwright.trainer.models import BuiltModel
    from transformers import BertConfig, BertForSequenceClassification

    generator = torch.Generator().manual_seed(0)
    sequences = torch.randint(5, 64, (64, 12), generator=generator).tolist()
    data = TokenizedSet(sequences, [s[0] % 2 for s in sequences], pad_id=0, task="sequence-classification")
    config = LoopConfig(task="sequence-classification", epochs=1, batch_size=16, lr=1e-3)

    def classifier(hidden):
        return BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=hidden, num_hidden_layers=1,
                                                        num_attention_heads=2, intermediate_size=2 * hidden,
                                                        max_position_embeddings=32, num_labels=2))

    checkpoints = tmp_path / "checkpoints"  # no fingerprint: only the shapes can tell
    train(BuiltModel(classifier(32), None, 32), data, None, config, device=torch.device("cpu"),
          checkpointer=Checkpointer(checkpoints, 2))
    capfd.readouterr()
    result = train(BuiltModel(classifier(16), None, 32), data, None, config, device=torch.device("cpu"),
                   checkpointer=Checkpointer(checkpoints, 2))
    err = capfd.readouterr().err
    assert "step-000000004 refused: holds another model: bert.embeddings.word_embeddings.weight is (64, 32) there, (64, 16) here" in err
    assert f"no good checkpoint left in {checkpoints}: starting from step 0" in err
    assert result.step == 4 and Checkpointer(checkpoints, 2).steps() == [4]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size (root only), unmounted after the test."""
    mounted = []

    def mount(size_bytes: int):
        where = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); "
                        "test_a_failed_write_leaves_the_previous_checkpoint covers the same with a simulated ENOSPC")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_leaves_the_previous_checkpoint_whole_and_resumable(small_disk):
    state = {"weights": torch.arange(100_000, dtype=torch.float32)}  # 400 kB
    disk = small_disk(600 * 1024)  # room for one checkpoint, not two
    checkpoints = Checkpointer(disk, keep=2, fingerprint={"model": "m"})
    checkpoints.save(1, state)
    with pytest.raises(OSError) as raised:
        checkpoints.save(2, {"weights": state["weights"] + 1})
    assert raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in disk.iterdir()) == ["step-000000001"]  # no half-written step 2 left
    path, loaded = checkpoints.resume()
    assert path.name == "step-000000001" and torch.equal(loaded["weights"], state["weights"])
    assert shutil.disk_usage(disk).free > 150 * 1024  # the failed write's space is free again


def test_a_run_on_a_full_disk_trains_on_and_keeps_its_last_good_checkpoint(finished, small_disk, tmp_path, capfd):
    one = finished / "checkpoints" / "step-000000120"
    size = sum(f.stat().st_size for f in one.iterdir())
    disk = small_disk(int(size * 1.5))  # keep 1: the second checkpoint never fits beside the first
    job = JOB.model_copy(deep=True)
    job.spec.checkpoint.keep = 1
    settings = dataclasses.replace(settings_for(job, tmp_path / "out"), checkpoint_dir=str(disk))
    capfd.readouterr()
    outcome = run_job(settings)
    err = capfd.readouterr().err
    assert "warning: checkpoint at step 10 not written (No space left on device); the newest is still step-000000005" in err
    assert outcome.result.step == 120 and outcome.result.checkpoint is None
    assert sorted(p.name for p in disk.iterdir()) == ["step-000000005"]
    found = Checkpointer(disk, 1, fingerprint=job_fingerprint(settings)).resume()
    assert found is not None and found[1][PROGRESS_KEY]["step"] == 5


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """The same as the tmpfs test anywhere: the disk fills in the middle of writing state.pt."""
    checkpoints = Checkpointer(tmp_path, keep=2)
    checkpoints.save(1, {"step": 1})
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(OSError):
        checkpoints.save(2, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000001"]
    assert checkpoints.resume()[1] == {"step": 1}
    assert (tmp_path / "step-000000001" / META_FILE).exists()


def test_a_checkpoint_of_another_worker_count_is_refused_even_when_the_step_count_agrees(finished, tmp_path, capfd):
    """Each rank resumes its own RNG state: a checkpoint of 1 worker cannot serve 2 (or 2 serve 1)."""
    output = copy_of(finished, tmp_path)
    newest = output / "checkpoints" / "step-000000120"
    saved = torch.load(newest / STATE_FILE, weights_only=False)
    saved[RNG_KEY] = saved[RNG_KEY] * 2  # as if written by 2 workers with the same step count
    checkpoints = Checkpointer(output / "checkpoints", 3, fingerprint=job_fingerprint(settings_for(JOB, output)))
    shutil.rmtree(newest)
    checkpoints.save(120, saved)
    capfd.readouterr()
    run_job(settings_for(JOB, output))
    err = capfd.readouterr().err
    assert f"checkpoint {newest} refused: written by 2 worker(s), this run has 1; trying the one before" in err
    assert_same_weights(weights(output), weights(finished))
