"""`python -m trainwright.trainer`: the container entrypoint (contract in docs/trainer.md).

Exit codes: 0 trained (or stopped early), 1 bad input or GPUs given but not visible (one line
on stderr), 143 stopped by SIGTERM after writing a checkpoint (the next start resumes from it).
"""

import os
import sys

from trainwright.trainer import preemption
from trainwright.trainer.errors import TrainerError


def main() -> int:
    # First, before the imports that take seconds: in a container the trainer is PID 1, and the
    # kernel drops a signal PID 1 has no handler for, so a SIGTERM during start-up (a job
    # deleted or preempted right after its pod started) would be lost and the pod would live
    # out its whole grace period.
    preemption.install()
    try:
        import torch

        from trainwright.trainer.environment import check_pod_gpus, load_job, pod_gpus, settings_from_env
        from trainwright.trainer.runner import run_job

        job = load_job(os.environ)
        check_pod_gpus(pod_gpus(os.environ), torch.cuda.device_count())
        outcome = run_job(settings_from_env(os.environ, job))
    except TrainerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 143 if outcome.result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
