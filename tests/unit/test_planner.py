"""The planner's rules: auto's choice, sizing, and estimates that move the right way."""

import copy

import pytest

from trainwright.api import parse_job
from trainwright.planner import PlanningError, compare_strategies, default_catalog, load_catalog, plan_job
from trainwright.planner.catalog import CatalogError, parse_catalog
from trainwright.planner.estimate import estimate, training_flops
from trainwright.planner.strategy import FINE_TUNE_MAX_SAMPLES, SCRATCH_MIN_GPUS, SCRATCH_MIN_SAMPLES

CATALOG = default_catalog()
GPT = {"family": "gpt", "layers": 12, "hidden": 768}


def spec_of(job_dict, **changes):
    spec = job_dict["spec"]
    for path, value in changes.items():
        node = spec
        *parents, leaf = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return parse_job(job_dict).spec


@pytest.mark.parametrize("changes, strategy, reason_part", [
    ({"model": {"source": "hf://gpt2", "task": "causal-lm"}, "dataset__samples": 50_000},
     "fine-tune", "no architecture"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "architecture": GPT}, "dataset__samples": 50_000},
     "fine-tune", "modest data set"),
    ({"model": {"task": "causal-lm", "architecture": GPT}, "dataset__samples": 100},
     "scratch", "no pre-trained model"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "relu"}]}},
     "hybrid", "a head is given"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "adapter": {}}},
     "fine-tune", "an adapter is given"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "architecture": GPT},
      "dataset__samples": SCRATCH_MIN_SAMPLES, "resources__gpus": SCRATCH_MIN_GPUS, "budget": {}},
     "scratch", "enough to learn every parameter"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "architecture": GPT},
      "dataset__samples": SCRATCH_MIN_SAMPLES, "resources__gpus": SCRATCH_MIN_GPUS - 1, "budget": {}},
     "fine-tune", "scratch needs"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "architecture": GPT},
      "dataset__samples": FINE_TUNE_MAX_SAMPLES + 1, "resources__gpus": 64, "budget": {}},
     "fine-tune", "scratch needs"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "architecture": GPT},
      "dataset__samples": SCRATCH_MIN_SAMPLES, "resources__gpus": SCRATCH_MIN_GPUS, "budget": {"maxCostUSD": 1}},
     "fine-tune", "over the $1 budget"),
    ({"model": {"source": "hf://gpt2", "task": "causal-lm", "architecture": GPT}, "dataset__samples": None},
     "fine-tune", "size is unknown"),
])
def test_auto_picks_like_a_practitioner(job_dict, changes, strategy, reason_part):
    plan = plan_job(spec_of(job_dict, strategy="auto", **changes), CATALOG)
    assert plan.strategy == strategy
    assert reason_part in plan.reason


@pytest.mark.parametrize("strategy, model, gpus, per_node, expected", [
    ("fine-tune", None, 1, 8, dict(gpus=1, launcher="job", workers=1, pods=1, gpusPerPod=1)),
    ("fine-tune", None, 0, 8, dict(gpus=0, launcher="job", workers=1, pods=1, gpusPerPod=0)),
    ("fine-tune", None, 4, 8, dict(gpus=1, launcher="job", workers=1, pods=1, gpusPerPod=1)),
    ("scratch", {"task": "causal-lm", "architecture": GPT}, 4, 8, dict(gpus=4, launcher="job", workers=4, pods=1, gpusPerPod=4)),
    ("scratch", {"task": "causal-lm", "architecture": GPT}, 8, 8, dict(gpus=8, launcher="job", workers=8, pods=1, gpusPerPod=8)),
    ("scratch", {"task": "causal-lm", "architecture": GPT}, 16, 8, dict(gpus=16, launcher="rayjob", workers=16, pods=2, gpusPerPod=8)),
    ("scratch", {"task": "causal-lm", "architecture": GPT}, 20, 8, dict(gpus=16, launcher="rayjob", workers=16, pods=2, gpusPerPod=8)),
    ("scratch", {"task": "causal-lm", "architecture": GPT}, 0, 8, dict(gpus=0, launcher="job", workers=1, pods=1, gpusPerPod=0)),
    ("hybrid", {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "relu"}]}, 1, 8, dict(gpus=1, launcher="job", workers=1, pods=1, gpusPerPod=1)),
    ("hybrid", {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "relu"}]}, 4, 8, dict(gpus=4, launcher="job", workers=4, pods=1, gpusPerPod=4)),
    ("hybrid", {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "relu"}]}, 24, 8, dict(gpus=24, launcher="rayjob", workers=24, pods=3, gpusPerPod=8)),
])
def test_sizing_follows_the_design(job_dict, strategy, model, gpus, per_node, expected):
    changes = {"strategy": strategy, "resources__gpus": gpus, "resources__gpusPerNode": per_node}
    if model:
        changes["model"] = model
    plan = plan_job(spec_of(job_dict, **changes), CATALOG)
    assert {k: getattr(plan, k) for k in expected} == expected


