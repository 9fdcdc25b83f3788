"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

Replicas of the operator share one Lease. The one named in `spec.holderIdentity` leads: it runs
the informers and the reconcilers; the others stand by (kopf's TrainingJob watch and /healthz
run there too; the watch only feeds the in-memory World). The rules:

- A candidate acquires the Lease when there is none (create), when nobody holds it (released),
  or when its holder has not renewed it for `leaseDurationSeconds`. The holder's lease is
  timed from when this replica first *saw* its current record (client-go's observedTime), not
  from the `renewTime` the holder wrote, so a holder whose clock runs behind ours cannot have
  its lease taken early. A takeover increments `spec.leaseTransitions` (client-go's
  leaderTransitions).
- Every write is a create (409: someone else created it first) or an update carrying the
  resourceVersion read (409: someone else wrote in between); a 409 means we lost the race.
- The leader renews every `retryPeriod`. When it has not renewed for `renewDeadline`, or sees
  another holder, it stops leading and EXITS (status 1, so Kubernetes restarts it), as
  controller-runtime does: it never waits to learn whether it could still act. A watchdog
  thread enforces the deadline even when the event loop is stalled. The deadline runs from
  when the last successful renewal was *sent*, and others wait `leaseDuration` from when they
  saw it, so the old leader is gone `leaseDuration - renewDeadline` (5 s by default) before
  anyone may take over.
- On a graceful stop (SIGTERM, a rollout) the leader stops its work first and then releases
  the Lease (empty holder), so a standby takes over within one `retryPeriod`.

`decide` is the whole decision, pure: a function of the Lease as read, our identity and the
time. `LeaderElector` does the I/O through the operator's one client, `Kube`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kubernetes.client.exceptions import ApiException

from trainwright.controller.kube import Kube

log = logging.getLogger("trainwright.leader")

LEASE_API = "coordination.k8s.io/v1"
DEFAULT_LEASE_NAME = "trainwright-operator"
ACQUIRE_JITTER = 0.2  # a candidate retries every retryPeriod x (1 + up to this), so candidates spread out
CACHE_SYNC_SECONDS = 120  # a new leader whose informers cannot list in this time gives up (exits)
EXIT_STATUS = 1  # leadership lost: a non-zero exit, so that Kubernetes restarts the container

# What `decide` says to do.
CREATE = "create"        # no Lease yet: create it, holding it
RENEW = "renew"          # we hold it: write a new renewTime
TAKE_OVER = "take-over"  # released or expired: write ourselves in as holder
WAIT = "wait"            # someone else holds it and their lease runs


@dataclass(frozen=True)
class Timing:
    """client-go's defaults (and controller-runtime's): 15 s lease, 10 s renew deadline, 2 s retry."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self):
        if not self.lease_duration > self.renew_deadline:
            raise ValueError(f"the lease duration ({self.lease_duration:g}s) must be longer than the renew "
                             f"deadline ({self.renew_deadline:g}s): the gap is what keeps two leaders apart")
        if not self.renew_deadline > self.retry_period * (1 + ACQUIRE_JITTER) or self.retry_period <= 0:
            raise ValueError(f"the renew deadline ({self.renew_deadline:g}s) must be longer than "
                             f"{1 + ACQUIRE_JITTER:g} x the retry period ({self.retry_period:g}s), "
                             "which must be positive")


@dataclass(frozen=True)
class Step:
    """What to do about the Lease: `action` (CREATE, RENEW, TAKE_OVER, WAIT), the spec to write
    (None for WAIT) and, for WAIT, who holds it and until when (by our clock)."""

    action: str
    spec: dict | None = None
    holder: str = ""
    expires: datetime | None = None


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def decide(lease: dict | None, identity: str, now: datetime, lease_duration: float = Timing.lease_duration,
           observed_at: datetime | None = None) -> Step:
    """client-go's tryAcquireOrRenew, without the I/O.

    ``lease`` is the Lease as read (None: there is none); ``observed_at`` is when this replica
    first saw its current record (None: trust the holder's renewTime). The holder's lease
    runs for the leaseDurationSeconds it wrote. The spec returned is the whole new spec."""
    ours = {"holderIdentity": identity, "leaseDurationSeconds": max(1, math.ceil(lease_duration))}  # whole seconds
    if lease is None:
        return Step(CREATE, {**ours, "acquireTime": micro_time(now), "renewTime": micro_time(now),
                             "leaseTransitions": 0})
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        return Step(RENEW, {**spec, **ours, "acquireTime": spec.get("acquireTime") or micro_time(now),
                            "renewTime": micro_time(now)})
    if holder:
        since = observed_at or parse_micro_time(spec.get("renewTime")) or parse_micro_time(spec.get("acquireTime"))
        expires = since + timedelta(seconds=spec.get("leaseDurationSeconds") or lease_duration) if since else None
        if expires is not None and now < expires:
            return Step(WAIT, holder=holder, expires=expires)
    return Step(TAKE_OVER, {**spec, **ours, "acquireTime": micro_time(now), "renewTime": micro_time(now),
                            "leaseTransitions": (spec.get("leaseTransitions") or 0) + 1})


def released(spec: dict, now: datetime) -> dict:
    """The spec a leader writes when it steps down: nobody holds it (client-go's release)."""
    return {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time(now)}


def default_identity() -> str:
    """POD_NAME (or the hostname) and a random suffix: a restarted container is a new candidate."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/{LEASE_API}/namespaces/{namespace}/leases"
    return f"{path}/{name}" if name else path


class LeaderElector:
    """Acquire the Lease, run the leader's work while renewing it, exit when it is lost.

    ``run(lead)`` blocks until this replica leads, then runs ``lead()`` and renews alongside it.
    Lost leadership calls ``exit(1)`` (``os._exit``: no cleanup that could still act); a
    cancelled ``run`` (the operator stopping) stops the work, then releases the Lease.
    """

    def __init__(self, kube: Kube, namespace: str, name: str = DEFAULT_LEASE_NAME, identity: str | None = None,
                 timing: Timing = Timing(), *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 monotonic: Callable[[], float] = time.monotonic, exit: Callable[[int], None] = os._exit,
                 watchdog: bool = True):
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity = identity or default_identity()
        self.timing, self.clock, self.monotonic, self._exit, self.watchdog = timing, clock, monotonic, exit, watchdog
        self.leading = False
        self.renewed_at: float | None = None  # monotonic time the last successful write was sent
        self._lease: dict | None = None  # the Lease as we last wrote or read it
        self._observed: tuple[str | None, datetime] | None = None  # (resourceVersion, when first seen)
        self._last_holder: str | None = None
        self._exited = False
        self._exit_lock = threading.Lock()  # the watchdog thread and the loop may both find the deadline gone
        self._watchdog_stop = threading.Event()

    @property
    def deadline(self) -> float:
        """Monotonic time by which the leader must have renewed, or stop."""
        return (self.renewed_at or 0.0) + self.timing.renew_deadline

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        await self.acquire()
        if self.watchdog:
            self._start_watchdog()
        work = asyncio.create_task(lead(), name="leader-work")
        keeping = asyncio.create_task(self.keep(), name="leader-renew")
        try:
            await asyncio.wait({work, keeping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the operator is stopping: stop the work, then hand the lease over
            work.cancel()
            keeping.cancel()
            await asyncio.gather(work, keeping, return_exceptions=True)
            await self.release()
            raise
        if keeping.done():  # renewal failed: stop now, whatever the work is doing
            work.cancel()
            self.stop(keeping.result() if not keeping.exception() else repr(keeping.exception()))
            await asyncio.gather(work, return_exceptions=True)
            return
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)
        error = work.exception() if not work.cancelled() else None
        log.error("the leader's work ended (%s); releasing the lease and exiting", error or "returned",
                  exc_info=error)
        await self.release()
        self.stop("the leader's work ended")

    async def acquire(self) -> None:
        """Try every retryPeriod (with jitter) until this replica holds the Lease."""
        log.info("leader election: lease %s/%s, identity %s; waiting to lead", self.namespace, self.name, self.identity)
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(self.timing.retry_period * (1 + random.random() * ACQUIRE_JITTER))

    async def keep(self) -> str:
        """Renew every retryPeriod; return why leadership is lost (renew deadline passed, or
        another holder seen)."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            if self.monotonic() >= self.deadline:
                return f"no renewal for {self.timing.renew_deadline:g}s (the renew deadline)"
            await self.try_acquire_or_renew()
            if not self.leading:
                return f"the lease is held by {self._last_holder}"
            if self.monotonic() >= self.deadline:
                return f"no renewal for {self.timing.renew_deadline:g}s (the renew deadline)"

    async def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease (unless renewing our own last write), decide, write.
        Whether this replica holds the Lease afterwards. Errors are logged, never raised."""
        sent = self.monotonic()
        try:
            cached = self.leading and self._lease is not None  # client-go's fast path: renew without a get
            lease = self._lease if cached else await self._get(self._timeout(sent))
            now = self.clock()
            if not cached:
                self._observe(lease, now)
            step = decide(lease, self.identity, now, self.timing.lease_duration, self._observed[1] if lease else None)
            if step.action == WAIT:
                self._standby(step)
                return False
            if step.action == CREATE:
                written = await self.kube.request("POST", lease_path(self.namespace), self._object(None, step.spec),
                                                  timeout=self._timeout(sent))
            else:
                written = await self.kube.request("PUT", lease_path(self.namespace, self.name),
                                                  self._object(lease, step.spec), timeout=self._timeout(sent))
        except ApiException as error:
            self._lease = None  # read it again next round
            if error.status == 409:
                log.info("leader election: lost a race for lease %s/%s (409)", self.namespace, self.name)
            else:
                log.warning("leader election: lease %s/%s: %s %s", self.namespace, self.name, error.status,
                            error.reason)
            return False
        except Exception as error:  # noqa: BLE001 - timeouts, connection errors: try again next round
            self._lease = None
            log.warning("leader election: lease %s/%s: %s", self.namespace, self.name, type(error).__name__)
            return False
        self._lease, self._observed = written, (written["metadata"].get("resourceVersion"), now)
        self.renewed_at = sent
        if not self.leading:
            self.leading = True
            self._last_holder = self.identity
            log.info("leader election: acquired lease %s/%s as %s (%s, leaseTransitions %d)", self.namespace,
                     self.name, self.identity, step.action, written["spec"].get("leaseTransitions") or 0)
        return True

    async def release(self) -> None:
        """Step down: stop the watchdog, then write an empty holder if we still hold the Lease."""
        was_leading, self.leading = self.leading, False
        self._watchdog_stop.set()
        if not was_leading or self._lease is None or self.monotonic() >= self.deadline:
            return
        try:
            await self.kube.request("PUT", lease_path(self.namespace, self.name),
                                    self._object(self._lease, released(self._lease["spec"], self.clock())),
                                    timeout=max(0.5, min(5.0, self.deadline - self.monotonic())))
            log.info("leader election: released lease %s/%s", self.namespace, self.name)
        except Exception as error:  # noqa: BLE001 - the others take over when it expires instead
            log.warning("leader election: could not release lease %s/%s: %s", self.namespace, self.name, error)

    def stop(self, reason: str) -> None:
        """Leadership is over: exit (once), as controller-runtime does. Never two leaders acting."""
        self.leading = False
        with self._exit_lock:
            if self._exited:
                return
            self._exited = True
        self._watchdog_stop.set()
        log.error("leader election: stopped leading lease %s/%s (%s); exiting", self.namespace, self.name, reason)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        self._exit(EXIT_STATUS)

    def _start_watchdog(self) -> None:
        """A thread that exits at the renew deadline even if the event loop is stuck (a stalled
        loop would run ready work before the renew loop could notice the deadline)."""
        def watch():
            while not self._watchdog_stop.is_set():
                remaining = self.deadline - self.monotonic()
                if remaining <= 0 and self.leading:
                    self.stop(f"no renewal for {self.timing.renew_deadline:g}s (watchdog)")
                    return
                self._watchdog_stop.wait(max(0.05, min(remaining, 1.0)))
        threading.Thread(target=watch, name="leader-watchdog", daemon=True).start()

    def _observe(self, lease: dict | None, now: datetime) -> None:
        """Remember when the Lease's current record was first seen (client-go's observedTime)."""
        version = (lease or {}).get("metadata", {}).get("resourceVersion")
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, now)

    def _standby(self, step: Step) -> None:
        if self.leading:  # someone else holds a lease we thought ours: we lost it
            self.leading = False
        if step.holder != self._last_holder:
            log.info("leader election: lease %s/%s is held by %s; standing by", self.namespace, self.name, step.holder)
        self._last_holder = step.holder

    def _timeout(self, sent: float) -> float:
        """A request may take until the renew deadline while leading, a renew deadline otherwise."""
        if self.leading:
            return max(0.1, self.deadline - sent)
        return self.timing.renew_deadline

    def _object(self, lease: dict | None, spec: dict) -> dict:
        if lease is None:
            metadata = {"name": self.name, "namespace": self.namespace}
        else:  # the object as read, resourceVersion and all: a 409 if anyone wrote since
            metadata = {k: v for k, v in lease["metadata"].items() if k != "managedFields"}
        return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": metadata, "spec": spec}

    async def _get(self, timeout: float) -> dict | None:
        try:
            return await self.kube.request("GET", lease_path(self.namespace, self.name), timeout=timeout)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
