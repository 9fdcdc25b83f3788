"""`trainwright run` and `trainwright compare` through the real CLI."""

import json

import yaml

from trainer_helpers import TINY_CLASSIFIER, make_job
from trainwright.cli import main


def test_compare_trains_the_demo_and_adapting_beats_scratch(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "demo"), "--reporters", "jsonl"]) == 0
    table = capsys.readouterr().out
    for name in ("base", "scratch", "fine-tune", "hybrid", "val acc", "cost", "GPU h"):
        assert name in table
    accuracy = {name: json.loads((tmp_path / "demo" / name / "result.json").read_text())["result"]["metrics"]["val_accuracy"]
                for name in ("base", "scratch", "fine-tune", "hybrid")}
    assert accuracy["base"] > 0.7  # task A, 4 classes
    assert accuracy["fine-tune"] > accuracy["scratch"] + 0.2 and accuracy["hybrid"] > accuracy["scratch"] + 0.2
    assert (tmp_path / "demo" / "fine-tune" / "adapter" / "adapter_config.json").exists()


def test_run_trains_a_manifest_into_the_output_dir(tmp_path, capsys):
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:living", "samples": 200}, {"epochs": 1}, name="tiny")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert main(["run", str(manifest), "--output", str(tmp_path / "out"), "--reporters", "jsonl"]) == 0
    assert "done: 10/10 steps" in capsys.readouterr().out
    assert (tmp_path / "out" / "model" / "model.safetensors").exists()
    assert (tmp_path / "out" / "checkpoints" / "step-000000010").is_dir()


def test_run_reports_bad_data_as_one_line(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 0.5}\n')
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": str(tmp_path / "d.jsonl")})
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert main(["run", str(manifest), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path}/d.jsonl line 2: label field 'label' must be an integer or a string, got 0.5"]
