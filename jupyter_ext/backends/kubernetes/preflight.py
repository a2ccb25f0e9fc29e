"""Admission before anything is stored: may this server run Jobs here (RBAC), can some node ever fit
each step (allocatable), would the namespace's ResourceQuotas admit it. A refusal is a
ValidationError naming the step and what to change, so the user hears it at submission rather
than from a pod that waits forever.

The RBAC checks are the verbs of `rbac.RULES` (the Role the hub creates and docs/kubernetes.md
shows), asked as SelfSubjectAccessReviews at most every 5 minutes; the node sizes are cached
for 30 s. Listing nodes or quotas that this account may not read skips that check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ... import quantity
from ...errors import ValidationError
from .rbac import access_checks
from .resources import allocatable, show_amount

ACCESS_TTL = 300.0
NODES_TTL = 30.0


class Preflight:
    """The admission checks of one backend, with their caches."""

    def __init__(self, api: Any, core: Any, namespace: str, gpu_resource: str, request_timeout: float) -> None:
        self.api = api
        self.core = core
        self.namespace = namespace
        self.gpu_resource = gpu_resource
        self.request_timeout = request_timeout
        self.access_checked_until = 0.0
        self.nodes_cache: tuple[float, list[dict[str, float]]] | None = None
        self.lock = asyncio.Lock()

    async def run(self, needs: dict[str, dict[str, Any]], *, configmaps: bool) -> None:
        """`needs`: step -> what it asks for (`resources.resource_summary`), in submission order."""
        first = next(iter(needs))
        async with self.lock:  # concurrent submissions share one check
            if time.monotonic() > self.access_checked_until:  # RBAC rarely changes
                await self.access(first, configmaps=configmaps)
                self.access_checked_until = time.monotonic() + ACCESS_TTL
            await self.nodes(needs)
        await self.quotas(needs)

    async def access(self, step: str, *, configmaps: bool) -> None:
        from kubernetes_asyncio import client

        auth = client.AuthorizationV1Api(self.api)
        checks = access_checks(configmaps=configmaps)
        reviews = await asyncio.gather(
            *(
                auth.create_self_subject_access_review(
                    {"spec": {"resourceAttributes": check.attributes(self.namespace)}},  # type: ignore[arg-type]
                    _request_timeout=self.request_timeout,
                )
                for check in checks
            )
        )
        for check, review in zip(checks, reviews, strict=True):
            if not review.status.allowed:
                raise ValidationError(
                    f"step {step!r} cannot run: this server may not {check.verb} {check.what} in namespace "
                    f"{self.namespace!r} (Kubernetes RBAC); ask your administrator to bind the jupyter-ext Role "
                    "(docs/kubernetes.md)",
                    step=step,
                )

    async def nodes(self, needs: dict[str, dict[str, Any]]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        if self.nodes_cache is not None and time.monotonic() - self.nodes_cache[0] < NODES_TTL:
            sizes = self.nodes_cache[1]
        else:
            try:
                nodes = (await self.core.list_node(_request_timeout=self.request_timeout)).items
            except ApiException as exc:
                if exc.status == 403:
                    return  # may not list nodes (a user namespace): the scheduler will say it instead
                raise
            sizes = [
                allocatable(n.status.allocatable or {}, self.gpu_resource) for n in nodes if not n.spec.unschedulable
            ]
            self.nodes_cache = (time.monotonic(), sizes)
        for step, need in needs.items():
            if any(all(size.get(k, 0) >= v for k, v in need.items() if k in size) for size in sizes):
                continue
            parts = []
            for key, value in need.items():
                best = max((size.get(key, 0) for size in sizes), default=0)
                if value > best:
                    parts.append(f"{show_amount(key, value)} but the largest node offers {show_amount(key, best)}")
            raise ValidationError(
                f"step {step!r} can never be scheduled: it asks for {'; '.join(parts) or 'more than any node has'}; "
                f"lower its resources (e.g. `gpu:`/`memory:` tags)",
                step=step,
            )

    async def quotas(self, needs: dict[str, dict[str, Any]]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            quotas = (await self.core.list_namespaced_resource_quota(self.namespace)).items
        except ApiException as exc:
            if exc.status == 403:
                return
            raise
        keys: dict[str, tuple[str, ...]] = {
            "cpu": ("requests.cpu", "cpu", "limits.cpu"),
            "memory": ("requests.memory", "memory", "limits.memory"),
        }
        keys[self.gpu_resource] = (f"requests.{self.gpu_resource}",)
        parse = {"cpu": quantity.parse_cpu, "memory": quantity.parse_memory}
        for quota in quotas:
            hard, used = quota.status.hard or {}, quota.status.used or {}
            for step, need in needs.items():
                for key, value in need.items():
                    for qkey in keys.get(key, ()):
                        if qkey not in hard:
                            continue
                        convert = parse.get(key, lambda v, f: int(v))

                        def amount(text: str, convert: Callable[..., float] = convert, qkey: str = qkey) -> float:
                            return 0.0 if str(text).strip() in ("", "0") else convert(text, qkey)

                        left = amount(hard[qkey]) - amount(used.get(qkey, "0"))
                        if value > left:
                            raise ValidationError(
                                f"step {step!r} asks for {show_amount(key, value)} but ResourceQuota "
                                f"{quota.metadata.name!r} in namespace {self.namespace!r} has "
                                f"{show_amount(key, left)} left of {qkey}={hard[qkey]}; lower the step's "
                                "resources or wait for other jobs",
                                step=step,
                            )
