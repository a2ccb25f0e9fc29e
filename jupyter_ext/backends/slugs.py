"""Kubernetes names and label values from arbitrary text: always valid, never colliding.

The rule (after kubespawner's slugs.py): text that is already valid, and contains no
``--``, is used as it is. Anything else (uppercase, spaces, slashes, too long) becomes a
readable cleaned-up prefix, then ``---``, then 8 hex digits of the SHA-256 of the
*original* text. So

- an unchanged result never contains ``--`` while a changed one always contains ``---``:
  the two kinds cannot meet;
- two changed results are equal only if the hashes of two different texts agree;
- the same text always gives the same name, so a name can be computed again after a
  restart instead of being stored.

`job_name` joins several parts and always hashes them together: joining is ambiguous
(``("a-b", "c")`` and ``("a", "b-c")``), so it never relies on the parts alone.
"""

from __future__ import annotations

import hashlib
import re

MAX_LENGTH = 63  # DNS-1123 labels and label values
HASH_LENGTH = 8
_SEPARATOR = "---"

# RFC 1035 label: what Kubernetes requires of Service names and the strictest of its name rules.
_DNS_LABEL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_NOT_NAME = re.compile(r"[^a-z0-9]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._]+")


def is_dns_label(text: str, max_length: int = MAX_LENGTH) -> bool:
    """Whether `text` is a valid object name: a-z, 0-9 and '-', starts with a letter, ends alnum."""
    return 0 < len(text) <= max_length and _DNS_LABEL.fullmatch(text) is not None


def is_label_value(text: str) -> bool:
    """Whether `text` is a valid label value (it may be empty)."""
    return len(text) <= MAX_LENGTH and _LABEL_VALUE.fullmatch(text) is not None


def _digest(*parts: str) -> str:
    # 0xFF never occurs in UTF-8, so it separates parts unambiguously.
    data = b"\xff".join(p.encode("utf-8", "surrogatepass") for p in parts)
    return hashlib.sha256(data).hexdigest()[:HASH_LENGTH]


def _clean(text: str, max_length: int) -> str:
    """Lowercase alnum runs joined by single '-', at most `max_length` long; may be empty."""
    return _NOT_NAME.sub("-", text.lower()).strip("-")[:max_length].rstrip("-")


def safe_slug(text: str, max_length: int = MAX_LENGTH) -> str:
    """A valid DNS-1123 (RFC 1035) label for `text`: `text` itself when it already is one."""
    room = max_length - len(_SEPARATOR) - HASH_LENGTH
    if room < 1:
        raise ValueError(f"cannot make names shorter than {len(_SEPARATOR) + HASH_LENGTH + 1} characters")
    if "--" not in text and is_dns_label(text, max_length):
        return text
    base = _clean(text, max_length)
    if base and not base[0].isalpha():
        base = "x-" + base
    base = base[:room].rstrip("-") or "x"
    return f"{base}{_SEPARATOR}{_digest(text)}"


def label_value(text: str) -> str:
    """A valid label value for `text` (case kept): `text` itself when it already is one."""
    if "--" not in text and is_label_value(text):
        return text
    room = MAX_LENGTH - len(_SEPARATOR) - HASH_LENGTH
    base = _NOT_LABEL.sub("-", text).lstrip("-._")[:room].rstrip("-") or "x"
    return f"{base}{_SEPARATOR}{_digest(text)}"


def job_name(job_id: str, step: str, attempt: int, prefix: str = "jx") -> str:
    """The Kubernetes Job name of one step attempt, e.g. ``jx-3f2a9c1b7d4e-train-model-v2-1-5d41402a``.

    Readable job and step parts for `kubectl get jobs`, the attempt number, and a hash of
    all three raw values, which alone keeps distinct attempts apart.
    """
    if attempt < 0 or attempt >= 10**9:
        raise ValueError(f"attempt {attempt} is out of range")
    if not is_dns_label(prefix, 16) or "--" in prefix:
        raise ValueError(f"prefix {prefix!r} must be a short DNS label")
    tail = f"{attempt}-{_digest(job_id, step, str(attempt))}"
    room = MAX_LENGTH - len(prefix) - len(tail) - 2  # the '-' after the prefix and before the tail
    job_part = _clean(job_id, 16)
    step_part = _clean(step, room - len(job_part) - 1)
    middle = "-".join(p for p in (job_part, step_part) if p)
    return f"{prefix}-{middle}-{tail}" if middle else f"{prefix}-{tail}"
