"""`python -m trainwright.trainer.prestop`: the preStop hook of a RayJob's head and worker pods.

In a KubeRay pod, PID 1 is `ray start`, and on SIGTERM it ends the Ray node's processes at once:
the training workers would die without a checkpoint. The kubelet runs this hook before it sends
that SIGTERM, inside the pod's grace period. The hook sends SIGTERM to each trainer process of
this container (each registered its PID when it installed its handler: `preemption.register`),
then waits until they have exited: their step finished, rank 0 wrote the checkpoint, and the
others waited for it. Then the hook returns and the kubelet stops `ray start`.

Exit status 0 (the kubelet ignores it; a hook that outlives the grace period is killed).
"""

import os
import signal
import sys
import time
from pathlib import Path

from trainwright.api import pod_contract as pod
from trainwright.trainer.preemption import start_time

POLL_SECONDS = 0.2
TIMEOUT_SECONDS = 3600  # the kubelet ends the hook with the grace period; this only keeps a stray run finite


def registered(directory: Path) -> list[int]:
    """The PIDs registered in ``directory`` whose processes still run (same PID, same start time)."""
    if not directory.is_dir():
        return []
    alive = []
    for entry in directory.iterdir():
        if entry.name.isdigit() and start_time(int(entry.name)) == entry.read_text().strip():
            alive.append(int(entry.name))
    return sorted(alive)


def stop_trainers(directory: Path, timeout: float, log=print) -> list[int]:
    """SIGTERM every registered trainer process, then wait until all have exited (or ``timeout``
    seconds pass). The PIDs still running at the end; none when all stopped."""
    pids = registered(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    log(f"preStop: SIGTERM to trainer processes {pids or 'none'}; waiting for their checkpoint")
    began = time.monotonic()
    while (running := [pid for pid in pids if pid in registered(directory)]) and time.monotonic() - began < timeout:
        time.sleep(POLL_SECONDS)
    log(f"preStop: {'still running: ' + str(running) if running else 'all stopped'} after "
        f"{time.monotonic() - began:.1f} s")
    return running


def main() -> int:
    directory = Path(os.environ.get(pod.PROCESS_DIR_ENV) or pod.PROCESS_DIR)
    stop_trainers(directory, TIMEOUT_SECONDS, log=lambda line: print(line, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
