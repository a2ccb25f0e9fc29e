"""One exception hierarchy for everything a user can get wrong or ask for that does not exist.

Handlers map these to HTTP once (handlers.py); the CLI and the magic print `str(exc)`.
Every message says what to change: the cell, step or field is part of the text and also
available as attributes for the UI.
"""

from __future__ import annotations

from typing import Any

#: How much of a value a message repeats back (a 10 MB string is not worth echoing).
SHOWN_CHARS = 200
#: The most a message or a detail's message carries (a safety net over every echoed value).
MESSAGE_CHARS = 4000


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` for a message, cut to `limit` characters: 'aaaa…' …(N characters)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes, list, dict, tuple)) else len(text)
    return f"{text[:limit]}…({size} characters)" if isinstance(value, (str, bytes)) else f"{text[:limit]}…"


def cut(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text`, cut to `limit` characters with the length it had."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} characters)"


class JupyterExtError(Exception):
    """Base of all errors we raise on purpose. `status` is the HTTP status it maps to."""

    status = 400
    reason = "Bad Request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        step: str | None = None,
        cell: int | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.step = step
        self.cell = cell
        self.details = details or []

    def to_dict(self) -> dict[str, Any]:
        """The JSON body clients get: always `message`, plus whatever locates the problem."""
        body: dict[str, Any] = {"message": cut(self.message), "reason": self.reason}
        for key in ("field", "step", "cell"):
            value = getattr(self, key)
            if value is not None:
                body[key] = cut(value, SHOWN_CHARS) if isinstance(value, str) else value
        if self.details:
            body["details"] = [
                {**d, "message": cut(d["message"])} if isinstance(d.get("message"), str) else d for d in self.details
            ]
        return body


class ValidationError(JupyterExtError):
    """Input that cannot be accepted as given (a field, a tag, a parameter)."""


class NotFound(JupyterExtError):
    status = 404
    reason = "Not Found"


class Conflict(JupyterExtError):
    status = 409
    reason = "Conflict"


class Forbidden(JupyterExtError):
    status = 403
    reason = "Forbidden"


class TooLarge(JupyterExtError):
    """A request body over the server's limit (refused before it is read)."""

    status = 413
    reason = "Payload Too Large"


class BackendError(JupyterExtError):
    """The backend could not do what was asked (a process would not start, an API refused)."""

    status = 503
    reason = "Service Unavailable"
