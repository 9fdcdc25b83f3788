"""Calibrated plans: finished runs of like jobs replace the assumed utilisation and overheads."""

import pytest

from trainwright.api import parse_job
from trainwright.planner import Calibration, CalibrationError, Run, default_catalog, load_calibration, measured_run, plan_job, record_run
from trainwright.planner.calibration import RUNS_PER_KIND, size_class
from trainwright.planner.estimate import DEFAULT_STARTUP_SECONDS, estimate, training_flops, training_tokens

CATALOG = default_catalog()
H100 = CATALOG.get("nvidia-h100")


def spec_of(job_dict, **spec):
    job_dict["spec"].update(spec)
    return parse_job(job_dict).spec


def a_run(parameters=66_000_000, utilization=0.2, overhead=90.0, strategy="fine-tune", gpu="nvidia-h100", step_seconds=100.0):
    return Run(gpu_type=gpu, strategy=strategy, parameters=parameters, devices=1,
               formula_flops=utilization * step_seconds * H100.peak_flops, step_seconds=step_seconds,
               overhead_seconds=overhead, peak_flops=H100.peak_flops)


def test_size_classes_are_decades_of_parameters():
    assert [size_class(n) for n in (999, 1_000_000, 9_999_999, 66_000_000, 124_000_000)] == ["1e2", "1e6", "1e6", "1e7", "1e8"]


def test_an_uncalibrated_plan_is_the_formula_plus_start_up_evaluation_and_checkpoints(job_dict):
    spec = spec_of(job_dict)  # distilbert (66M), LoRA, 25,000 samples
    plan = plan_job(spec, CATALOG)
    tokens = training_tokens(25_000, 0.1, spec.training.maxSeqLength, spec.training.epochs)
    formula = estimate(training_flops(66_000_000, tokens, 1.0), H100, 1, CATALOG.utilization, False).seconds
    assert plan.estimatedSeconds > formula + DEFAULT_STARTUP_SECONDS
    assert plan.estimateBasis.startswith("FLOPs formula at the catalog's 40% utilisation, plus")
    assert "no finished runs of fine-tune on nvidia-h100" in plan.estimateBasis


def test_runs_of_the_same_kind_calibrate_the_plan(job_dict):
    spec = spec_of(job_dict)
    calibration = Calibration([a_run(utilization=0.1, overhead=80.0), a_run(utilization=0.2, overhead=100.0),
                               a_run(utilization=0.3, overhead=120.0)])
    plan = plan_job(spec, CATALOG, calibration=calibration)
    tokens = training_tokens(25_000, 0.1, spec.training.maxSeqLength, spec.training.epochs)
    expected = 100.0 + training_flops(66_000_000, tokens, 1.0) / (H100.peak_flops * 0.2)  # the medians
    assert plan.estimatedSeconds == pytest.approx(expected, rel=1e-3)
    assert plan.estimatedCostUSD == pytest.approx(expected * H100.price_per_hour / 3600, rel=1e-3)
    assert plan.estimateBasis.startswith("calibrated from 3 runs of fine-tune on nvidia-h100 at 1e7+ parameters: 20.0%")


def test_runs_of_different_sizes_are_read_at_the_planned_size_and_never_beyond_the_sizes_measured():
    # 10M at 10%, 40M at 20%: utilisation doubles as size quadruples (slope 1/2 in log-log)
    calibration = Calibration([a_run(parameters=10_000_000, utilization=0.1), a_run(parameters=40_000_000, utilization=0.2)])
    assert calibration.fit("nvidia-h100", "fine-tune", 20_000_000).utilization == pytest.approx(0.1 * 2 ** 0.5)
    assert calibration.fit("nvidia-h100", "fine-tune", 90_000_000).utilization == pytest.approx(0.2)
    assert calibration.fit("nvidia-h100", "fine-tune", 10_000_000).describe().endswith(
        "10.0% utilisation (fitted to size over 2 sizes), 90 s overhead")


def test_one_odd_run_moves_the_size_fit_little():
    on_the_line = [a_run(parameters=n, utilization=0.1 * (n / 10_000_000) ** 0.5)
                   for n in (10_000_000, 20_000_000, 40_000_000, 60_000_000, 80_000_000)]
    odd = a_run(parameters=30_000_000, utilization=0.9)  # a run on a machine that lied about its speed
    fitted = Calibration([*on_the_line, odd]).fit("nvidia-h100", "fine-tune", 50_000_000).utilization
    assert fitted == pytest.approx(0.1 * 5 ** 0.5, rel=0.1)