def test_sized_down_plans_say_so(job_dict):
    plan = plan_job(spec_of(job_dict, resources__gpus=4), CATALOG)
    assert plan.notes[0] == "sized down from 4 GPUs to 1: fine-tune runs on one GPU"
    plan = plan_job(spec_of(job_dict, strategy="scratch", model={"task": "causal-lm", "architecture": GPT},
                            resources__gpus=20), CATALOG)
    assert "sized down from 20 to 16 GPUs" in plan.notes[0]


def test_plan_json_uses_the_contract_keys(job_dict):
    wire = plan_job(spec_of(job_dict), CATALOG).model_dump(by_alias=True, mode="json")
    assert set(wire) == {"strategy", "reason", "gpus", "launcher", "workers", "pods", "gpusPerPod",
                         "estimatedSeconds", "estimatedCostUSD", "estimateBasis", "notes"}


def test_unknown_parameter_count_gives_no_estimate(job_dict):
    plan = plan_job(spec_of(job_dict, model__source="pvc://models/mine"), CATALOG)
    assert plan.estimatedSeconds is None and plan.estimatedCostUSD is None
    assert any("parameter count" in note for note in plan.notes)


def test_parameter_hint_gives_an_estimate(job_dict):
    plan = plan_job(spec_of(job_dict, model__source="pvc://models/mine", model__parameters=66_000_000), CATALOG)
    assert plan.estimatedSeconds > 0 and plan.estimatedCostUSD > 0


def test_missing_sample_count_gives_no_estimate(job_dict):
    plan = plan_job(spec_of(job_dict, dataset__samples=None), CATALOG)
    assert plan.estimatedSeconds is None
    assert "dataset.samples is not given" in plan.notes[0]


def test_estimate_follows_six_n_t():
    h100 = CATALOG.get("nvidia-h100")
    flops = training_flops(100_000_000, 1_000_000_000)
    assert flops == 6e17
    result = estimate(flops, h100, 1, 0.5, multi_node=False)
    assert result.seconds == pytest.approx(6e17 / (989.5e12 * 0.5))
    assert result.cost_usd == pytest.approx(result.seconds * 3.00 / 3600)
    assert training_flops(100, 100, frozen_fraction=1.0) == pytest.approx(6 * 100 * 100 * 2 / 3)


SCRATCH = {"strategy": "scratch", "model": {"task": "causal-lm", "architecture": {"family": "gpt", "layers": 4, "hidden": 256}},
           "budget": {}}


@pytest.mark.parametrize("field, values", [
    ("model__architecture__layers", [2, 4, 8, 16]),
    ("model__architecture__hidden", [128, 256, 512, 1024]),
    ("dataset__samples", [1_000, 10_000, 100_000, 1_000_000]),
    ("training__epochs", [1, 2, 4, 8]),
    ("training__maxSeqLength", [128, 256, 512, 1024]),
])
def test_time_and_cost_grow_with_parameters_and_tokens(job_dict, field, values):
    plans = [plan_job(spec_of(copy.deepcopy(job_dict), **SCRATCH, **{field: value}), CATALOG) for value in values]
    seconds = [p.estimatedSeconds for p in plans]
    costs = [p.estimatedCostUSD for p in plans]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)
    assert costs == sorted(costs) and len(set(costs)) == len(costs)


def test_more_gpus_finish_sooner_and_never_cost_less(job_dict):
    plans = [plan_job(spec_of(copy.deepcopy(job_dict), **SCRATCH, resources__gpus=g), CATALOG) for g in (1, 2, 4, 8, 16, 32)]
    seconds = [p.estimatedSeconds for p in plans]
    costs = [p.estimatedCostUSD for p in plans]
    assert seconds == sorted(seconds, reverse=True) and len(set(seconds)) == len(seconds)
    assert all(b >= a * 0.999 for a, b in zip(costs, costs[1:]))


def test_budget_and_deadline_overruns_are_noted(job_dict):
    changes = {**SCRATCH, "budget": {"maxCostUSD": 1, "maxDuration": "1h"}}
    plan = plan_job(spec_of(job_dict, **changes, resources__gpus=8, dataset__samples=10**9), CATALOG)
    assert any("over the $1.00 budget" in n for n in plan.notes)
    assert any("over maxDuration 1h" in n for n in plan.notes)


def test_unknown_gpu_type_is_a_planning_error_naming_the_field(job_dict):
    with pytest.raises(PlanningError, match=r"^spec.resources.gpuType: unknown GPU type 'nvidia-b999'"):
        plan_job(spec_of(job_dict, resources__gpuType="nvidia-b999"), CATALOG)


def test_cpu_jobs_ignore_the_gpu_type_and_use_cpu_prices(job_dict):
    plan = plan_job(spec_of(job_dict, resources__gpus=0, resources__gpuType="nvidia-b999"), CATALOG)
    assert plan.gpus == 0 and plan.estimatedCostUSD > 0


