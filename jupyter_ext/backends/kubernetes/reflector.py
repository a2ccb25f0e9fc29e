"""The watch cache: a local copy of one kind of object in one namespace, kept current by a single watch.

As kubespawner's reflector: list, then watch from the list's resourceVersion; a 410 Gone (our
version is too old) re-lists at once, other errors back off (0.5 s doubling to 30 s) and re-list;
the server ends each watch after `timeout_seconds` and it is restarted from the last version.
Readers look at `objects` (name -> the object as Kubernetes' JSON) and wait on `changed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Reflector:
    """A local copy of one kind of object in one namespace, kept current by a single watch."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str, *, timeout: float, **selectors: str) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.selectors = selectors
        self.timeout = timeout
        self.objects: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None
        self.watches_started = 0  # for the benchmark: watch connections opened
        self.first_list = asyncio.Event()

    def start(self, api: Any) -> None:
        self.api = api
        self.task = asyncio.create_task(self._run(), name=f"jupyter-ext reflector {self.list_fn.__name__}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _run(self) -> None:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        backoff = 0.5
        while True:
            try:
                listing = await self.list_fn(self.namespace, _request_timeout=self.timeout, **self.selectors)
                self.objects = {o.metadata.name: self.api.sanitize_for_serialization(o) for o in listing.items}
                version = listing.metadata.resource_version
                self.first_list.set()
                await self._notify()
                while True:  # watch from that version; a server-side timeout restarts it periodically
                    self.watches_started += 1
                    stream = watch.Watch().stream(
                        self.list_fn,
                        self.namespace,
                        resource_version=version,
                        timeout_seconds=300,
                        _request_timeout=330,
                        **self.selectors,
                    )
                    async with stream as events:
                        async for event in events:
                            obj = self.api.sanitize_for_serialization(event["object"])
                            name = obj["metadata"]["name"]
                            version = obj["metadata"].get("resourceVersion", version)
                            if event["type"] == "DELETED":
                                self.objects.pop(name, None)
                            else:
                                self.objects[name] = obj
                            await self._notify()
                    backoff = 0.5
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our version is too old; re-list at once
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception:  # noqa: BLE001 - network trouble: back off and re-list
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        async with self.changed:
            return await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
