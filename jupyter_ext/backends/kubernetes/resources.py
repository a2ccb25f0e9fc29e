"""A step's resources as Kubernetes sees them: the container's requests and limits, and the numbers
the preflight compares with nodes and quotas. Pure functions, no client library."""

from __future__ import annotations

from typing import Any

from ... import quantity
from ...errors import ValidationError
from ...models import Resources


def _cpu_quantity(cores: float) -> str:
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _parsed_limit(parse: Any, value: str, key: str, step: str) -> Any:
    try:
        return parse(value, f"resources.extra_limits.{key}")
    except ValidationError as exc:
        raise ValidationError(f"step {step!r}: {exc.message}", step=step, field=exc.field) from None


def is_gpu_key(key: str, gpu_resource: str) -> bool:
    return key == gpu_resource or key.endswith("/gpu")


def container_resources(resources: Resources, gpu_resource: str, step: str = "") -> dict[str, dict[str, str]]:
    """Requests and limits of the step container, as Kubernetes quantity strings.

    cpu and memory are requested and limited at the step's value (memory cannot be
    overcommitted safely, and a fixed cpu share keeps timings repeatable). GPUs are a limit
    under `gpu_resource`; a GPU limit written under any vendor's key in `extra_limits` (Kale's
    ``limit:nvidia.com/gpu:2``) counts as the step's GPUs, so a notebook written for one
    vendor runs on another's cluster. Other `extra_limits` are passed through as limits (an
    extended resource's request defaults to its limit); a cpu or memory one below the
    step's request is an error.
    """
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    cores = resources.cpu_cores()
    if cores is not None:
        requests["cpu"] = limits["cpu"] = _cpu_quantity(cores)
    memory = resources.memory_bytes()
    if memory is not None:
        requests["memory"] = limits["memory"] = quantity.format_bytes(memory)
    gpus = resources.gpu
    for key, value in resources.extra_limits.items():
        if is_gpu_key(key, gpu_resource):
            gpus = gpus or _parsed_limit(quantity.parse_gpu, value, key, step)
        elif key == "cpu":
            limit_cores = _parsed_limit(quantity.parse_cpu, value, key, step)
            if cores is not None and cores > limit_cores:
                raise ValidationError(
                    f"step {step!r}: limit:cpu:{value} is below cpu:{resources.cpu}; raise the limit or lower cpu",
                    step=step,
                    field="resources.extra_limits.cpu",
                )
            limits["cpu"] = _cpu_quantity(limit_cores)
        elif key == "memory":
            limit_bytes = _parsed_limit(quantity.parse_memory, value, key, step)
            if memory is not None and memory > limit_bytes:
                raise ValidationError(
                    f"step {step!r}: limit:memory:{value} is below memory:{resources.memory}; "
                    "raise the limit or lower memory",
                    step=step,
                    field="resources.extra_limits.memory",
                )
            limits["memory"] = quantity.format_bytes(limit_bytes)
        else:
            limits[key] = value
    if gpus:
        limits[gpu_resource] = str(gpus)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def resource_summary(resources: Resources, gpu_resource: str, step: str = "") -> dict[str, float | int]:
    """What the step's pod requests, as numbers keyed by resource name, for preflight checks.

    ``{"cpu": 4.0, "memory": 17179869184, "nvidia.com/gpu": 2}``: cpu in cores (float), memory
    and every other resource as an int (bytes, or a count). Only what the step asks for is
    present; an extended resource's request is its limit.
    """
    spec = container_resources(resources, gpu_resource, step)
    effective = {**spec.get("limits", {}), **spec.get("requests", {})}
    summary: dict[str, float | int] = {}
    for key, value in effective.items():
        if key == "cpu":
            summary[key] = quantity.parse_cpu(value)
        elif key == gpu_resource:
            summary[key] = int(value)
        elif key == "memory":
            summary[key] = quantity.parse_memory(value)
        else:
            summary[key] = _parsed_limit(quantity.parse_memory, value, key, step)
    return summary


def show_amount(key: str, value: float) -> str:
    """An amount of a resource in words, as the preflight's messages say it (`16Gi memory`)."""
    if key == "memory":
        return f"{value / 2**30:.3g}Gi memory"
    if key == "cpu":
        return f"{value:g} CPU"
    return f"{value:g} {key}"


def allocatable(alloc: dict[str, Any], gpu_resource: str) -> dict[str, float]:
    """A node's allocatable cpu (cores), memory (bytes) and GPUs; an unreadable quantity counts as none."""

    def parsed(parse: Any, key: str) -> float:
        try:
            return float(parse(alloc[key], key)) if key in alloc else 0.0
        except ValidationError:
            return 0.0

    return {
        "cpu": parsed(quantity.parse_cpu, "cpu"),
        "memory": parsed(quantity.parse_memory, "memory"),
        gpu_resource: float(alloc.get(gpu_resource, 0) or 0),
    }
