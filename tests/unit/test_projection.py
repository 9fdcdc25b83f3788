"""Projected time and cost from measured progress, and budgets that act before the overrun."""

from datetime import datetime, timedelta, timezone

import pytest

from trainwright.api import parse_job
from trainwright.api import reasons as r
from trainwright.controller.projection import MIN_RATIO_TO_ACT, project
from trainwright.controller.reconcile import LauncherState, Observed, fields_to_write, reconcile, rfc3339

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)
START = NOW - timedelta(seconds=100)
PRICE = 36.0  # dollars per device-hour: 0.01 per device-second


def progress(step, total=1000, eta=None, reported=NOW):
    return {"step": step, "totalSteps": total, "ratio": step / total, "etaSeconds": eta, "updatedAt": rfc3339(reported)}


def running_status(step, eta, usd=1.0, **extra):
    return {"phase": "Running", "startTime": rfc3339(START), "progress": progress(step, eta=eta),
            "cost": {"gpuSeconds": usd * 100, "usd": usd, "settledGpuSeconds": 0, "pods": [{"uid": "p1", "seconds": usd * 100}],
                     "updatedAt": rfc3339(NOW - timedelta(seconds=1))}, **extra}


def observed(seconds=100.0, devices=1):
    return Observed(LauncherState(exists=True, uid="u1", active=1), 1, {"p1": seconds}, NOW, running_devices=devices)


def spec_of(job_dict, **budget):
    job_dict["spec"]["budget"] = budget
    return parse_job(job_dict).spec


def condition(status, type_):
    return next((c for c in status["conditions"] if c["type"] == type_), None)


def test_projection_adds_the_steps_left_at_the_measured_rate_to_what_was_spent():
    projection = project(progress(250, eta=300.0), accrued_usd=1.0, devices=2, price_per_hour=PRICE, start=START, now=NOW)
    assert projection.seconds_left == 300.0 and projection.total_seconds == 400.0
    assert projection.cost_usd == pytest.approx(1.0 + 300 * 2 * 0.01)
    assert projection.completion == NOW + timedelta(seconds=300)
    fields = projection.to_cost_fields()
    assert fields["eta"] == "5m" and fields["projectedCompletionTime"] == rfc3339(NOW + timedelta(seconds=300))


def test_projection_counts_down_from_the_trainers_last_report():
    projection = project(progress(250, eta=300.0, reported=NOW - timedelta(seconds=20)), 1.0, 1, PRICE, START, NOW)
    assert projection.seconds_left == 280.0


def test_without_a_reported_eta_the_rate_comes_from_steps_over_time_since_start():
    projection = project(progress(100, eta=None), 1.0, 1, PRICE, START, NOW)  # 100 steps in 100 s: 900 s left
    assert projection.seconds_left == pytest.approx(900.0)


@pytest.mark.parametrize("report", [None, {}, {"step": 0, "totalSteps": 10}, {"step": 5}])
def test_nothing_is_projected_before_a_step_is_measured(report):
    assert project(report, 1.0, 1, PRICE, START, NOW) is None


def test_a_running_job_shows_its_projection_in_the_cost(job_dict):
    decision = reconcile(spec_of(job_dict), running_status(250, eta=300.0), observed(), PRICE)
    cost = decision.status["cost"]
    assert cost["projectedUSD"] == pytest.approx(cost["usd"] + 3.0)
    assert cost["etaSeconds"] == 300.0 and cost["projectedSeconds"] == 400.0


def test_a_finished_job_drops_its_projection(job_dict):
    status = running_status(1000, eta=0.0)
    status["cost"].update(projectedUSD=2.0, etaSeconds=0.0, eta="0s", projectedSeconds=100.0,
                          projectedCompletionTime=rfc3339(NOW))
    launcher = LauncherState(exists=True, uid="u1", succeeded=True)
    decision = reconcile(spec_of(job_dict), status, Observed(launcher, 0, {"p1": 100.0}, NOW), PRICE)
    cost = decision.status["cost"]
    assert decision.status["phase"] == "Succeeded"
    assert all(cost[k] is None for k in ("projectedUSD", "etaSeconds", "eta", "projectedSeconds", "projectedCompletionTime"))


def test_a_projected_overrun_warns_with_the_numbers_and_one_event(job_dict):
    spec = spec_of(job_dict, maxCostUSD=3.0)  # onProjectedOverrun defaults to warn
    decision = reconcile(spec, running_status(250, eta=300.0), observed(), PRICE)  # projected $4
    assert decision.status["phase"] == "Running" and not decision.delete_launcher
    risk = condition(decision.status, r.BUDGET_AT_RISK)
    assert risk["status"] == "True" and "projected cost $4.00 passes the $3.00 budget" in risk["message"]
    assert [e for e in decision.events if e[1] == r.BUDGET_AT_RISK] == [("Warning", r.BUDGET_AT_RISK, risk["message"])]
    again = reconcile(spec, {**running_status(260, eta=290.0), "conditions": decision.status["conditions"]}, observed(), PRICE)
    assert not [e for e in again.events if e[1] == r.BUDGET_AT_RISK]  # still at risk: no second event
    assert condition(again.status, r.BUDGET_AT_RISK) == risk  # nor a write for new numbers


def test_a_projection_back_within_budget_turns_the_condition_false(job_dict):
    spec = spec_of(job_dict, maxCostUSD=3.0)
    at_risk = reconcile(spec, running_status(250, eta=300.0), observed(), PRICE).status["conditions"]
    decision = reconcile(spec, {**running_status(900, eta=10.0), "conditions": at_risk}, observed(), PRICE)
    risk = condition(decision.status, r.BUDGET_AT_RISK)
    assert risk["status"] == "False" and risk["reason"] == r.PROJECTED_WITHIN_BUDGET


def test_stop_on_projected_overrun_stops_before_the_money_is_spent(job_dict):
    spec = spec_of(job_dict, maxCostUSD=3.0, onProjectedOverrun="stop")
    decision = reconcile(spec, running_status(250, eta=300.0), observed(), PRICE)
    assert decision.status["phase"] == "BudgetExceeded" and decision.delete_launcher
    stopped = condition(decision.status, "BudgetExceeded")
    assert stopped["reason"] == r.PROJECTED_COST_OVERRUN and "before the money was spent" in stopped["message"]
    assert decision.status["cost"]["usd"] < 3.0


def test_an_early_projection_is_shown_but_never_acted_on(job_dict):
    spec = spec_of(job_dict, maxCostUSD=3.0, onProjectedOverrun="stop")
    early = int(MIN_RATIO_TO_ACT * 1000) - 1
    decision = reconcile(spec, running_status(early, eta=3000.0), observed(), PRICE)
    assert decision.status["phase"] == "Running" and condition(decision.status, r.BUDGET_AT_RISK) is None
    assert decision.status["cost"]["projectedUSD"] > 3.0


def test_a_changing_projection_alone_is_written_at_the_accrual_pace(job_dict):
    old = running_status(250, eta=300.0)
    decision = reconcile(spec_of(job_dict), old, observed(), PRICE)
    old["cost"] = {**decision.status["cost"], "updatedAt": rfc3339(NOW - timedelta(seconds=1))}
    later = reconcile(spec_of(job_dict), {**old, "conditions": decision.status["conditions"],
                                          "progress": progress(260, eta=290.0)}, observed(100.5), PRICE)
    assert "cost" not in fields_to_write({**old, "conditions": decision.status["conditions"],
                                         "observedGeneration": None, "restarts": 0}, later.status, NOW)
