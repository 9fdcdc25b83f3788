"""`trainwright run` and `trainwright compare` through the real CLI."""

import json

import yaml
from PIL import Image

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
    # the pictures of it: accuracy against cost per strategy and the loss curves, with their data
    series = json.loads(Image.open(tmp_path / "demo" / "report.png").text["trainwright-series"])
    assert {s["name"]: s["accuracy"] for s in series} == {k: v for k, v in accuracy.items() if k != "base"}
    assert all(s["cost_usd"] > 0 and len(s["loss"]) >= 2 for s in series)
    page = (tmp_path / "demo" / "report.html").read_text()
    assert page.count("<tr>") == 4 and "data:image/png;base64," in page
    assert json.loads(page.split('id="trainwright-series">')[1].split("</script>")[0]) == series


def test_run_trains_a_manifest_into_the_output_dir(tmp_path, capsys):
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:living", "samples": 200}, {"epochs": 1}, name="tiny")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert main(["run", str(manifest), "--output", str(tmp_path / "out"), "--reporters", "jsonl"]) == 0
    assert "done: 10/10 steps" in capsys.readouterr().out
    assert (tmp_path / "out" / "model" / "model.safetensors").exists()
    assert (tmp_path / "out" / "checkpoints" / "step-000000010").is_dir()


def test_a_finished_run_calibrates_the_next_plan_of_a_like_job(tmp_path, capsys):
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:living", "samples": 200}, {"epochs": 1}, name="tiny")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job.model_dump(mode="json", by_alias=True, exclude_none=True)))
    calibration = tmp_path / "calibration.json"
    main(["plan", str(manifest), "-o", "json", "--calibration", str(calibration)])
    before = json.loads(capsys.readouterr().out)[0]["plan"]
    assert before["estimateBasis"].startswith("FLOPs formula")
    assert main(["run", str(manifest), "--output", str(tmp_path / "out"), "--reporters", "jsonl",
                 "--calibration", str(calibration)]) == 0
    assert f"recorded for later plans in {calibration}" in capsys.readouterr().out
    main(["plan", str(manifest), "-o", "json", "--calibration", str(calibration)])
    after = json.loads(capsys.readouterr().out)[0]["plan"]
    assert after["estimateBasis"].startswith("calibrated from 1 run of scratch on cpu")
    measured = json.loads((tmp_path / "out" / "result.json").read_text())["wall_seconds"]
    # the same job, planned from its own run; the plan rounds to 0.1 s, and this run takes about 0.1 s
    assert abs(after["estimatedSeconds"] - measured) < 0.3 * measured + 0.05


def test_report_draws_any_run_directory(tmp_path, capsys):
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:living", "samples": 200}, {"epochs": 2}, name="tiny")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert main(["run", str(manifest), "--output", str(tmp_path / "out"), "--reporters", "jsonl", "--no-calibration"]) == 0
    assert main(["report", str(tmp_path / "out"), "--output", str(tmp_path / "pictures")]) == 0
    assert "1 run(s)" in capsys.readouterr().out
    [series] = json.loads(Image.open(tmp_path / "pictures" / "report.png").text["trainwright-series"])
    events = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [tuple(point) for point in series["loss"]] == list(dict(
        (e["step"], e["loss"]) for e in events if e["event"] == "step" and e.get("loss") is not None).items())
    assert len(series["evaluations"]) == 2 and series["strategy"] == "scratch"
    assert main(["report", str(tmp_path / "nothing-here")]) == 1
    assert "no finished run here" in capsys.readouterr().err


def test_run_reports_bad_data_as_one_line(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 0.5}\n')
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": str(tmp_path / "d.jsonl")})
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert main(["run", str(manifest), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path}/d.jsonl line 2: label field 'label' must be an integer or a string, got 0.5"]
