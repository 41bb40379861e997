"""One error tree for the whole service; each error carries its HTTP status."""

from __future__ import annotations


class TorchError(Exception):
    """Base of every error the service reports to a user."""

    status = 500
    title = "Internal error"


class InvalidInput(TorchError):
    status = 422
    title = "Invalid input"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Unauthorized(TorchError):
    status = 401
    title = "Not authenticated"


class Forbidden(TorchError):
    status = 403
    title = "Forbidden"


class NotFound(TorchError):
    status = 404
    title = "Not found"


class Conflict(TorchError):
    status = 409
    title = "Conflict"


class TooManyRequests(TorchError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
