"""What the operator has seen of the cluster: jobs, launchers and pods, fed by watch events.

The reconcile workers read this instead of the API server, and take the jobs whose
children changed from its queue. (kopf timers would put a finalizer on every job, so a job could not be
deleted while the operator is away; a single loop needs none and scales better.)
"""

import asyncio
from collections import defaultdict, deque

Key = tuple[str, str]  # (namespace, TrainingJob name)


def _slim_pod(body: dict) -> dict:
    """The parts of a pod that cost and phase read (observe.py); the rest is not kept: with
    thousands of jobs resident, their pods' full status is most of the operator's memory."""
    meta, status = body["metadata"], body.get("status") or {}
    return {"metadata": {k: meta.get(k) for k in ("name", "uid", "deletionTimestamp")},
            "spec": {"containers": [{"resources": dict(c.get("resources") or {})}
                                    for c in (body.get("spec") or {}).get("containers") or []]},
            "status": {"phase": status.get("phase"), "startTime": status.get("startTime"),
                       "containerStatuses": [{"state": s.get("state") or {}} for s in status.get("containerStatuses") or []],
                       "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]}}


def _slim_launcher(body: dict) -> dict:
    """The parts of a launcher Job that its state reads (observe.batch_job_state)."""
    meta, status = body["metadata"], body.get("status") or {}
    return {"metadata": {k: meta.get(k) for k in ("name", "uid", "deletionTimestamp")},
            "spec": {"suspend": (body.get("spec") or {}).get("suspend")},
            "status": {"active": status.get("active"), "failed": status.get("failed"),
                       "conditions": [c for c in status.get("conditions") or [] if c.get("type") in ("Complete", "Failed")]}}


def _slim_job(body: dict) -> dict:
    """A TrainingJob without its managedFields, the largest part that nothing here reads."""
    return {**body, "metadata": {k: v for k, v in body["metadata"].items() if k != "managedFields"}}


class World:
    """Watched objects plus a work queue of jobs to reconcile, like a controller's workqueue:
    a job is queued at most once, handled by one worker at a time, and queued again if it
    changed while being handled. New jobs go first: in a burst, starting them matters most.
    Child events wait ``settle_seconds`` before they queue their job, so the handful of
    updates a starting pod and its Job make come to one reconcile, not five."""

    def __init__(self, settle_seconds: float = 0.5):
        self.settle_seconds = settle_seconds
        self.jobs: dict[Key, dict] = {}
        self.launchers: dict[Key, dict] = {}
        self.pods: dict[Key, dict[str, dict]] = defaultdict(dict)
        # Pods just deleted, in their final state, until the job's cost has them (forget_gone_pods).
        self.gone_pods: dict[Key, dict[str, dict]] = defaultdict(dict)
        self._seen: dict[Key, tuple[int, bool]] = {}  # (generation, planned) when last queued
        self._new: deque[Key] = deque()
        self._rest: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._settling: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._ready = asyncio.Event()

    def mark(self, key: Key) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            (self._new if self.needs_launch(key) else self._rest).append(key)
            self._ready.set()

    def mark_soon(self, key: Key) -> None:
        if self.settle_seconds <= 0:
            self.mark(key)
        elif key not in self._settling:
            self._settling.add(key)
            asyncio.get_running_loop().call_later(self.settle_seconds, self._settled, key)

    def _settled(self, key: Key) -> None:
        self._settling.discard(key)
        self.mark(key)

    def mark_after(self, key: Key, seconds: float | None) -> None:
        """Queue the job once `seconds` have passed (None: no need), replacing an earlier
        request: each reconcile says when time alone next matters to its job."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if seconds is not None and key in self.jobs:
            self._timers[key] = asyncio.get_running_loop().call_later(seconds, self._timer_fired, key)

    def _timer_fired(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.mark(key)

    async def take(self) -> Key:
        while not (self._new or self._rest):
            self._ready.clear()
            await self._ready.wait()
        key = (self._new or self._rest).popleft()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.mark(key)

    def needs_launch(self, key: Key) -> bool:
        status = (self.jobs.get(key) or {}).get("status") or {}
        return not status.get("plan") and status.get("phase") is None

    def saw_job(self, event_type: str, body: dict) -> None:
        """A TrainingJob event. New jobs, new plans and spec changes need a reconcile; other
        status updates (ours and the trainer's) must not, or each patch would trigger the next."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event_type == "DELETED":
            self.mark_after(key, None)
            self.jobs.pop(key, None)
            self._seen.pop(key, None)
            self.launchers.pop(key, None)
            self.pods.pop(key, None)
            self.gone_pods.pop(key, None)
            return
        self.jobs[key] = body = _slim_job(body)
        seen = (body["metadata"].get("generation", 0), bool((body.get("status") or {}).get("plan")))
        if self._seen.get(key) != seen:
            self._seen[key] = seen
            self.mark(key)

    def saw_status(self, key: Key, body: dict) -> None:
        """Our own patch's answer: the freshest copy, without waiting for the watch. Its echo in
        the watch then queues nothing: a plan we wrote ourselves needs no second reconcile (in a
        burst, that was one more reconcile per job). The generation stays the one last queued,
        so a spec change made meanwhile still queues the job when its event comes."""
        if key in self.jobs:
            self.jobs[key] = _slim_job(body)
            generation = self._seen.get(key, (body["metadata"].get("generation", 0), False))[0]
            self._seen[key] = (generation, bool((body.get("status") or {}).get("plan")))

    def forget_gone_pods(self, key: Key, names: list[str]) -> None:
        """The job's status now counts these deleted pods: they need not be kept."""
        gone = self.gone_pods.get(key, {})
        for name in names:
            gone.pop(name, None)
        if not gone:
            self.gone_pods.pop(key, None)

    def saw_launcher(self, event_type: str, key: Key, body: dict) -> None:
        if event_type == "DELETED":
            self.launchers.pop(key, None)
        else:
            self.launchers[key] = _slim_launcher(body)
        self.mark_soon(key)

    def created_launcher(self, key: Key, body: dict | None) -> None:
        """Our own create's answer (None: it was there already). Kept until the informer brings
        a newer copy: a reconcile in between would otherwise take the launcher for missing
        and create it again, and write a status that says so."""
        if body is not None and body.get("kind") == "Job" and key not in self.launchers:
            self.launchers[key] = _slim_launcher(body)

    def saw_pod(self, event_type: str, key: Key, body: dict) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            pods = self.pods.get(key, {})
            pods.pop(name, None)
            if not pods:  # the job's last pod: keep no empty entry (its job may be gone too)
                self.pods.pop(key, None)
            if key in self.jobs:
                self.gone_pods[key][name] = _slim_pod(body)
        else:
            self.pods[key][name] = _slim_pod(body)
        self.mark_soon(key)
