"""API errors as the API server reports them: a metav1.Status body with an HTTP code."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
    504: "Timeout",
}


class StatusError(Exception):
    """An API error, answered as a Kubernetes Status object with this HTTP code."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def response(self) -> web.Response:
        return web.Response(status=self.code, body=json.dumps(self.status()).encode(), content_type="application/json")


def not_found(plural: str, name: str) -> StatusError:
    return StatusError(404, f'{plural} "{name}" not found', details={"name": name, "kind": plural})


def gone(message: str) -> StatusError:
    return StatusError(410, message, "Expired")


def conflict(plural: str, name: str) -> StatusError:
    return StatusError(
        409,
        f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        {"name": name, "kind": plural},
    )
