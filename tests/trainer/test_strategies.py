"""Each strategy learns: its validation metric beats a bar an untrained model cannot reach."""

import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trainer_helpers import TINY_CLASSIFIER, TINY_GPT, make_job, settings_for
from trainwright.trainer.loop import train
from trainwright.trainer.runner import prepare, run_job

CPU = torch.device("cpu")
LIVING = {"source": "builtin:living", "samples": 400}


def test_scratch_classifier_learns_task_a(tmp_path):
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:topics", "samples": 1200}, {"epochs": 4, "learningRate": 5e-3})
    outcome = run_job(settings_for(job, tmp_path))
    assert outcome.result.metrics["val_accuracy"] > 0.6  # 4 classes: chance is 0.25
    assert (tmp_path / "model" / "config.json").exists() and (tmp_path / "metrics.jsonl").exists()


def test_scratch_gpt_learns_a_language(tmp_path):
    job = make_job("scratch", {"task": "causal-lm", "architecture": TINY_GPT}, {"source": "builtin:patterns", "samples": 1000},
                   {"learningRate": 3e-3, "epochs": 3})
    outcome = run_job(settings_for(job, tmp_path))
    assert outcome.result.metrics["val_perplexity"] < 10  # untrained: about the vocabulary size, 128


def test_full_fine_tune_of_a_saved_model_through_pvc(tmp_path, base_model):
    root, source = base_model
    job = make_job("fine-tune", {"task": "sequence-classification", "source": source}, LIVING, {"learningRate": 5e-3, "epochs": 3})
    outcome = run_job(settings_for(job, tmp_path, pvc_root=root))
    assert outcome.result.metrics["val_accuracy"] > 0.75  # 2 classes: chance is 0.5
    assert outcome.trainable_parameters == outcome.total_parameters


def test_lora_trains_only_the_adapter_and_the_new_head(tmp_path, base_model):
    root, source = base_model
    job = make_job("fine-tune", {"task": "sequence-classification", "source": source, "adapter": {"rank": 4}}, LIVING,
                   {"learningRate": 2e-2, "epochs": 3})
    settings = settings_for(job, tmp_path, pvc_root=root)
    prepared = prepare(settings, CPU)
    model = prepared.built.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".classifier." in n for n in trainable), trainable
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    result = train(prepared.built, prepared.train_set, prepared.validation, prepared.config, device=CPU,
                   num_labels=prepared.labels.count)
    assert result.metrics["val_accuracy"] > 0.75
    for name, parameter in model.named_parameters():
        if name in frozen_before:
            assert torch.equal(parameter, frozen_before[name]), name


def test_models_saved_by_a_run_load_as_the_next_source(tmp_path, base_model):
    root, source = base_model
    job = make_job("fine-tune", {"task": "sequence-classification", "source": source, "adapter": {"rank": 4}}, LIVING,
                   {"epochs": 1})
    run_job(settings_for(job, root / "models" / "tuned", pvc_root=root))
    model = AutoModelForSequenceClassification.from_pretrained(root / "models" / "tuned" / "model")
    tokenizer = AutoTokenizer.from_pretrained(root / "models" / "tuned" / "model")
    assert model.config.id2label == {0: "living", 1: "non-living"}
    assert model(**tokenizer(["cat dog"], return_tensors="pt")).logits.shape == (1, 2)
    again = make_job("fine-tune", {"task": "sequence-classification", "source": "pvc://models/tuned/model"}, LIVING)
    assert prepare(settings_for(again, tmp_path, pvc_root=root), CPU).built.trainable_parameters() > 0


class BackboneSnapshots:
    """A reporter that records the backbone's weights after each epoch's evaluation."""

    def __init__(self, backbone):
        self.backbone, self.snapshots = backbone, []

    def on_step(self, progress): pass
    def on_checkpoint(self, step, path): pass
    def close(self): pass

    def on_eval(self, metrics):
        self.snapshots.append(([p.detach().clone() for p in self.backbone], metrics))


def test_hybrid_freezes_the_backbone_then_unfreezes_it(tmp_path, base_model):
    root, source = base_model
    job = make_job("hybrid", {"task": "sequence-classification", "source": source,
                              "head": [{"type": "linear", "size": 32}, {"type": "gelu"}, {"type": "dropout", "p": 0.1}]},
                   LIVING, {"epochs": 3, "learningRate": 3e-3, "freezeEpochs": 1, "backboneLrScale": 0.1})
    prepared = prepare(settings_for(job, tmp_path, pvc_root=root), CPU)
    backbone = prepared.built.backbone
    before = [p.detach().clone() for p in backbone]
    spy = BackboneSnapshots(backbone)
    result = train(prepared.built, prepared.train_set, prepared.validation, prepared.config, device=CPU, reporter=spy,
                   num_labels=prepared.labels.count)
    after_frozen_epoch, after_unfrozen = spy.snapshots[0][0], spy.snapshots[1][0]
    assert all(torch.equal(a, b) for a, b in zip(before, after_frozen_epoch))
    assert any(not torch.equal(a, b) for a, b in zip(after_frozen_epoch, after_unfrozen))
    assert result.metrics["val_accuracy"] > 0.75


def test_hybrid_model_saves_backbone_and_head(tmp_path, base_model):
    root, source = base_model
    job = make_job("hybrid", {"task": "sequence-classification", "source": source, "head": [{"type": "tanh"}]}, LIVING,
                   {"epochs": 1})
    run_job(settings_for(job, tmp_path, pvc_root=root))
    assert (tmp_path / "model" / "backbone" / "config.json").exists()
    assert json.loads((tmp_path / "model" / "head.json").read_text())["outputs"] == 2