@pytest.mark.parametrize("other", [{"strategy": "scratch"}, {"gpu": "nvidia-l4"}, {"parameters": 500_000_000}])
def test_runs_of_another_kind_do_not_calibrate(job_dict, other):
    plan = plan_job(spec_of(job_dict), CATALOG, calibration=Calibration([a_run(**other)]))
    assert plan.estimateBasis.startswith("FLOPs formula")


def test_a_finished_run_is_measured_as_the_planner_counts_work(job_dict):
    spec = spec_of(job_dict)
    run = measured_run(spec, "fine-tune", "nvidia-h100", 1, 12345, samples_seen=999, share_done=0.5, step_seconds=50.0,
                       wall_seconds=80.0, catalog=CATALOG)
    assert run.parameters == 66_000_000  # the planner's count, not the one measured
    half_the_planned_samples = 25_000 * 0.9 * spec.training.epochs / 2  # as the spec counts them, not as seen
    assert run.formula_flops == training_flops(66_000_000, int(half_the_planned_samples * spec.training.maxSeqLength), 1.0)
    assert run.overhead_seconds == 30.0 and run.utilization == pytest.approx(run.formula_flops / (50.0 * H100.peak_flops))
    # and a plan of the very same job from it predicts that run's own time
    same = spec_of(job_dict, dataset={"source": "builtin:reviews", "samples": 1000, "validationSplit": 0.0},
                   training={"epochs": 1})
    replay = measured_run(same, "fine-tune", "nvidia-h100", 1, None, 3, 1.0, 50.0, 80.0, CATALOG)
    assert plan_job(same, CATALOG, calibration=Calibration([replay])).estimatedSeconds == pytest.approx(80.0, rel=1e-3)


def test_nothing_measured_is_no_record(job_dict):
    assert measured_run(spec_of(job_dict), "fine-tune", "nvidia-h100", 1, None, 10, 0.0, 50.0, 80.0, CATALOG) is None
    assert measured_run(spec_of(job_dict), "fine-tune", "nvidia-h100", 1, None, 10, 1.0, 0.0, 80.0, CATALOG) is None
    no_hint = spec_of(job_dict, dataset={"source": "builtin:reviews"})
    assert measured_run(no_hint, "fine-tune", "nvidia-h100", 1, None, 0, 1.0, 50.0, 80.0, CATALOG) is None
    assert measured_run(no_hint, "fine-tune", "nvidia-h100", 1, None, 10, 1.0, 50.0, 80.0, CATALOG).formula_flops > 0


def test_only_the_newest_runs_of_a_kind_are_kept():
    calibration = Calibration([a_run(strategy="scratch")])
    for index in range(RUNS_PER_KIND + 5):
        calibration = calibration.add(a_run(overhead=float(index)))
    kept = [r.overhead_seconds for r in calibration.runs if r.strategy == "fine-tune"]
    assert kept == [float(i) for i in range(5, RUNS_PER_KIND + 5)]
    assert sum(r.strategy == "scratch" for r in calibration.runs) == 1


def test_records_survive_a_round_trip_through_the_file(tmp_path):
    path = tmp_path / "state" / "calibration.json"
    assert load_calibration(path).runs == []
    record_run(a_run(), path)
    record_run(a_run(overhead=5.0), path)
    assert load_calibration(path).runs == [a_run(), a_run(overhead=5.0)]
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match=str(path)):
        load_calibration(path)


def test_a_job_that_just_succeeded_leaves_a_record_of_its_step_time_and_wall_time(job_dict):
    from trainwright.controller.reconcile import finished_run

    spec = spec_of(job_dict)
    plan = plan_job(spec, CATALOG)
    before = {"phase": "Running", "startTime": "2026-12-03T12:00:00Z",
              "progress": {"step": 100, "totalSteps": 100, "stepSeconds": 40.0, "samplesSeen": 3200}}
    after = {"phase": "Succeeded", "completionTime": "2026-12-03T12:01:00Z", "restarts": 0}
    run = finished_run(spec, plan, before, after, CATALOG)
    assert (run.gpu_type, run.strategy, run.devices) == ("nvidia-h100", "fine-tune", 1)
    assert run.step_seconds == 40.0 and run.overhead_seconds == 20.0
    assert finished_run(spec, plan, {**before, "phase": "Succeeded"}, after, CATALOG) is None  # recorded once
    assert finished_run(spec, plan, before, {**after, "restarts": 1}, CATALOG) is None
    assert finished_run(spec, plan, before, {**after, "phase": "Failed"}, CATALOG) is None
