"""Run a TrainingJob on this machine: in process for one worker, Ray local for more.

The embedded default of `trainwright run`, and the quickest way to debug a job.
"""

from pathlib import Path

from trainwright.api import Plan, TrainingJob
from trainwright.api import pod_contract as pod
from trainwright.trainer.runner import RunOutcome, choose_device, run_job
from trainwright.trainer.settings import RunSettings


def plan_locally(job: TrainingJob, catalog=None) -> Plan:
    from trainwright.planner import load_catalog, plan_job

    return plan_job(job.spec, catalog or load_catalog())


def run_local(
    job: TrainingJob, plan: Plan | None = None, output_dir: str | Path = "runs/job", *, workers: int | None = None,
    reporters: list[str] | tuple[str, ...] = ("console", "jsonl"), checkpoint_dir: str | Path | None = None,
    pvc_root: str | Path = pod.PVC_ROOT, metrics_port: int = pod.METRICS_PORT, log_every: int | None = None,
) -> RunOutcome:
    """Train `job` under `output_dir` (checkpoints/, metrics.jsonl, model/, result.json).

    `workers` overrides the plan's count: N > 1 runs Ray Train locally with N CPU workers.
    Running again with the same output directory resumes from the newest checkpoint.
    """
    plan = plan or (job.status.plan if job.status and job.status.plan else plan_locally(job))
    output = Path(output_dir)
    settings = RunSettings(
        job=job, plan=plan, output_dir=str(output), checkpoint_dir=str(checkpoint_dir or output / "checkpoints"),
        pvc_root=str(pvc_root), reporters=list(reporters), metrics_port=metrics_port,
        workers=workers or plan.workers, log_every=log_every,
    )
    return run_job(settings)


def calibration_record(job: TrainingJob, plan: Plan, outcome: RunOutcome, catalog=None):
    """What this finished run measured, for later plans of like jobs (None for an interrupted
    run or one that took no step)."""
    from trainwright.planner import default_catalog, measured_run
    from trainwright.planner.catalog import CPU

    result = outcome.result
    if result.interrupted or result.step == 0:
        return None
    on_gpu = choose_device(plan).type == "cuda"
    return measured_run(job.spec, plan.strategy, job.spec.resources.gpuType if on_gpu else CPU,
                        plan.gpus if on_gpu else outcome.workers, outcome.total_parameters, result.samples,
                        result.step / max(1, result.total_steps), result.seconds, outcome.wall_seconds,
                        catalog or default_catalog())
