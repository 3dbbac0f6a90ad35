"""Discovery documents, enough for kubectl to map kinds to resources."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.apiemu.errors import StatusError
from tests.apiemu.resources import RESOURCES, group_versions

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for r in RESOURCES:
        if (r.group, r.version) != (group, version):
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        resources.append(entry)
        if r.has_status:
            resources.append(
                {
                    "name": f"{r.plural}/status",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    if not resources:
        raise StatusError(404, f"the server could not find the requested resource ({group}/{version})")
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _respond(obj: Any) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), content_type="application/json")


async def version(request: web.Request) -> web.Response:
    return _respond(
        {
            "major": "1",
            "minor": "32",
            "gitVersion": "v1.32.0-apiemu",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )


async def core_versions(request: web.Request) -> web.Response:
    return _respond(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
        }
    )


async def groups(request: web.Request) -> web.Response:
    entries = []
    for group, versions in group_versions().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        entries.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return _respond({"kind": "APIGroupList", "apiVersion": "v1", "groups": entries})


async def group(request: web.Request) -> web.Response:
    name = request.match_info["group"]
    versions = group_versions().get(name)
    if not versions or not name:
        raise StatusError(404, f"the server could not find the requested resource (group {name})")
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return _respond({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": gvs, "preferredVersion": gvs[0]})


async def core_resources(request: web.Request) -> web.Response:
    return _respond(_resource_list("", "v1"))


async def group_resources(request: web.Request) -> web.Response:
    return _respond(_resource_list(request.match_info["group"], request.match_info["version"]))


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


async def openapi_root(request: web.Request) -> web.Response:
    paths = {}
    for group, versions in group_versions().items():
        for v in versions:
            gv = _gv_path(group, v)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash=apiemu"}
    return _respond({"paths": paths})


async def openapi_group_version(request: web.Request) -> web.Response:
    """Just enough OpenAPI v3 for kubectl: each kind's PATCH operation, declaring the
    fieldValidation parameter. kubectl then leaves validation to the server (which this
    emulator does not do beyond its own checks) instead of needing the full schemas, and
    computes apply patches from its built-in types."""
    gv = request.match_info["gv"].strip("/")
    paths = {}
    for r in RESOURCES:
        if _gv_path(r.group, r.version) != gv:
            continue
        ns = "/namespaces/{namespace}" if r.namespaced else ""
        paths[f"/{gv}{ns}/{r.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{r.kind}",
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}},
            }
        }
    if not paths:
        raise StatusError(404, f"no OpenAPI document for {gv}")
    return _respond({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi/v3", openapi_root)
    app.router.add_get("/openapi/v3/{gv:.+}", openapi_group_version)
    app.router.add_get("/version", version)
    app.router.add_get("/api", core_versions)
    app.router.add_get("/api/", core_versions)
    app.router.add_get("/api/v1", core_resources)
    app.router.add_get("/api/v1/", core_resources)
    app.router.add_get("/apis", groups)
    app.router.add_get("/apis/", groups)
    app.router.add_get("/apis/{group}", group)
    app.router.add_get("/apis/{group}/{version}", group_resources)
