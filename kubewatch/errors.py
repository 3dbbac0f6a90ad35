"""One exception tree for everything kubewatch raises."""

from __future__ import annotations


class KubeError(Exception):
    """Base of every kubewatch error."""


class ConfigError(KubeError):
    """The connection settings (kubeconfig, in-cluster files, URL) are unusable."""


class ApiError(KubeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if reason or message else str(status))

    @classmethod
    def from_status(cls, status_obj: object, http_status: int = 0) -> ApiError:
        """Build the right subclass from a metav1.Status body (or anything else)."""
        code, reason, message = http_status, "", ""
        if isinstance(status_obj, dict):
            raw_code = status_obj.get("code")
            if isinstance(raw_code, int):
                code = raw_code
            reason = str(status_obj.get("reason") or "")
            message = str(status_obj.get("message") or "")
        err_cls: type[ApiError] = {410: GoneError, 401: UnauthorizedError}.get(code, ApiError)
        return err_cls(code, reason, message)


class GoneError(ApiError):
    """410: the resourceVersion (or continue token) is older than the server's history."""


class UnauthorizedError(ApiError):
    """401: the credentials were refused, even after re-reading them."""


class ProtocolError(KubeError):
    """The server sent something the protocol does not allow (e.g. a non-event on a watch)."""


class ManifestError(KubeError):
    """A manifest file could not be used; names the file and document (0-based)."""

    def __init__(self, path: str, document: int | None, message: str) -> None:
        self.path = path
        self.document = document
        self.message = message
        where = path if document is None else f"{path}: document {document}"
        super().__init__(f"{where}: {message}")


class InvalidObject(KubeError, ValueError):
    """An object's JSON does not have the shape its kind requires."""


class SelectorError(KubeError, ValueError):
    """A label or field selector does not parse."""
