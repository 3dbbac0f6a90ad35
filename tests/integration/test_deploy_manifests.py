"""Every manifest under deploy/ applies with real `kubectl apply` to the API emulator and comes back
as the objects it describes (issue 5's deploy/dns, issue 7's deploy/ingress)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ingress import admission
from ingress.cli import options_from, parser
from ingress.controller import Controller
from ingress.options import Options
from kubewatch.kinds import get_kind
from tests.apiemu.harness import Emulator

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def kubectl(kubeconfig: Path, *args: str) -> str:
    res = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def described(directory: Path) -> list[tuple[str, str]]:
    docs = [d for f in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs)


async def test_deploy_manifests_apply(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "emu") as emu:
        for part in ("dns", "ingress", "gateway"):
            directory = DEPLOY / part
            # A namespace must exist before objects are put in it, as on a real cluster.
            if (directory / "namespace.yaml").exists():
                await asyncio.to_thread(kubectl, emu.kubeconfig_path, "apply", "-f", str(directory / "namespace.yaml"))
            out = await asyncio.to_thread(kubectl, emu.kubeconfig_path, "apply", "-f", str(directory))
            assert "created" in out or "configured" in out or "unchanged" in out
            got = json.loads(await asyncio.to_thread(kubectl, emu.kubeconfig_path, "get", "-f", str(directory),
                                                     "-o", "json"))
            assert sorted((i["kind"], i["metadata"]["name"]) for i in got["items"]) == described(directory)
        ic = await emu.get("networking.k8s.io/v1", "IngressClass", "portolan")
        assert ic is not None
        assert ic["spec"]["controller"] == "portolan.dev/ingress-controller"
        dep = await emu.get("apps/v1", "Deployment", "portolan-ingress", "portolan-ingress")
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--ingress-class=portolan" in args
        assert "--publish-service=portolan-ingress/portolan-ingress" in args
        # The container's arguments mean what they say to the real command line.
        opts = options_from(parser().parse_args(args))
        assert (opts.http_port, opts.https_port, opts.config_dir) == (80, 443, "/run/portolan")
        assert opts.election_namespace == "portolan-ingress"
        assert str(opts.publish_service) != ""
        assert opts.publish_service == ("portolan-ingress", "portolan-ingress")
        ing = await emu.get("networking.k8s.io/v1", "Ingress", "example", "default")
        assert ing["spec"]["ingressClassName"] == "portolan"
        vwc = await emu.get("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
                            "portolan-ingress-admission")  # fmt: skip
        await _check_webhook(emu, vwc, dep, opts)


async def _check_webhook(emu: Emulator, vwc: dict[str, Any], dep: dict[str, Any], opts: Options) -> None:
    """The webhook's pieces fit together: configuration, Service, controller flags, the
    certificate's Secret and names, from the Jobs or from cert-manager."""
    (hook,) = vwc["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "None"
    assert {"CREATE", "UPDATE"} == set(hook["rules"][0]["operations"])
    assert hook["rules"][0]["resources"] == ["ingresses"]
    assert "'portolan'" in hook["matchConditions"][0]["expression"]  # our IngressClass's name
    ref = hook["clientConfig"]["service"]
    assert ref["path"] == admission.PATH
    svc = await emu.get("v1", "Service", ref["name"], ref["namespace"])
    (port,) = svc["spec"]["ports"]
    assert port["port"] == ref["port"]
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert opts.validating_webhook == ("0.0.0.0", named[port["targetPort"]])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    secret = volume["secret"]["secretName"]
    mounted = mounts[volume["name"]]
    assert opts.validating_webhook_certificate == f"{mounted}/tls.crt"
    assert opts.validating_webhook_key == f"{mounted}/tls.key"
    dns = f"{ref['name']}.{ref['namespace']}.svc"
    # kube-webhook-certgen: the pair for the Service's names in that Secret, the caBundle patched.
    create = await emu.get("batch/v1", "Job", "portolan-ingress-admission-create", ref["namespace"])
    patch = await emu.get("batch/v1", "Job", "portolan-ingress-admission-patch", ref["namespace"])
    args = create["spec"]["template"]["spec"]["containers"][0]["args"]
    image = create["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("registry.k8s.io/ingress-nginx/kube-webhook-certgen:")
    assert args[0] == "create"
    assert f"--secret-name={secret}" in args
    assert f"--host={ref['name']},{ref['name']}.$(POD_NAMESPACE).svc" in args
    assert {"--cert-name=tls.crt", "--key-name=tls.key"} <= set(args)
    args = patch["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "patch"
    assert {f"--webhook-name={vwc['metadata']['name']}", f"--secret-name={secret}", "--patch-mutating=false",
            "--patch-failure-policy=Fail"} <= set(args)  # fmt: skip
    # cert-manager instead: the same Secret, the Service's names, the annotation naming it.
    docs = [d for d in yaml.safe_load_all((DEPLOY / "ingress" / "cert-manager" / "certificate.yaml").read_text()) if d]
    (serving,) = [d for d in docs if d["kind"] == "Certificate" and not d["spec"].get("isCA")]
    assert serving["spec"]["secretName"] == secret
    assert dns in serving["spec"]["dnsNames"]
    inject = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert inject == f"{serving['metadata']['namespace']}/{serving['metadata']['name']}"


def test_ingress_rbac_grants_reads_of_exactly_what_the_controller_watches(tmp_path: Path) -> None:
    """Least privilege both ways: every kind the deployed controller watches may be listed and watched,
    and nothing else may be read."""
    # deploy/ingress's role, and deploy/gateway's for the Gateway API (on by default).
    docs = [d for part in ("ingress", "gateway") for d in yaml.safe_load_all((DEPLOY / part / "rbac.yaml").read_text())
            if d]  # fmt: skip
    rules = [rule for d in docs if d["kind"] == "ClusterRole" for rule in d["rules"]]
    reads = {(group, resource) for rule in rules if "list" in rule["verbs"] or "get" in rule["verbs"]
             for group in rule["apiGroups"] for resource in rule["resources"]}
    for rule in rules:
        if "list" in rule["verbs"]:
            assert {"get", "list", "watch"} <= set(rule["verbs"]), rule
    dep = next(d for d in yaml.safe_load_all((DEPLOY / "ingress" / "deployment.yaml").read_text())
               if d and d["kind"] == "Deployment")
    opts = options_from(parser().parse_args(dep["spec"]["template"]["spec"]["containers"][0]["args"]))
    controller = Controller(dataclasses.replace(opts, config_dir=str(tmp_path)))
    watched = {(get_kind(s.kind).group, get_kind(s.kind).name) for s in controller.watch_specs()}
    assert reads == watched
