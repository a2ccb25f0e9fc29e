"""What the Kubernetes backend may do in the jobs' namespace: one table, read by both the Role that
`jupyter_ext.hub` creates for each user (and docs/kubernetes.md shows, a test keeps them equal)
and the backend's RBAC preflight, which asks a SelfSubjectAccessReview for each verb it needs.

A leaf: no client library, nothing of the backend, so the hub module imports it without a cycle.
SelfSubjectAccessReviews themselves are cluster-scoped, so no Role can grant them: Kubernetes
allows them to every authenticated account (ClusterRole system:basic-user).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: When the preflight asks for a rule: `always`; `configmap`, only when step inputs travel in a
#: ConfigMap (no shared paths, no artifact store); `never`, for what the backend does without
#: (a ResourceQuota it may not read is simply not checked).
Needed = Literal["always", "configmap", "never"]


@dataclass(frozen=True)
class Rule:
    """One rule of the Role: a resource (`pods/log` for a subresource) of an API group, its verbs."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    needed: Needed
    why: str

    def role_rule(self) -> dict[str, list[str]]:
        return {"apiGroups": [self.group], "resources": [self.resource], "verbs": list(self.verbs)}


RULES: Final = (
    Rule("batch", "jobs", ("create", "get", "list", "watch", "delete"), "always", "one Job per step attempt"),
    Rule("", "pods", ("get", "list", "watch"), "always", "one watch on the pods of our Jobs"),
    Rule("", "pods/log", ("get",), "always", "the pod log is the event channel"),
    Rule("", "events", ("get", "list", "watch"), "always", "scheduling and image-pull problems"),
    Rule("", "configmaps", ("create", "get", "delete"), "configmap", "small step inputs"),
    Rule("", "resourcequotas", ("get", "list"), "never", "preflight: would a ResourceQuota admit the step"),
)

#: The Role's rules as Kubernetes writes them (the Role of docs/kubernetes.md).
ROLE_RULES: Final[list[dict[str, list[str]]]] = [rule.role_rule() for rule in RULES]


@dataclass(frozen=True)
class AccessCheck:
    """One SelfSubjectAccessReview of the preflight."""

    group: str
    resource: str
    subresource: str | None
    verb: str

    @property
    def what(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def attributes(self, namespace: str) -> dict[str, str]:
        attrs = {"namespace": namespace, "verb": self.verb, "group": self.group, "resource": self.resource}
        if self.subresource:
            attrs["subresource"] = self.subresource
        return attrs


def access_checks(*, configmaps: bool) -> list[AccessCheck]:
    """Every verb the backend cannot work without, in the table's order (so the first refused one
    named is the first a reader of the Role meets); ConfigMap verbs only when `configmaps`."""
    out = []
    for rule in RULES:
        if rule.needed == "never" or (rule.needed == "configmap" and not configmaps):
            continue
        resource, _, sub = rule.resource.partition("/")
        out += [AccessCheck(rule.group, resource, sub or None, verb) for verb in rule.verbs]
    return out