def test_admin_catalog_overrides_prices_and_adds_types(job_dict, tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("gpuTypes:\n  nvidia-h100: {pricePerHourUSD: 6.0}\n  nvidia-b200: {peakTFLOPS: 2250, pricePerHourUSD: 6}\nutilization: 0.4\n")
    catalog = load_catalog(path)
    base = plan_job(spec_of(job_dict), CATALOG)
    dear = plan_job(spec_of(job_dict), catalog)
    assert dear.estimatedCostUSD == pytest.approx(base.estimatedCostUSD * 2, rel=1e-3)
    assert plan_job(spec_of(job_dict, resources__gpuType="nvidia-b200"), catalog).gpus == 1


@pytest.mark.parametrize("data, message", [
    ({"gpus": {}}, "unknown keys"),
    ({"gpuTypes": {"x": {"peakTFLOPS": "fast"}}}, "needs numeric"),
    ({"gpuTypes": {"x": {"peakTFLOPS": -1, "pricePerHourUSD": 1}}}, "must be > 0"),
    ({"utilization": 2}, "must be in"),
])
def test_bad_catalogs_are_refused(data, message):
    with pytest.raises(CatalogError, match=message):
        parse_catalog(data)


def test_compare_plans_each_strategy_and_says_what_it_needs(job_dict):
    rows = compare_strategies(spec_of(job_dict, resources__gpus=8), CATALOG)
    assert [s for s, _, _ in rows] == ["fine-tune", "scratch", "hybrid"]
    needs = {s: n for s, _, n in rows}
    assert needs == {"fine-tune": [], "scratch": ["model.architecture"], "hybrid": ["model.head (new layers)"]}
    gpus = {s: p.gpus for s, p, _ in rows}
    assert gpus == {"fine-tune": 1, "scratch": 8, "hybrid": 8}


def test_a_job_without_a_checkpoint_claim_is_warned_that_restarts_start_over(job_dict):
    assert any("checkpoint.pvc is not set" in n for n in plan_job(spec_of(job_dict), CATALOG).notes)
    job_dict["spec"]["checkpoint"] = {"pvc": "ckpt"}
    assert not any("checkpoint" in n for n in plan_job(parse_job(job_dict).spec, CATALOG).notes)


@pytest.mark.parametrize(("workers", "per_pod", "launcher", "pods"), [
    (None, None, "job", 1), (4, None, "job", 1), (4, 4, "job", 1), (2, 1, "rayjob", 2), (6, 2, "rayjob", 3)])
def test_cpu_scratch_runs_workers_per_pod_in_one_pod_or_as_a_rayjob_of_pods(job_dict, workers, per_pod, launcher, pods):
    spec = spec_of(job_dict, strategy="scratch", model={"task": "causal-lm", "architecture": GPT},
                   resources__gpus=0, resources__workers=workers, resources__workersPerPod=per_pod)
    plan = plan_job(spec, CATALOG)
    assert (plan.launcher, plan.pods, plan.workers, plan.gpus, plan.gpusPerPod) == (launcher, pods, workers or 1, 0, 0)


def test_cpu_fine_tune_with_many_workers_is_sized_down_and_says_so(job_dict):
    spec = spec_of(job_dict, resources__gpus=0, resources__workers=4)
    plan = plan_job(spec, CATALOG)
    assert (plan.workers, plan.pods, plan.launcher) == (1, 1, "job")
    assert any("sized down from 4 workers to 1" in note for note in plan.notes), plan.notes


HYBRID_MODEL = {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "relu"}]}


@pytest.mark.parametrize(("workers", "per_pod"), [(4, None), (4, 2), (6, 3)])
def test_cpu_hybrid_with_many_workers_is_sized_like_cpu_scratch(job_dict, workers, per_pod):
    def sized(strategy, model):
        spec = spec_of(copy.deepcopy(job_dict), strategy=strategy, model=model, resources__gpus=0,
                       resources__workers=workers, resources__workersPerPod=per_pod)
        plan = plan_job(spec, CATALOG)
        return plan.launcher, plan.workers, plan.pods, plan.gpus, plan.gpusPerPod

    assert sized("hybrid", HYBRID_MODEL) == sized("scratch", {"task": "causal-lm", "architecture": GPT})


def test_the_default_single_cpu_worker_keeps_its_note(job_dict):
    plan = plan_job(spec_of(job_dict, strategy="scratch", model={"task": "causal-lm", "architecture": GPT},
                            resources__gpus=0), CATALOG)
    assert "no GPUs asked for: one CPU worker" in plan.notes


def test_more_cpu_workers_finish_sooner_and_never_cost_less(job_dict):
    plans = [plan_job(spec_of(copy.deepcopy(job_dict), **SCRATCH, resources__gpus=0, resources__workers=w,
                              resources__workersPerPod=1 if w > 1 else None), CATALOG) for w in (1, 2, 4, 8)]
    seconds = [p.estimatedSeconds for p in plans]
    costs = [p.estimatedCostUSD for p in plans]
    assert seconds == sorted(seconds, reverse=True) and len(set(seconds)) == len(seconds)
    assert all(b >= a * 0.999 for a, b in zip(costs, costs[1:]))
