"""A lean list-and-watch of the operator's children (launcher Jobs and their pods).

kopf handles every watch event with its full machinery (an object memory, a diff base, causes,
per-object loggers): right for the TrainingJobs, too heavy for the children, which change
several times each while they start. On the scale bench that machinery was over half the
operator's CPU. Children are watched here instead: one task per resource and namespace,
selected on the server by our managed-by label, each event decoded once.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from kubernetes.client.exceptions import ApiException

from trainwright.controller.kube import Kube

log = logging.getLogger("trainwright.informer")
Event = tuple[str, dict]  # (ADDED|MODIFIED|DELETED, object)
WATCH_SECONDS = 240  # the server ends each watch after this; we resume from the last version
PAGE = 500
RETRY_SECONDS = (0.5, 1, 2, 5, 10)


class Informer:
    """List, then watch from the listed version; list again only when the version is too old (410).

    ``deliver`` gets each batch of events in order. A relist also reports as DELETED whatever
    vanished while the watch was down, so nothing is kept that is gone.
    """

    def __init__(self, kube: Kube, path: str, selector: str, deliver: Callable[[list[Event]], None]):
        self.kube, self.path, self.selector, self.deliver = kube, path, selector, deliver
        self.known: dict[tuple[str, str], dict] = {}  # each object's labels, to report its deletion
        self.version: str | None = None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self.version is None:
                    await self._relist()
                await self._watch()
                failures = 0
            except Exception as error:  # noqa: BLE001 - the API server may be away; try again, slower each time
                if isinstance(error, ApiException) and error.status == 410:
                    self.version = None  # answered before the stream began: list again
                    continue
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("watching %s failed (%s); again in %ss", self.path, _brief(error), delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> None:
        items, token = [], None
        while True:
            query = [("labelSelector", self.selector), ("limit", PAGE)] + ([("continue", token)] if token else [])
            page = await self.kube.request("GET", self.path, query=query)
            items += page.get("items") or []
            token = page["metadata"].get("continue")
            if not token:
                break
        listed = {_key(item): item for item in items}
        gone = [("DELETED", {"metadata": {"namespace": ns, "name": name, "labels": labels}})
                for (ns, name), labels in self.known.items() if (ns, name) not in listed]
        self.known = {key: item["metadata"].get("labels") or {} for key, item in listed.items()}
        self.version = page["metadata"]["resourceVersion"]
        self.deliver(gone + [("ADDED", item) for item in listed.values()])

    async def _watch(self) -> None:
        query = [("labelSelector", self.selector), ("watch", "true"), ("allowWatchBookmarks", "true"),
                 ("resourceVersion", self.version), ("timeoutSeconds", WATCH_SECONDS)]
        async with contextlib.aclosing(self.kube.stream(self.path, query, read_timeout=WATCH_SECONDS + 30)) as stream:
            async for lines in stream:
                if not self._take(lines):
                    return

    def _take(self, lines: list[bytes]) -> bool:
        """Deliver a read's events; False when the watch must end for a relist."""
        batch = []
        for line in lines:
            event = orjson.loads(line)
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                if obj.get("code") == 410:  # our version is gone from the server's window
                    self.version = None
                    break
                raise ApiException(status=obj.get("code"), reason=obj.get("message"))
            self.version = obj["metadata"]["resourceVersion"]
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                self.known.pop(_key(obj), None)
            else:
                self.known[_key(obj)] = obj["metadata"].get("labels") or {}
            batch.append((kind, obj))
        if batch:
            self.deliver(batch)
        return self.version is not None


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _brief(error: Exception) -> str:
    return f"{error.status} {error.reason}" if isinstance(error, ApiException) else type(error).__name__
