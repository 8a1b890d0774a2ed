"""
Tests for the deployment files: the Kubernetes manifests in
deploy/kubernetes/ are valid against the Kubernetes API schema (offline, with
C{kubernetes-validate}'s bundled schemas), and agree with the Containerfile,
the CI that builds it, and the server's options and pages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from twisted.trial.unittest import SynchronousTestCase

from upperecho.environment import variableName
from upperecho.health import Readiness
from upperecho.tap import Options
from upperecho.web import healthRoot

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
CONTAINERFILE = (ROOT / "Containerfile").read_text()


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """
    Every (file, pod spec, container) of the workloads.
    """
    found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for name, doc in documents():
        if doc["kind"] in ("Deployment", "DaemonSet"):
            pod = doc["spec"]["template"]["spec"]
            found.extend((name, pod, c) for c in pod["containers"])
    return found


def containerfileEnv() -> dict[str, str]:
    """
    The ENV settings of the Containerfile.
    """
    block = re.search(r"^ENV (.*?)(?:\n(?!\s))", CONTAINERFILE, re.M | re.S)
    assert block is not None
    return dict(re.findall(r"(\w+)=(\S+)", block.group(1)))


class ManifestTests(SynchronousTestCase):
    """
    deploy/kubernetes/: valid, and consistent with the image and the server.
    """

    def test_files(self) -> None:
        """
        A Deployment with its Service, and a DaemonSet.
        """
        kinds = sorted(doc["kind"] for _, doc in documents())
        self.assertEqual(kinds, ["DaemonSet", "Deployment", "Service"])

    def test_schema(self) -> None:
        """
        Every document is valid, strictly (no unknown field), against the
        newest Kubernetes schema the validator bundles.
        """
        version = kubernetes_validate.latest_version()
        for name, doc in documents():
            self.assertTrue(
                kubernetes_validate.validate(doc, version, strict=True), name
            )
        bad = dict(documents()[0][1])
        bad["spec"] = {**bad["spec"], "replica": 3}
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, version, strict=True)

    def test_image(self) -> None:
        """
        The image is the one CI builds from the Containerfile.
        """
        built = re.search(
            r"^IMAGE=(\S+)$", (ROOT / ".ci" / "container").read_text(), re.M
        )
        assert built is not None
        for name, _, container in containers():
            self.assertEqual(container["image"], built.group(1), name)

    def test_ports(self) -> None:
        """
        The container ports are the image's: its EXPOSE line and the ports
        its UPPERECHO_* defaults serve on.
        """
        exposed = re.search(r"^EXPOSE (.*)$", CONTAINERFILE, re.M)
        assert exposed is not None
        expected = set(exposed.group(1).split())
        env = containerfileEnv()
        served = {
            f"{env['UPPERECHO_TCP']}/tcp",
            f"{env['UPPERECHO_UDP']}/udp",
            f"{env['UPPERECHO_METRICS'].split(':')[1]}/tcp",
        }
        self.assertEqual(served, expected)
        for name, _, container in containers():
            ports = {
                f"{p['containerPort']}/{p['protocol'].lower()}"
                for p in container["ports"]
            }
            self.assertEqual(ports, expected, name)

    def test_service(self) -> None:
        """
        The Service forwards TCP and UDP to the pods' named ports.
        """
        [service] = [doc for _, doc in documents() if doc["kind"] == "Service"]
        [deployment] = [doc for _, doc in documents() if doc["kind"] == "Deployment"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        named = {p["name"]: p["protocol"] for p in container["ports"]}
        protocols = set()
        for port in service["spec"]["ports"]:
            self.assertEqual(named[port["targetPort"]], port["protocol"])
            protocols.add(port["protocol"])
        self.assertEqual(protocols, {"TCP", "UDP"})
        self.assertEqual(
            service["spec"]["selector"],
            deployment["spec"]["template"]["metadata"]["labels"],
        )

    def test_probes(self) -> None:
        """
        Readiness on /readyz and liveness on /healthz, both pages the
        server has, on the port serving them.
        """
        pages = {b"/" + path for path in healthRoot(Readiness()).children}
        for name, _, container in containers():
            ready = container["readinessProbe"]["httpGet"]
            alive = container["livenessProbe"]["httpGet"]
            self.assertEqual((ready["path"], alive["path"]), ("/readyz", "/healthz"))
            self.assertTrue({b"/readyz", b"/healthz"} <= pages)
            [metrics] = [p for p in container["ports"] if p["name"] == ready["port"]]
            self.assertEqual(
                str(metrics["containerPort"]),
                containerfileEnv()["UPPERECHO_METRICS"].split(":")[1],
                name,
            )

    def test_environment(self) -> None:
        """
        POD_NAME comes from the downward API; every UPPERECHO_* variable is
        an option's, and the server accepts the values.
        """
        options = {variableName(spec.rstrip("=")) for spec in Options().longOpt}
        for name, _, container in containers():
            env = {e["name"]: e for e in container["env"]}
            self.assertEqual(
                env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name"
            )
            values = {
                k: e["value"] for k, e in env.items() if k.startswith("UPPERECHO_")
            }
            self.assertLessEqual(set(values), options, name)
            parsed = Options()
            self.patch(os, "environ", {**values, "POD_NAME": "pod-1"})
            parsed.parseOptions([])
            self.assertEqual((parsed["identify"], parsed["name"]), (1, "pod-1"))

    def test_security(self) -> None:
        """
        Non-root (the image's user), read-only root, no privilege escalation,
        resources requested and limited.
        """
        user = re.search(r"^USER (\d+)", CONTAINERFILE, re.M)
        assert user is not None
        for name, pod, container in containers():
            self.assertTrue(pod["securityContext"]["runAsNonRoot"], name)
            self.assertEqual(pod["securityContext"]["runAsUser"], int(user.group(1)))
            context = container["securityContext"]
            self.assertTrue(context["readOnlyRootFilesystem"], name)
            self.assertFalse(context["allowPrivilegeEscalation"], name)
            for kind in ("requests", "limits"):
                self.assertEqual(
                    set(container["resources"][kind]), {"cpu", "memory"}, name
                )


class SystemdTests(SynchronousTestCase):
    """
    The systemd units in docs/ reload with SIGHUP, which reopens the log.
    """

    def test_execReload(self) -> None:
        for unit in ("upperecho.service", "upperecho-direct.service"):
            text = (ROOT / "docs" / unit).read_text()
            self.assertIn("\nExecReload=/bin/kill -HUP $MAINPID\n", text, unit)
