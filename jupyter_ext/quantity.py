"""Parsers for the values users type: Kubernetes quantities, GPU counts and durations.

Each parser returns a plain number or raises `ValidationError` naming the field and
showing what a valid value looks like. Nothing else escapes them, whatever the input
(tests/unit/test_quantity.py checks that with hypothesis).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import ValidationError, shown

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "K": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGTPE]i|[numkKMGTPE]?)\s*$")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)")
_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

# Guard against absurd inputs (a 10^18 exponent is legal syntax but no machine has it).
_MAX_BYTES = 2**70


def _quantity(value: object, field: str, example: str) -> Decimal:
    if isinstance(value, bool):
        raise ValidationError(f"{field}: expected a quantity such as {example!r}, got {shown(value)}", field=field)
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationError(f"{field}: {shown(value)} is not a number; use e.g. {example!r}", field=field)
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValidationError(
            f"{field}: expected a quantity such as {example!r}, got {type(value).__name__}", field=field
        )
    if text.strip().startswith("-"):
        raise ValidationError(
            f"{field}: {shown(text)} is negative; use a positive value such as {example!r}", field=field
        )
    match = _QUANTITY.match(text)
    if not match:
        raise ValidationError(
            f"{field}: {shown(text)} is not a Kubernetes quantity; use e.g. {example!r} "
            "(suffixes Ki, Mi, Gi, Ti or k, M, G, T, or m for thousandths)",
            field=field,
        )
    number, suffix = match.groups()
    try:
        amount = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the regex only admits decimals
        raise ValidationError(f"{field}: {shown(text)} is not a number", field=field) from None
    scale = Decimal(_BINARY[suffix]) if suffix in _BINARY else _DECIMAL[suffix]
    return amount * scale


def parse_memory(value: object, field: str = "memory") -> int:
    """'16Gi' -> 17179869184 bytes. Fractions of a byte round up."""
    amount = _quantity(value, field, "16Gi")
    if amount <= 0:
        raise ValidationError(f"{field}: {shown(value)} must be more than zero; use e.g. '16Gi'", field=field)
    if amount > _MAX_BYTES:
        raise ValidationError(f"{field}: {shown(value)} is larger than any machine; use e.g. '16Gi'", field=field)
    whole = int(amount.to_integral_value(rounding="ROUND_CEILING"))
    return whole


def parse_cpu(value: object, field: str = "cpu") -> float:
    """'500m' -> 0.5 cores, '4' -> 4.0. Kubernetes allows at most millicore precision."""
    amount = _quantity(value, field, "4")
    if amount <= 0:
        raise ValidationError(f"{field}: {shown(value)} must be more than zero; use e.g. '4' or '500m'", field=field)
    if amount > 100000:
        raise ValidationError(f"{field}: {shown(value)} is more cores than any machine has; use e.g. '4'", field=field)
    if amount * 1000 != (amount * 1000).to_integral_value():
        raise ValidationError(f"{field}: {shown(value)} is finer than a millicore; use e.g. '500m'", field=field)
    return float(amount)


def parse_gpu(value: object, field: str = "gpu") -> int:
    """A whole, non-negative number of GPUs."""
    if isinstance(value, bool):
        raise ValidationError(f"{field}: expected a whole number of GPUs such as 2, got {shown(value)}", field=field)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,8}\s*", value):
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise ValidationError(f"{field}: {shown(value)} is not a whole number of GPUs; use e.g. 2", field=field)
    if number < 0:
        raise ValidationError(f"{field}: {shown(value)} is negative; use 0 or more GPUs", field=field)
    if number > 1024:
        raise ValidationError(f"{field}: {shown(value)} GPUs is more than any node has", field=field)
    return number


def unit_seconds(text: str, pattern: re.Pattern[str], units: dict[str, float]) -> float | None:
    """Seconds of `text` made only of `pattern`'s (number, unit) runs ('1h30m'), else None."""
    parts = pattern.findall(text)
    if not parts or pattern.sub("", text).strip():
        return None
    return sum(float(n) * units[u] for n, u in parts)


def parse_duration(value: object, field: str = "timeout") -> float:
    """'2h', '90m', '1h30m', '45s', or a number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValidationError(f"{field}: expected a duration such as '2h' or '90m', got {shown(value)}", field=field)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValidationError(f"{field}: {shown(value)} must be between 1s and 366d", field=field) from None
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
            seconds = float(text)
        else:
            found = unit_seconds(text, _DURATION, _DURATION_UNITS)
            if found is None:
                raise ValidationError(
                    f"{field}: {shown(value)} is not a duration; use e.g. '2h', '90m', '1h30m' or '45s'", field=field
                )
            seconds = found
    else:
        raise ValidationError(f"{field}: expected a duration such as '2h', got {type(value).__name__}", field=field)
    if not seconds > 0 or seconds > 366 * 86400:
        raise ValidationError(f"{field}: {shown(value)} must be between 1s and 366d", field=field)
    return seconds


def parse_retries(value: object, field: str = "retries") -> int:
    """A whole number of retries, 0 to 100."""
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,8}\s*", value))
    ):
        raise ValidationError(f"{field}: {shown(value)} is not a whole number of retries; use e.g. 2", field=field)
    number = int(value)
    if number < 0:
        raise ValidationError(f"{field}: {shown(value)} is not a whole number of retries; use 0 or more", field=field)
    if number > 100:
        raise ValidationError(f"{field}: {shown(value)} retries is too many; use at most 100", field=field)
    return number


def format_bytes(n: int) -> str:
    """17179869184 -> '16Gi' (exact binary units when possible, else bytes)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if n % _BINARY[suffix] == 0 and n >= _BINARY[suffix]:
            return f"{n // _BINARY[suffix]}{suffix}"
    return str(n)
