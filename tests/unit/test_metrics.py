"""The collector shows what the store knows and nothing else: a removed job's series vanish."""

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trainwright.controller.metrics import JobStore, OperatorMetrics, snapshot_of

BODY = {"metadata": {"namespace": "ml", "name": "sentiment"}, "spec": {"strategy": "auto", "budget": {"maxCostUSD": 50}},
        "status": {"phase": "Running", "plan": {"strategy": "fine-tune", "gpus": 1, "estimatedCostUSD": 4.1},
                   "progress": {"ratio": 0.3, "etaSeconds": 3100, "samplesPerSecond": 812, "loss": 0.41},
                   "cost": {"gpuSeconds": 2520, "usd": 2.1}}}


def samples(metrics: OperatorMetrics) -> dict:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, s.labels.get("phase", "")): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.labels.get("name") == "sentiment"}


def test_job_series_follow_the_store():
    store = JobStore()
    metrics = OperatorMetrics(store)
    store.put(snapshot_of(BODY))
    seen = samples(metrics)
    assert seen[("trainwright_job_phase", "Running")] == 1 and seen[("trainwright_job_phase", "Pending")] == 0
    assert seen[("trainwright_job_progress_ratio", "")] == 0.3
    assert seen[("trainwright_job_cost_dollars_total", "")] == 2.1
    assert seen[("trainwright_job_gpu_seconds_total", "")] == 2520
    assert seen[("trainwright_job_budget_dollars", "")] == 50
    assert seen[("trainwright_job_loss", "")] == 0.41
    store.remove("ml", "sentiment")
    assert samples(metrics) == {}


def test_handler_runs_are_counted_by_result():
    metrics = OperatorMetrics(JobStore())

    def launch(fail=False):
        with metrics.timed("launch"):
            if fail:
                raise RuntimeError("boom")

    launch()
    try:
        launch(fail=True)
    except RuntimeError:
        pass
    text = generate_latest(metrics.registry).decode()
    assert 'trainwright_operator_handler_runs_total{handler="launch",result="success"} 1.0' in text
    assert 'trainwright_operator_handler_runs_total{handler="launch",result="error"} 1.0' in text
