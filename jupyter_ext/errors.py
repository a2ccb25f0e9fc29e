"""One exception hierarchy for everything a user can get wrong or ask for that does not exist.

Handlers map these to HTTP once (handlers.py); the CLI and the magic print `str(exc)`.
Every message says what to change: the cell, step or field is part of the text and also
available as attributes for the UI.
"""

from __future__ import annotations

from typing import Any


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
        body: dict[str, Any] = {"message": self.message, "reason": self.reason}
        for key in ("field", "step", "cell"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.details:
            body["details"] = self.details
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


class BackendError(JupyterExtError):
    """The backend could not do what was asked (a process would not start, an API refused)."""

    status = 503
    reason = "Service Unavailable"
