"""Start the emulator as a subprocess and drive it from tests.

    async with Emulator(tmp_path) as emu:
        config = ClusterConfig.from_kubeconfig(emu.kubeconfig_path)
        await emu.create({"apiVersion": "v1", "kind": "Service", ...})
        await emu.restart()        # same port, same objects and resourceVersions
        await emu.force_gone()     # every watch gets 410, resumes too

The process listens on a free 127.0.0.1 port (chosen by the kernel at first start, reused on
restart). Readiness is the ``APIEMU READY`` line on its stdout, never a sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.apiemu.resources import BY_TYPE, Resource
from tests.apiemu.state import STATE_FORMAT, State

ROOT = Path(__file__).resolve().parents[2]
READY = "APIEMU READY "


class EmulatorError(Exception):
    """The emulator failed to start, or a helper request failed."""

    def __init__(self, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def resource_path(
    api_version: str,
    kind: str,
    namespace: str | None = None,
    name: str | None = None,
    *,
    all_namespaces: bool = False,
) -> str:
    """The URL path of a collection or object; a namespaced one defaults to "default"."""
    res: Resource = BY_TYPE[(api_version, kind)]
    base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced and not (all_namespaces and namespace is None):
        base += f"/namespaces/{namespace or 'default'}"
    base += f"/{res.plural}"
    return f"{base}/{name}" if name else base


def _locate(obj: dict[str, Any]) -> tuple[str, str, str | None, str]:
    meta = obj.get("metadata") or {}
    return obj["apiVersion"], obj["kind"], meta.get("namespace"), meta.get("name", "")


class Emulator:
    """The emulator as a subprocess: started, stopped, killed and driven from tests."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        tls: bool = False,
        tokens: Iterable[str] | None = None,
        bookmark_interval: float = 60.0,
        history_window: int = 10_000,
        default_watch_timeout: float = 1800.0,
        watch_gone_http: bool = False,
        state_file: str | os.PathLike[str] | None = None,
        persist: bool = True,
        start_timeout: float = 30.0,
        without_groups: Iterable[str] = (),
    ) -> None:
        """``without_groups``: API groups not served, as in a cluster without their CRDs."""
        self.without_groups = tuple(without_groups)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.tokens = list(tokens) if tokens else []
        self.bookmark_interval = bookmark_interval
        self.history_window = history_window
        self.default_watch_timeout = default_watch_timeout
        self.watch_gone_http = watch_gone_http
        self.state_path = Path(state_file) if state_file else self.workdir / "apiemu-state.ndjson"
        self.persist = persist
        self.start_timeout = start_timeout
        self.kubeconfig_path = self.workdir / "kubeconfig"
        self.log_path = self.workdir / "apiemu.log"
        self.tls_dir = self.workdir / "tls"
        self.port = 0
        self.url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def ca_path(self) -> Path | None:
        return self.tls_dir / "ca.crt" if self.tls else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.running:
            return
        args = [
            sys.executable, "-m", "tests.apiemu",
            "--port", str(self.port),
            "--state-file", str(self.state_path),
            "--history-window", str(self.history_window),
            "--bookmark-interval", str(self.bookmark_interval),
            "--default-watch-timeout", str(self.default_watch_timeout),
            "--exit-with-stdin",
        ]  # fmt: skip
        if not self.persist:
            args.append("--no-save")
        for token in self.tokens:
            args += ["--token", token]
        if self.tls:
            args += ["--tls-dir", str(self.tls_dir)]
        if self.watch_gone_http:
            args.append("--watch-gone-http")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "APIEMU_WITHOUT_GROUPS": ",".join(self.without_groups),
        }
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                stdin=asyncio.subprocess.PIPE,
            )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), self.start_timeout)
        except TimeoutError:
            await self.kill()
            raise EmulatorError(f"emulator not ready after {self.start_timeout}s; log:\n{self._log_tail()}") from None
        text = line.decode().strip()
        if not text.startswith(READY):
            await self.kill()
            raise EmulatorError(f"emulator failed to start ({text!r}); log:\n{self._log_tail()}")
        self.url = text[len(READY) :]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.write_kubeconfig()

    async def stop(self) -> None:
        """Graceful stop: the emulator compacts its state file (unless persist=False)."""
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        """Abrupt stop (SIGKILL). The emulator journals each write as it acknowledges it, so
        a start afterwards still has every object and resourceVersion."""
        await self._end(signal.SIGKILL)

    async def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.returncode is None:
                proc.send_signal(sig)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:  # a SIGTERM not obeyed in time
                    proc.kill()
                    await proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
        await self._close_session()

    async def restart(self) -> None:
        """Stop and start on the same port with the same objects and resourceVersions. The
        new process has no watch history: resumes from older rvs get 410, as after a real
        API server restart."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def edit_state(self, edit: Callable[[list[dict[str, Any]]], None]) -> None:
        """While stopped: change the saved objects (as if written while the server was
        down). Changed or added objects get fresh resourceVersions."""
        if self.running:
            raise EmulatorError("edit_state needs the emulator stopped")
        saved = State()
        saved.load(self.state_path)  # replays a journal left by a killed emulator, too
        objs = [stored.obj() for by_key in saved.objects.values() for stored in by_key.values()]
        before = {json.dumps(o, sort_keys=True) for o in objs}
        edit(objs)
        rv = saved.rv
        for obj in objs:
            if json.dumps(obj, sort_keys=True) not in before:
                rv += 1
                obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
        rv += 1  # deletions take a revision too
        header = {"apiemuState": STATE_FORMAT, "resourceVersion": rv}
        text = "\n".join([json.dumps(header), *(json.dumps(o) for o in objs)]) + "\n"
        self.state_path.write_text(text)

    # ------------------------------------------------------------------ kubeconfig

    def write_kubeconfig(
        self, path: str | os.PathLike[str] | None = None, token: str | None = None, context: str = "apiemu"
    ) -> Path:
        target = Path(path) if path else self.kubeconfig_path
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_path is not None:
            cluster["certificate-authority"] = str(self.ca_path)
        user: dict[str, Any] = {}
        token = token or (self.tokens[0] if self.tokens else None)
        if token:
            user["token"] = token
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": user}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
            "current-context": context,
        }
        target.write_text(yaml.safe_dump(config))
        return target

    # ------------------------------------------------------------------ HTTP

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_ctx: ssl.SSLContext | bool = True
            if self.ca_path is not None:
                ssl_ctx = ssl.create_default_context(cafile=str(self.ca_path))
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx))
        return self._session

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """A raw request; returns (HTTP status, decoded JSON body or None)."""
        headers = {}
        token = token or (self.tokens[0] if self.tokens else None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        async with self._get_session().request(
            method,
            self.url + path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.read()
            return resp.status, (json.loads(raw) if raw.strip() else None)

    async def _ok(self, method: str, path: str, **kw: Any) -> Any:
        status, body = await self.request(method, path, **kw)
        if status >= 300:
            message = body.get("message") if isinstance(body, dict) else body
            raise EmulatorError(f"{method} {path}: {status} {message}", status, body)
        return body

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        api_version, kind, ns, _ = _locate(obj)
        return await self._ok("POST", resource_path(api_version, kind, ns), body=obj)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        api_version, kind, ns, name = _locate(obj)
        return await self._ok("PUT", resource_path(api_version, kind, ns, name), body=obj)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create, or replace what exists (unconditionally)."""
        try:
            return await self.create(obj)
        except EmulatorError as exc:
            if exc.status != 409:
                raise
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}
        return await self.replace(obj)

    async def update_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        api_version, kind, ns, name = _locate(obj)
        return await self._ok("PUT", resource_path(api_version, kind, ns, name) + "/status", body=obj)

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        ctype = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        path = resource_path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return await self._ok("PATCH", path, body=patch, content_type=ctype)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self._ok("DELETE", resource_path(api_version, kind, namespace, name))

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        status, body = await self.request("GET", resource_path(api_version, kind, namespace, name))
        if status == 404:
            return None
        if status >= 300:
            raise EmulatorError(f"GET {kind} {name}: {status}", status, body)
        return body

    async def list(self, api_version: str, kind: str, namespace: str | None = None, **params: str) -> dict[str, Any]:
        """List one namespace, or all when ``namespace`` is None."""
        path = resource_path(api_version, kind, namespace, all_namespaces=True)
        return await self._ok("GET", path, params=params or None)

    # ------------------------------------------------------------------ controls

    async def state(self) -> dict[str, Any]:
        return await self._ok("GET", "/_emu/state")

    async def compact(self, force: bool = False) -> None:
        await self._ok("POST", "/_emu/compact", body={"force": force})

    async def force_gone(self, mode: str = "event") -> None:
        """Compact past the current rv and end every watch: "event" sends an ERROR 410 on
        each stream (the real server's way), "close" just closes them."""
        await self._ok("POST", "/_emu/gone", body={"mode": mode})

    async def drop_watches(self) -> int:
        return (await self._ok("POST", "/_emu/drop-watches"))["dropped"]

    async def send_bookmarks(self) -> None:
        await self._ok("POST", "/_emu/bookmark")

    async def set_tokens(self, tokens: Iterable[str] | None) -> None:
        """Accept exactly these bearer tokens from now on (None: no authentication)."""
        self.tokens = list(tokens) if tokens is not None else []
        await self._ok("POST", "/_emu/config", body={"tokens": self.tokens if tokens is not None else None})

    async def configure(self, **settings: Any) -> None:
        """Change settings: bookmark_interval, gone_as_http, history_window,
        default_watch_timeout, namespace_finalize_delay, hidden_resources (["group/plural", ...]: answered
        404, as by a cluster without their CRDs), forbidden_resources (answered 403)."""
        await self._ok("POST", "/_emu/config", body=settings)

    async def bulk_load(self, objs: Iterable[dict[str, Any]]) -> int:
        body = b"\n".join(json.dumps(o).encode() for o in objs)
        result = await self._ok("POST", "/_emu/bulk", body=body, content_type="application/x-ndjson", timeout=600)
        return int(result["resourceVersion"])

    async def wait_for_watchers(self, resource: str, count: int = 1, timeout: float = 10.0) -> int:
        """Block until ``count`` watches of ``resource`` (plural, e.g. "services") are open."""
        result = await self._ok(
            "GET",
            "/_emu/wait-watchers",
            params={"resource": resource, "count": str(count), "timeout": str(timeout)},
            timeout=timeout + 5,
        )
        return int(result["watchers"])

    async def resource_version(self) -> int:
        return int((await self.state())["resourceVersion"])
