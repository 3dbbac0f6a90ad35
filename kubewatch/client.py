"""A small asyncio client for the parts of the Kubernetes API kubewatch uses.

Lists are read page by page (``limit``/``continue``) and parsed with the stdlib json module;
watches are read as a stream of newline-separated JSON events. Every request carries a total
timeout. A 401 re-reads the credentials once and retries, which is how rotated service
account tokens are picked up even when the file's stat did not change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from kubewatch.connection import ClusterConfig
from kubewatch.errors import ApiError, ProtocolError

log = logging.getLogger(__name__)

USER_AGENT = "portolan-kubewatch/0.1"


class ApiClient:
    """A small client of the Kubernetes API: lists, watches and requests over one aiohttp session."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.config = config
        # Each open watch holds a connection for minutes: the limit must cover them all.
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self._ssl = config.ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else True, limit=self.max_connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                # Plain JSON decoding needs no cookie jar and no automatic decompression tricks.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        auth = self.config.auth.header()
        if auth:
            headers["Authorization"] = auth
        return headers

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        session = self._get_session()
        url = self.config.host + path
        client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=self.connect_timeout)
        extra: dict[str, Any] = {}
        if self.config.tls_server_name:
            extra["server_hostname"] = self.config.tls_server_name
        for attempt in (0, 1):
            resp = await session.request(
                method,
                url,
                params=params,
                data=data,
                headers=self._headers(headers),
                timeout=client_timeout,
                **extra,
            )
            try:
                if resp.status == 401 and attempt == 0 and self.config.auth.refresh():
                    log.info("kubewatch: credentials were refused; retrying with the re-read ones")
                    continue
                if resp.status >= 400:
                    body = await resp.read()
                    raise self._error(resp.status, body)
                yield resp
                return
            finally:
                resp.release()

    @staticmethod
    def _error(status: int, body: bytes) -> ApiError:
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = {"message": body[:200].decode("utf-8", "replace")}
        if not isinstance(parsed, dict):
            parsed = {}
        # The HTTP status is authoritative; the body (a metav1.Status) gives reason and message.
        return ApiError.from_status({**parsed, "code": status}, status)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """One JSON request (GET/POST/PUT/PATCH/DELETE); returns the decoded body.

        For consumers that write: ingress status updates, leases, events.
        """
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._open(
            method, path, params=params, data=data, headers=headers, timeout=timeout or self.request_timeout
        ) as resp:
            raw = await resp.read()
        return json.loads(raw) if raw else None

    async def list_page_raw(self, path: str, params: Mapping[str, str], timeout: float | None = None) -> bytes:
        """One page of a list, undecoded (the caller decides when to pay for parsing)."""
        async with self._open("GET", path, params=params, timeout=timeout or self.request_timeout) as resp:
            return await resp.read()

    @asynccontextmanager
    async def watch(
        self, path: str, params: Mapping[str, str], timeout: float
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open a watch; yields an async iterator of decoded events."""
        async with self._open("GET", path, params={**params, "watch": "true"}, timeout=timeout) as resp:
            yield _events(resp)


def decode_list(raw: bytes, path: str) -> dict[str, Any]:
    page = json.loads(raw)
    if not isinstance(page, dict) or not isinstance(page.get("items", []), list):
        raise ProtocolError(f"GET {path}: not a list response")
    return page


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    # Split the stream on newlines ourselves: StreamReader.readline() refuses lines longer
    # than its buffer (64 KiB by default), and a ConfigMap can be 1 MiB.
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        buf += chunk
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buf[start:end])
            start = end + 1
            if line.strip():
                yield _decode_event(line)
        if start:
            del buf[:start]
    if buf.strip():
        yield _decode_event(bytes(buf))


def _decode_event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"undecodable watch event: {line[:100]!r}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ProtocolError(f"not a watch event: {line[:100]!r}")
    return event
