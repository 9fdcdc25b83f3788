"""`python -m trainwright.trainer`: the container entrypoint (contract in docs/trainer.md).

Exit codes: 0 trained (or stopped early), 1 bad input or GPUs given but not visible (one line
on stderr), 143 stopped by SIGTERM after writing a checkpoint (the next start resumes from it).
"""

import os
import sys

from trainwright.trainer.errors import TrainerError


def main() -> int:
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
