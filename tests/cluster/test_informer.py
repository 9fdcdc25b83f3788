"""The children's informer against a real API server: server-side selection, the event
stream, and a relist after its version expired that reports what vanished meanwhile."""

from __future__ import annotations

import asyncio

from trainwright.controller.informer import Informer
from trainwright.controller.kube import Kube, load_configuration, resource_path

SELECTOR = "app.kubernetes.io/managed-by=trainwright"


def config_map(namespace: str, name: str, ours: bool = True, value: str = "1") -> dict:
    labels = {"app.kubernetes.io/managed-by": "trainwright"} if ours else {}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"v": value}}


class Seen:
    """What an informer delivered, with a way to wait for a given event."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def deliver(self, batch):
        self.events += [(kind, obj["metadata"]["name"]) for kind, obj in batch]
        self.changed.set()

    async def until(self, *wanted: tuple[str, str], timeout: float = 15) -> None:
        async def wait():
            while not all(event in self.events for event in wanted):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


def run(coroutine):
    return asyncio.run(coroutine)


def test_informer_lists_then_streams_only_labelled_objects(control_plane, namespace):
    async def scenario():
        async with Kube(load_configuration(str(control_plane.kubeconfig))) as kube:
            await kube.create(config_map(namespace, "before"))
            await kube.create(config_map(namespace, "not-ours", ours=False))
            seen = Seen()
            informer = Informer(kube, resource_path("v1", "ConfigMap", namespace), SELECTOR, seen.deliver)
            task = asyncio.create_task(informer.run())
            try:
                await seen.until(("ADDED", "before"))
                await kube.create(config_map(namespace, "after"))
                await kube.request("PATCH", resource_path("v1", "ConfigMap", namespace, "after"), {"data": {"v": "2"}},
                                   content_type="application/merge-patch+json")
                await kube.delete("v1", "ConfigMap", namespace, "before")
                await seen.until(("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before"))
            finally:
                task.cancel()
            assert all(name != "not-ours" for _, name in seen.events)
            assert set(informer.known) == {(namespace, "after")}

    run(scenario())


def test_an_expired_version_relists_and_reports_what_vanished_while_away(control_plane, namespace):
    async def scenario():
        async with Kube(load_configuration(str(control_plane.kubeconfig))) as kube:
            for name in ("stays", "goes"):
                await kube.create(config_map(namespace, name))
            seen = Seen()
            informer = Informer(kube, resource_path("v1", "ConfigMap", namespace), SELECTOR, seen.deliver)
            task = asyncio.create_task(informer.run())
            await seen.until(("ADDED", "stays"), ("ADDED", "goes"))
            task.cancel()

            await kube.delete("v1", "ConfigMap", namespace, "goes")
            await kube.create(config_map(namespace, "new"))
            informer.version = "1"  # long compacted: the server answers 410 Gone
            seen.events.clear()
            task = asyncio.create_task(informer.run())
            try:
                await seen.until(("DELETED", "goes"), ("ADDED", "stays"), ("ADDED", "new"))
            finally:
                task.cancel()
            assert set(informer.known) == {(namespace, "stays"), (namespace, "new")}
            assert informer.version not in (None, "1")

    run(scenario())


def test_client_creates_idempotently_and_reports_missing_things_as_none(control_plane, namespace):
    async def scenario():
        async with Kube(load_configuration(str(control_plane.kubeconfig))) as kube:
            assert await kube.get("v1", "ConfigMap", namespace, "missing") is None
            created = await kube.create(config_map(namespace, "twice"))
            assert created["metadata"]["uid"] and created["metadata"]["name"] == "twice"  # as stored
            assert await kube.create(config_map(namespace, "twice")) is None  # 409: already there
            assert await kube.has_resource("batch", "v1", "jobs") is True
            assert await kube.has_resource("example.invalid", "v1", "things") is False

    run(scenario())
