"""Run a TrainingJob on this machine: in process for one worker, Ray local for more.

The embedded default of `trainwright run`, and the quickest way to debug a job.
"""

from pathlib import Path

from trainwright.api import Plan, TrainingJob
from trainwright.trainer.runner import RunOutcome, RunSettings, run_job


def plan_locally(job: TrainingJob, catalog=None) -> Plan:
    from trainwright.planner import load_catalog, plan_job

    return plan_job(job.spec, catalog or load_catalog())


def run_local(
    job: TrainingJob, plan: Plan | None = None, output_dir: str | Path = "runs/job", *, workers: int | None = None,
    reporters: list[str] | tuple[str, ...] = ("console", "jsonl"), checkpoint_dir: str | Path | None = None,
    pvc_root: str | Path = "/mnt/pvc", metrics_port: int = 9090, log_every: int | None = None,
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
