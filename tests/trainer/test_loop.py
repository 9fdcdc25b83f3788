"""Loop semantics: gradient accumulation, early stopping, causal-lm through LoRA and hybrid, built-ins."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from trainer_helpers import TINY_GPT, Evaluations, make_job, settings_for
from trainwright.trainer.data import TokenizedSet
from trainwright.trainer.checkpoint import Checkpointer
from trainwright.trainer.loop import FORWARD_SHARE, LoopConfig, evaluate, seconds_left, train
from trainwright.trainer.models import BuiltModel
from trainwright.trainer.runner import run_job

CPU = torch.device("cpu")


def no_dropout_classifier():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2))


def test_accumulating_two_half_batches_matches_one_full_batch():
    generator = torch.Generator().manual_seed(0)
    sequences = torch.randint(5, 64, (64, 12), generator=generator).tolist()
    data = TokenizedSet(sequences, [s[0] % 2 for s in sequences], pad_id=0, task="sequence-classification")
    models = []
    for batch, accumulation in ((16, 1), (8, 2)):
        model = no_dropout_classifier()
        config = LoopConfig(task="sequence-classification", epochs=2, batch_size=batch, grad_accum=accumulation, lr=1e-3)
        result = train(BuiltModel(model, None, 32), data, None, config, device=CPU)
        assert result.step == 8
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    job = make_job("scratch", {"task": "sequence-classification", "architecture": {**TINY_GPT, "family": "classifier"}},
                   {"source": "builtin:living", "samples": 200},
                   {"epochs": 6, "earlyStopping": {"metric": "val_loss", "patience": 1, "minDelta": 10.0}})
    outcome = run_job(settings_for(job, tmp_path))
    assert outcome.result.stopped_early and outcome.result.epochs_done == 2 and outcome.result.step == 20


def test_early_stopping_ends_with_the_best_evaluations_weights(tmp_path):
    generator = torch.Generator().manual_seed(1)
    sequences = torch.randint(5, 64, (96, 12), generator=generator).tolist()
    labelled = [s[0] % 2 for s in sequences]
    train_set = TokenizedSet(sequences[:64], labelled[:64], pad_id=0, task="sequence-classification")
    validation = TokenizedSet(sequences[64:], labelled[64:], pad_id=0, task="sequence-classification")
    # minDelta 10: only the first evaluation counts as an improvement, so the run stops after the
    # second, and the first epoch's weights are the best
    for restore, checkpoints in ((True, None), (True, tmp_path / "checkpoints"), (False, None)):
        config = LoopConfig(task="sequence-classification", epochs=6, batch_size=16, lr=3e-3,
                            early_stopping_metric="val_loss", patience=1, min_delta=10.0, restore_best=restore)
        model, evaluations = no_dropout_classifier(), Evaluations()
        result = train(BuiltModel(model, None, 32), train_set, validation, config, device=CPU, reporter=evaluations,
                       checkpointer=Checkpointer(checkpoints, 2) if checkpoints else None, num_labels=2)
        first, second = (e["val_loss"] for e in evaluations.seen)
        assert result.stopped_early and abs(first - second) > 1e-4  # the two epochs' weights differ
        final = evaluate(model, validation, config, CPU, 2)["val_loss"]
        expected = first if restore else second
        assert abs(final - expected) < 1e-6 and result.metrics["val_loss"] == expected


def gpt_base(root):
    job = make_job("scratch", {"task": "causal-lm", "architecture": TINY_GPT}, {"source": "builtin:patterns", "samples": 1000},
                   {"learningRate": 3e-3, "epochs": 3})
    run_job(settings_for(job, root / "gpt"))
    return str(root / "gpt" / "model")


def test_causal_lm_through_lora_and_hybrid(tmp_path):
    source = gpt_base(tmp_path)
    patterns = {"source": "builtin:patterns", "samples": 300}
    lora = run_job(settings_for(make_job("fine-tune", {"task": "causal-lm", "source": source, "adapter": {"rank": 4}},
                                         patterns, {"learningRate": 1e-2}), tmp_path / "lora"))
    assert lora.result.metrics["val_perplexity"] < 10  # untrained: about 128
    assert lora.trainable_parameters < lora.total_parameters / 5
    hybrid = run_job(settings_for(make_job("hybrid", {"task": "causal-lm", "source": source, "head": [{"type": "layernorm"}]},
                                           patterns, {"learningRate": 1e-2, "epochs": 3, "freezeEpochs": 1}), tmp_path / "hybrid"))
    assert hybrid.result.metrics["val_perplexity"] < 20


def test_builtin_models_fine_tune(tmp_path):
    job = make_job("fine-tune", {"task": "sequence-classification", "source": "builtin:tiny-classifier"},
                   {"source": "builtin:living", "samples": 200}, {"epochs": 1, "learningRate": 1e-3})
    outcome = run_job(settings_for(job, tmp_path))
    assert outcome.result.step == 10 and (tmp_path / "model" / "config.json").exists()


def test_the_eta_counts_the_evaluations_still_to_come():
    # 10 steps of 2 s and 3 evaluations left: before any was measured, each is a forward pass over
    # 320 validation samples at 32 samples a step, a third of a step's work; after, the measured one
    assert seconds_left(10, 2.0, 3, None, 320, 32) == 20 + 3 * (10 * 2.0 * FORWARD_SHARE)
    assert seconds_left(10, 2.0, 3, 1.5, 320, 32) == 20 + 3 * 1.5
    assert seconds_left(10, 2.0, 0, None, 320, 32) == 20


def test_a_run_reports_an_eta_that_includes_its_evaluations_until_the_last_is_done():
    generator = torch.Generator().manual_seed(2)
    sequences = torch.randint(5, 64, (320, 12), generator=generator).tolist()
    labelled = [s[0] % 2 for s in sequences]
    train_set = TokenizedSet(sequences[:64], labelled[:64], pad_id=0, task="sequence-classification")
    validation = TokenizedSet(sequences[64:], labelled[64:], pad_id=0, task="sequence-classification")
    config = LoopConfig(task="sequence-classification", epochs=2, batch_size=16, lr=1e-3, log_every=1)
    reports = Evaluations()
    result = train(BuiltModel(no_dropout_classifier(), None, 32), train_set, validation, config, device=CPU,
                   reporter=reports, num_labels=2)
    assert result.step == 8 and len(reports.seen) == 2
    first, last_step, final = reports.progress[0], reports.progress[-2], reports.progress[-1]
    step_seconds = 16 / first.samplesPerSecond
    # two evaluations of 256 samples still to come, none measured yet
    assert first.etaSeconds == pytest.approx((8 - first.step) * step_seconds + 2 * 256 / 16 * step_seconds * FORWARD_SHARE)
    assert last_step.step == 8 and last_step.etaSeconds > 0  # the last evaluation is still to come
    assert final.step == 8 and final.etaSeconds == 0
