"""Bad input fails before the first step, naming the file, the row or field, and the reason."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import torch

from trainer_helpers import TINY_CLASSIFIER, make_job, settings_for
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.runner import prepare

CPU = torch.device("cpu")


def classify(path, **dataset):
    return make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                    {"source": str(path), **dataset})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def error_of(job, tmp_path, pvc_root=".") -> str:
    with pytest.raises(TrainerError) as caught:
        prepare(settings_for(job, tmp_path / "out", pvc_root=pvc_root), CPU)
    return str(caught.value)


def test_missing_text_field_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b", "label": 0}, {"body": "c", "label": 1}])
    message = error_of(classify(path), tmp_path)
    assert f"{path} line 2" in message and "'text'" in message and "missing" in message


def test_missing_label_field_names_the_field_setting(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b", "label": 0}, {"text": "c"}])
    message = error_of(classify(path), tmp_path)
    assert f"{path} line 2" in message and "labelField" in message


def test_custom_field_names_are_used(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"review": f"w{i % 3} x", "stars": i % 2} for i in range(40)])
    prepared = prepare(settings_for(classify(path, textField="review", labelField="stars"), tmp_path / "o"), CPU)
    assert len(prepared.train_set) == 32 and prepared.labels.names == ["0", "1"]


@pytest.mark.parametrize("bad", [0.5, [1], True, None])
def test_labels_of_the_wrong_type(tmp_path, bad):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}, {"text": "c", "label": bad}])
    message = error_of(classify(path), tmp_path)
    assert f"{path} line 3" in message and "label" in message


def test_mixed_label_types(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": 3}])
    message = error_of(classify(path), tmp_path)
    assert f"{path} line 2" in message and "one type" in message


def test_label_beyond_num_labels(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 5}])
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER, "numLabels": 2},
                   {"source": str(path)})
    assert "out of range" in error_of(job, tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("")
    assert error_of(classify(path), tmp_path) == f"{path}: is empty"


def test_invalid_json_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": \n')
    assert f"{path} line 2: not valid JSON" in error_of(classify(path), tmp_path)


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    assert f"{path}: cannot read parquet" in error_of(classify(path), tmp_path)


def test_source_that_does_not_exist_names_the_mapped_path(tmp_path):
    job = classify("pvc://data/missing.jsonl")
    message = error_of(job, tmp_path, pvc_root=tmp_path)
    assert message.startswith("pvc://data/missing.jsonl: does not exist") and str(tmp_path / "data/missing.jsonl") in message


def test_model_source_that_does_not_exist(tmp_path):
    job = make_job("fine-tune", {"task": "sequence-classification", "source": "pvc://models/nothing"},
                   {"source": "builtin:living"})
    assert "spec.model.source: pvc://models/nothing does not exist" in error_of(job, tmp_path, pvc_root=tmp_path)


def test_model_that_does_not_fit_the_task(tmp_path, base_model):
    root, source = base_model  # a BERT-style classifier: no causal-lm head exists for it
    text = tmp_path / "t.txt"
    text.write_text("the cat eats a fig .\n" * 50)
    job = make_job("fine-tune", {"task": "causal-lm", "source": source}, {"source": str(text)})
    assert "cannot do causal-lm" in error_of(job, tmp_path, pvc_root=root)


def test_classifier_family_cannot_do_causal_lm(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat eats a fig .\n" * 50)
    job = make_job("scratch", {"task": "causal-lm", "architecture": TINY_CLASSIFIER}, {"source": str(text)})
    assert "spec.model.architecture.family" in error_of(job, tmp_path)


def test_too_few_rows_for_one_step(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": i % 2} for i in range(6)])
    assert "spec.training.batchSize" in error_of(classify(path), tmp_path)


def test_early_stopping_metric_must_be_measured_for_the_task(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat eats a fig .\n" * 50)
    job = make_job("scratch", {"task": "causal-lm", "architecture": {**TINY_CLASSIFIER, "family": "gpt"}},
                   {"source": str(text)}, {"earlyStopping": {"metric": "val_accuracy"}})
    assert "spec.training.earlyStopping.metric" in error_of(job, tmp_path)


def test_csv_parquet_and_text_are_read(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"w{i} x,{i % 2}\n" for i in range(40)))
    pq.write_table(pa.table({"text": [f"w{i} y" for i in range(40)], "label": ["a", "b"] * 20}), tmp_path / "d.parquet")
    csv = prepare(settings_for(classify(tmp_path / "d.csv"), tmp_path / "o1"), CPU)
    parquet = prepare(settings_for(classify(tmp_path / "d.parquet"), tmp_path / "o2"), CPU)
    assert csv.labels.names == ["0", "1"] and parquet.labels.names == ["a", "b"]
    assert len(csv.train_set) + len(csv.validation) == 40


def test_split_and_order_depend_on_the_seed_alone():
    from trainwright.trainer.data import epoch_order, split_indices

    assert split_indices(100, 0.1, 7) == split_indices(100, 0.1, 7)
    assert split_indices(100, 0.1, 7) != split_indices(100, 0.1, 8)
    train, validation = split_indices(100, 0.1, 7)
    assert len(validation) == 10 and sorted(train + validation) == list(range(100))
    assert epoch_order(50, 0, 1) == epoch_order(50, 0, 1) != epoch_order(50, 0, 2)
    shards = [epoch_order(50, 0, 1, rank, 2) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == 25 and not set(shards[0]) & set(shards[1])


def test_a_hub_model_that_cannot_be_reached_is_one_clear_error(tmp_path):
    job = make_job("fine-tune", {"task": "sequence-classification", "source": "hf://nobody/no-such-model"},
                   {"source": "builtin:living"})
    assert error_of(job, tmp_path).startswith("spec.model.source: hf://nobody/no-such-model: cannot load")


def test_model_files_the_pod_cannot_read_are_named(tmp_path, monkeypatch):
    # Root reads everything, so the permission check is shown an unreadable weights file.
    import os

    from trainwright.trainer import models

    (tmp_path / "models" / "base").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "models" / "base" / name).write_text("{}")
    monkeypatch.setattr(models.os, "access", lambda path, mode: not str(path).endswith(".safetensors"))
    job = make_job("fine-tune", {"task": "sequence-classification", "source": "pvc://models/base"},
                   {"source": "builtin:living"})
    message = error_of(job, tmp_path, pvc_root=tmp_path)
    assert f"spec.model.source: pvc://models/base: model.safetensors not readable by uid {os.getuid()}" in message


def test_a_plan_whose_strategy_the_spec_cannot_run_is_refused_by_the_planners_own_list(tmp_path):
    """auto planned as hybrid without a head (a plan made elsewhere): needs_for, the one list of what
    each strategy needs, says so before anything is read."""
    from trainer_helpers import cpu_plan
    from trainwright.trainer.settings import RunSettings

    job = make_job("auto", {"task": "sequence-classification", "source": "builtin:tiny-classifier"},
                   {"source": "builtin:living", "samples": 100})
    settings = RunSettings(job=job, plan=cpu_plan("hybrid"), output_dir=str(tmp_path / "out"),
                           checkpoint_dir=str(tmp_path / "out" / "checkpoints"))
    with pytest.raises(TrainerError, match=r"^spec\.model\.head: strategy hybrid needs model\.head \(new layers\)$"):
        prepare(settings, CPU)
