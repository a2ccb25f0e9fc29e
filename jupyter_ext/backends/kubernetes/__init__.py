"""The Kubernetes backend, one concern per module (see `backend`'s docstring for the map)."""

from ..slugs import job_name
from .backend import KubernetesBackend, KubernetesHandle, parse_selector
from .podlog import RESTART_STRIDE, LogRead, plan_log_reads
from .podstatus import container_waiting, restart_count
from .rbac import ROLE_RULES
from .reflector import Reflector

__all__ = [
    "RESTART_STRIDE",
    "ROLE_RULES",
    "KubernetesBackend",
    "KubernetesHandle",
    "LogRead",
    "Reflector",
    "container_waiting",
    "job_name",
    "parse_selector",
    "plan_log_reads",
    "restart_count",
]
