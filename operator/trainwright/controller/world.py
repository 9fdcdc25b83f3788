"""What the operator has seen of the cluster: jobs, launchers and pods, fed by watch events.

One reconcile loop reads this instead of the API server, and is woken for the jobs whose
children changed. (kopf timers would put a finalizer on every job, so a job could not be
deleted while the operator is away; a single loop needs none and scales better.)
"""

import asyncio
from collections import defaultdict

Key = tuple[str, str]  # (namespace, TrainingJob name)


def _slim_pod(body: dict) -> dict:
    """The parts of a pod that cost and phase need; the rest is not kept in memory."""
    return {"metadata": {"name": body["metadata"]["name"], "deletionTimestamp": body["metadata"].get("deletionTimestamp")},
            "spec": {"containers": [{"resources": dict(c.get("resources") or {})}
                                    for c in (body.get("spec") or {}).get("containers") or []]},
            "status": dict(body.get("status") or {})}


class World:
    def __init__(self):
        self.jobs: dict[Key, dict] = {}
        self.launchers: dict[Key, dict] = {}
        self.pods: dict[Key, dict[str, dict]] = defaultdict(dict)
        self._seen: dict[Key, tuple[int, bool]] = {}  # (generation, planned) last reconciled for
        self._dirty: set[Key] = set()
        self._wakeup: asyncio.Event | None = None
        self._last_sweep = 0.0

    def _mark(self, key: Key) -> None:
        self._dirty.add(key)
        if self._wakeup is not None:
            self._wakeup.set()

    def saw_job(self, event_type: str, body: dict) -> None:
        """A TrainingJob event. New jobs, new plans and spec changes need a reconcile; other
        status updates (ours and the trainer's) must not, or each patch would trigger the next."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event_type == "DELETED":
            self.jobs.pop(key, None)
            self._seen.pop(key, None)
            self.launchers.pop(key, None)
            self.pods.pop(key, None)
            return
        self.jobs[key] = body
        seen = (body["metadata"].get("generation", 0), bool((body.get("status") or {}).get("plan")))
        if self._seen.get(key) != seen:
            self._seen[key] = seen
            self._mark(key)

    def saw_status(self, key: Key, body: dict) -> None:
        """Our own patch's answer: the freshest copy, without waiting for the watch."""
        if key in self.jobs:
            self.jobs[key] = body

    def saw_launcher(self, event_type: str, key: Key, body: dict) -> None:
        if event_type == "DELETED":
            self.launchers.pop(key, None)
        else:
            self.launchers[key] = body
        self._mark(key)

    def saw_pod(self, event_type: str, key: Key, body: dict) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.pods[key].pop(name, None)
        else:
            self.pods[key][name] = _slim_pod(body)
        self._mark(key)

    async def next_batch(self, sweep_seconds: float) -> list[Key]:
        """The jobs to reconcile now: those marked since the last batch, and every job once per
        ``sweep_seconds`` (cost accrues and deadlines pass without any event)."""
        loop = asyncio.get_running_loop()
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        remaining = self._last_sweep + sweep_seconds - loop.time()
        if remaining > 0 and not self._dirty:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
                await asyncio.sleep(0.05)  # gather a burst of events into one batch
            except asyncio.TimeoutError:
                pass
        if loop.time() >= self._last_sweep + sweep_seconds:
            self._last_sweep = loop.time()
            keys = list(self.jobs)
        else:
            keys = list(self._dirty)
        self._wakeup.clear()
        self._dirty.clear()
        return [k for k in keys if k in self.jobs]
