"""The one error a handler (or the server state it asks) raises to answer with a JSON reason."""

from __future__ import annotations

from sanic.exceptions import SanicException


class APIError(SanicException):
    """An error answered as ``{"error": {"type", "message"}}``."""

    def __init__(
        self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, status_code=status, headers=headers)
        self.error_type = error_type
