"""One error tree for the whole service; each error carries its HTTP status."""

from __future__ import annotations


class TorchError(Exception):
    """Base of every error the service reports to a user."""

    status = 500
    title = "Internal error"


class InvalidInput(TorchError):
    status = 422
    title = "Invalid input"


class NotFound(TorchError):
    status = 404
    title = "Not found"


class Conflict(TorchError):
    status = 409
    title = "Conflict"
