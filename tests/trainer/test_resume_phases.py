"""A run stopped at each phase boundary (warmup's end, the end of the frozen epochs, an evaluation
that does not improve, the one that stops early, and in the middle of evaluations) resumes to
weights bit-identical to a run never stopped: early stopping, hybrid unfreezing and the learning
rate schedule are all in the checkpoint."""

import dataclasses

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from trainer_helpers import Evaluations, assert_same_weights, make_job, settings_for
from trainwright.trainer.checkpoint import Checkpointer
from trainwright.trainer.loop import train
from trainwright.trainer.runner import prepare
from trainwright.trainer.settings import job_fingerprint

CPU = torch.device("cpu")
# 320 training rows, batch 16: 20 steps an epoch, 80 in 4 epochs; warmup int(80 x 0.1) = 8 steps;
# the backbone frozen for epoch 0. minDelta 10: only the first evaluation improves, so with
# patience 2 the run stops early after epoch 2's evaluation, at step 60 of 80.
EARLY = {"metric": "val_loss", "patience": 2, "minDelta": 10.0}


def job(restore_best: bool):
    return make_job("hybrid", {"task": "sequence-classification", "source": "builtin:tiny-classifier",
                               "head": [{"type": "linear", "size": 16}, {"type": "dropout", "p": 0.2}]},
                    {"source": "builtin:living", "samples": 400},
                    {"epochs": 4, "freezeEpochs": 1, "warmupRatio": 0.1, "learningRate": 3e-3,
                     "earlyStopping": {**EARLY, "restoreBest": restore_best}},
                    {"everySteps": 1000, "keep": 1}, name="phases")


def run(directory, restore_best: bool, stop=None):
    """prepare + train; `stop(model, steps_taken)` is the stop flag (the loop asks after every step
    and before every evaluation batch). Returns the final weights, the result and the evaluations."""
    settings = settings_for(job(restore_best), directory)
    prepared = prepare(settings, CPU)
    taken = [0]

    def count(optimizer, args, kwargs):
        taken[0] += 1

    hook = register_optimizer_step_post_hook(count)
    evaluations = Evaluations()
    try:
        result = train(prepared.built, prepared.train_set, prepared.validation, prepared.config, device=CPU,
                       checkpointer=Checkpointer(directory / "checkpoints", 1, fingerprint=job_fingerprint(settings)),
                       num_labels=2, reporter=evaluations,
                       should_stop=lambda: stop is not None and stop(prepared.built.model, taken[0]))
    finally:
        hook.remove()
    weights = {k: v.detach().clone() for k, v in prepared.built.model.state_dict().items()}
    return weights, result, evaluations.seen


def after(steps):
    return lambda model, taken: taken >= steps


def evaluating_after(steps):
    """Rises in the middle of the evaluation that follows step `steps` (the model is in eval mode)."""
    return lambda model, taken: taken >= steps and not model.training


BOUNDARIES = {
    "in the warmup": after(4),
    "at the warmup's last step": after(8),
    "after the last frozen step, before its evaluation": after(20),
    "during the evaluation that ends the frozen epochs": evaluating_after(20),
    "after the first unfrozen step": after(21),
    "after an evaluation that did not improve": after(41),
    "before the evaluation that stops early": after(60),
    "during the evaluation that stops early": evaluating_after(60),
}


@pytest.fixture(scope="module", params=[False, True], ids=["last-weights", "restore-best"])
def reference(request, tmp_path_factory):
    restore_best = request.param
    weights, result, seen = run(tmp_path_factory.mktemp("phases-reference"), restore_best)
    assert result.stopped_early and result.step == 60 and result.epochs_done == 3 and len(seen) == 3
    assert result.metrics == (seen[0] if restore_best else seen[2])  # the best is the first evaluation
    return restore_best, weights, result


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_a_run_stopped_at_a_phase_boundary_resumes_to_identical_weights(boundary, reference, tmp_path):
    restore_best, reference_weights, reference_result = reference
    _, stopped, _ = run(tmp_path, restore_best, BOUNDARIES[boundary])
    assert stopped.interrupted and not stopped.stopped_early and stopped.checkpoint is not None
    weights, resumed, _ = run(tmp_path, restore_best)
    assert not resumed.interrupted
    fields = ("step", "total_steps", "epochs_done", "metrics", "stopped_early")
    assert {f: getattr(resumed, f) for f in fields} == {f: getattr(reference_result, f) for f in fields}
    assert_same_weights(weights, reference_weights)


def test_a_finished_run_resumed_again_changes_nothing(reference, tmp_path):
    restore_best, reference_weights, reference_result = reference
    run(tmp_path, restore_best)
    weights, again, _ = run(tmp_path, restore_best)
    assert dataclasses.asdict(again) | {"seconds": 0, "checkpoint_seconds": 0, "checkpoint": None, "samples": 0,
                                        "tokens": 0, "loss": None} == dataclasses.asdict(reference_result) | {
        "seconds": 0, "checkpoint_seconds": 0, "checkpoint": None, "samples": 0, "tokens": 0, "loss": None}
    assert_same_weights(weights, reference_weights)


def test_a_run_stopped_after_its_last_step_evaluates_its_last_epoch_when_resumed(tmp_path):
    """Without early stopping: all 80 steps, and a stop after the last one, before the last
    evaluation (a resumed run used to skip it and end with the epoch before's metrics)."""
    plain = job(False).model_copy(deep=True)
    plain.spec.training.earlyStopping = None
    settings = settings_for(plain, tmp_path / "reference")
    results = {}
    for name, stop_at in (("reference", None), ("stopped", 80), ("resumed", None)):
        directory = tmp_path / ("reference" if name == "reference" else "run")
        settings = settings_for(plain, directory)
        prepared = prepare(settings, CPU)
        taken = [0]
        hook = register_optimizer_step_post_hook(lambda optimizer, args, kwargs: taken.__setitem__(0, taken[0] + 1))
        evaluations = Evaluations()
        try:
            results[name] = train(prepared.built, prepared.train_set, prepared.validation, prepared.config, device=CPU,
                                  checkpointer=Checkpointer(directory / "checkpoints", 1, fingerprint=job_fingerprint(settings)),
                                  num_labels=2, reporter=evaluations,
                                  should_stop=lambda: stop_at is not None and taken[0] >= stop_at)
        finally:
            hook.remove()
        results[name + " evaluations"] = [int(m["epoch"]) for m in evaluations.seen]
    assert results["stopped"].interrupted and results["stopped"].step == 80
    assert results["stopped evaluations"] == [0, 1, 2] and results["resumed evaluations"] == [3]
    assert results["resumed"].metrics == results["reference"].metrics and results["resumed"].epochs_done == 4
