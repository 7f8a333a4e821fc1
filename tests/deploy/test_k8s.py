"""deploy/k8s: every overlay renders, validates against Kubernetes' and the CRDs' schemas, and
agrees with the code it deploys (ports, topics, consumer groups, settings, drain time)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from pydantic_settings import BaseSettings

from schemas.topics import Topic
from services.actions import worker_cli as actions_cli
from services.actions.worker_cli import ActionsSettings
from services.common.settings import BusSettings
from services.dialogue import worker_cli as dialogue_cli
from services.dialogue.store.settings import StoreSettings
from services.dialogue.worker_cli import DialogueSettings
from services.gateway.settings import GatewaySettings
from services.nlu import worker_cli as nlu_cli
from services.nlu.worker_cli import NluSettings
from services.scheduler import worker_cli as scheduler_cli
from services.scheduler.settings import SchedulerSettings
from tests.deploy.schemas import REPO, NoSchema, validate
from tests.support.kustomize import render

OVERLAYS = ("dev", "prod")
NAMESPACE = "parley"
Resource = dict[str, Any]

# The consumers KEDA scales: worker → (settings class with its health port, topic, group).
CONSUMERS: dict[str, tuple[type[BaseSettings], Topic, str]] = {
    "nlu": (NluSettings, Topic.NLU, nlu_cli.GROUP),
    "dialogue": (DialogueSettings, Topic.DIALOGUE, dialogue_cli.GROUP),
    "actions": (ActionsSettings, Topic.ACTIONS, actions_cli.GROUP),
    "scheduler": (SchedulerSettings, Topic.SCHEDULER, scheduler_cli.GROUP),
}
WORKERS = (*CONSUMERS, "gateway")
# Environment prefix → the settings class that reads it (longest prefix wins).
SETTINGS_BY_PREFIX: dict[str, type[BaseSettings]] = {
    "PARLEY_NLU_": NluSettings,
    "PARLEY_DIALOGUE_": DialogueSettings,
    "PARLEY_ACTIONS_": ActionsSettings,
    "PARLEY_SCHEDULER_": SchedulerSettings,
    "PARLEY_GATEWAY_": GatewaySettings,
    "PARLEY_STORE_": StoreSettings,
    "PARLEY_": BusSettings,
}
ALIASES = {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"}


@functools.cache
def _rendered(overlay: str) -> tuple[Resource, ...]:
    return tuple(render(REPO / "deploy" / "k8s" / "overlays" / overlay))


def rendered(overlay: str) -> list[Resource]:
    """A fresh copy of the overlay's resources (a test may change them)."""
    return copy.deepcopy(list(_rendered(overlay)))


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    [found] = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def pod_spec(deployment: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def config_env(resources: list[Resource], worker: str) -> dict[str, str]:
    env = dict(one(resources, "ConfigMap", "parley-common")["data"])
    env.update(one(resources, "ConfigMap", f"parley-{worker}")["data"])
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_validates_against_its_schema(overlay: str) -> None:
    resources = rendered(overlay)
    counted = {"kubernetes": 0, "crd": 0}
    for resource in resources:
        counted[validate(resource)] += 1
    assert counted["kubernetes"] >= 40, counted
    # Kafka, KafkaNodePool, one KafkaTopic per topic, five ScaledObjects.
    assert counted["crd"] == 2 + len(Topic) + 5, counted
    names = [(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]) for r in resources]
    assert len(names) == len(set(names)), "a resource is defined twice"


def test_the_validators_catch_mistakes() -> None:
    deployment = rendered("prod")
    bad = one(deployment, "Deployment", "parley-nlu")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    topic = one(rendered("prod"), "KafkaTopic", "parley.nlu")
    topic["spec"]["partitions"] = "twelve"
    with pytest.raises(jsonschema.ValidationError):
        validate(topic)
    scaled = one(rendered("prod"), "ScaledObject", "parley-nlu")
    scaled["spec"]["maxReplicas"] = 3  # KEDA's field is maxReplicaCount
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    with pytest.raises(NoSchema):
        validate({"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {}})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_a_restricted_namespace(overlay: str) -> None:
    resources = rendered(overlay)
    namespace = one(resources, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {
        NAMESPACE
    }
    assert not of_kind(resources, "Secret"), "credentials are never in the repository"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_restricted_with_requests_and_limits(overlay: str) -> None:
    deployments = of_kind(rendered(overlay), "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        *(f"parley-{w}" for w in WORKERS),
        "parley-triton",
    }
    for deployment in deployments:
        spec = pod_spec(deployment)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsUser"] >= 10000
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] in tmp_volumes
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), deployment
            assert "env" not in container or all(
                "secretKeyRef" not in e.get("valueFrom", {}) for e in container["env"]
            ), "secrets are files, not environment variables in the pod spec"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, (deployment["metadata"]["name"], probe)
            assert container["livenessProbe"] != container["readinessProbe"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("worker", list(CONSUMERS))
def test_consumer_probes_hit_the_health_port_the_worker_serves(overlay: str, worker: str) -> None:
    resources = rendered(overlay)
    settings_class, _, _ = CONSUMERS[worker]
    port = settings_class.model_fields["health_port"].default
    [container] = pod_spec(one(resources, "Deployment", f"parley-{worker}"))["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == port
    assert container["args"] == ["parley", "worker", worker]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "health"}
    template = one(resources, "Deployment", f"parley-{worker}")["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    # The ConfigMap says the same port, so a changed default cannot drift from the probes.
    assert int(config_env(resources, worker)[f"PARLEY_{worker.upper()}_HEALTH_PORT"]) == port


def test_gateway_probes_and_port() -> None:
    resources = rendered("prod")
    [container] = pod_spec(one(resources, "Deployment", "parley-gateway"))["containers"]
    port = GatewaySettings.model_fields["port"].default
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert one(resources, "Service", "parley-gateway")["spec"]["ports"][0]["targetPort"] == "http"


def test_triton_probes_its_v2_health_endpoints_and_exposes_metrics() -> None:
    deployment = one(rendered("prod"), "Deployment", "parley-triton")
    [container] = pod_spec(deployment)["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    nlu_env = config_env(rendered("prod"), "nlu")
    assert nlu_env["PARLEY_NLU_TRITON_GRPC_URL"] == "parley-triton:8001"
    assert (
        "nvidia.com/gpu"
        not in pod_spec(one(rendered("dev"), "Deployment", "parley-triton"))["containers"][0][
            "resources"
        ]["limits"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_outlasts_the_consumer_drain(overlay: str) -> None:
    graceful = BusSettings.model_fields["graceful_timeout_s"].default
    for worker in WORKERS:
        deployment = one(rendered(overlay), "Deployment", f"parley-{worker}")
        env = config_env(rendered(overlay), worker)
        drain = float(env.get("PARLEY_GRACEFUL_TIMEOUT_S", graceful))
        [container] = pod_spec(deployment)["containers"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace >= drain + pre_stop.get("seconds", 0) + 15, (worker, grace)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget_and_spreads(overlay: str) -> None:
    resources = rendered(overlay)
    budgets = of_kind(resources, "PodDisruptionBudget")
    for deployment in of_kind(resources, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, deployment["metadata"]["name"]
        assert matching[0]["spec"]["maxUnavailable"] == 1
        anti = pod_spec(deployment)["affinity"]["podAntiAffinity"]
        term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_kafka_topic_per_bus_topic_sized_as_the_workers_expect(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered(overlay)
    for name, value in one(resources, "ConfigMap", "parley-common")["data"].items():
        monkeypatch.setenv(name, value)
    bus = BusSettings()
    topics = {t["spec"]["topicName"]: t for t in of_kind(resources, "KafkaTopic")}
    assert set(topics) == {bus.physical(topic) for topic in Topic}
    kafka = one(resources, "Kafka", "parley")
    replication = kafka["spec"]["kafka"]["config"]["default.replication.factor"]
    assert bus.replication_factor == replication
    for topic in Topic:
        spec = topics[bus.physical(topic)]["spec"]
        assert spec["partitions"] == bus.partitions_of(topic), topic
        assert spec["replicas"] == replication
        assert int(spec["config"]["retention.ms"]) > 0
        assert topics[bus.physical(topic)]["metadata"]["labels"]["strimzi.io/cluster"] == "parley"
    assert bus.kafka_bootstrap_servers == "parley-kafka-bootstrap:9092"
    [pool] = of_kind(resources, "KafkaNodePool")
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["spec"]["replicas"] >= replication


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("worker", list(CONSUMERS))
def test_keda_scales_each_consumer_on_its_lag_up_to_its_partitions(
    overlay: str, worker: str
) -> None:
    resources = rendered(overlay)
    _, topic, group = CONSUMERS[worker]
    scaled = one(resources, "ScaledObject", f"parley-{worker}")
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"parley-{worker}"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    physical = f"parley.{topic.value}"
    assert trigger["metadata"]["consumerGroup"] == group
    assert trigger["metadata"]["topic"] == physical
    # KEDA runs in its own namespace: the service's full name.
    assert trigger["metadata"]["bootstrapServers"] == f"parley-kafka-bootstrap.{NAMESPACE}.svc:9092"
    partitions = one(resources, "KafkaTopic", physical)["spec"]["partitions"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_maps_name_only_settings_that_exist_and_parse(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered(overlay)
    for config_map in of_kind(resources, "ConfigMap"):
        for name, value in config_map["data"].items():
            monkeypatch.setenv(name, value)
            if name in ALIASES:
                continue
            prefix = max((p for p in SETTINGS_BY_PREFIX if name.startswith(p)), key=len)
            field = name.removeprefix(prefix).lower()
            assert field in SETTINGS_BY_PREFIX[prefix].model_fields, (config_map, name)
    # Every class accepts the values as given (types, ranges, JSON).
    for settings_class in {*SETTINGS_BY_PREFIX.values()}:
        settings_class()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_mounted_as_files_named_after_their_setting(overlay: str) -> None:
    resources = rendered(overlay)
    settings_names = {"DATABASE_URL", "REDIS_URL"} | {
        f"PARLEY_GATEWAY_{field.upper()}" for field in GatewaySettings.model_fields
    }
    mounted = set()
    for deployment in of_kind(resources, "Deployment"):
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for mount in spec["containers"][0]["volumeMounts"]:
            if mount["mountPath"] != "/run/secrets/parley":
                continue
            assert mount["readOnly"] is True
            for source in volumes[mount["name"]]["projected"]["sources"]:
                for item in source["secret"]["items"]:
                    assert item["path"] in settings_names
                    mounted.add((deployment["metadata"]["name"], item["path"]))
    assert ("parley-dialogue", "DATABASE_URL") in mounted
    assert ("parley-dialogue", "REDIS_URL") in mounted
    assert ("parley-scheduler", "DATABASE_URL") in mounted
    assert ("parley-gateway", "PARLEY_GATEWAY_JWT_SECRET") in mounted


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_admit_each_flow(overlay: str) -> None:
    resources = rendered(overlay)
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(resources, "NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def egress_ports(worker: str) -> set[int]:
        labels = one(resources, "Deployment", f"parley-{worker}")["spec"]["template"]["metadata"][
            "labels"
        ]
        ports: set[int] = set()
        for spec in policies.values():
            if "Egress" in spec["policyTypes"] and _selects(spec["podSelector"], labels):
                for rule in spec.get("egress", []):
                    ports |= {p["port"] for p in rule.get("ports", [])}
        return ports

    assert {53, 9092, 8001} <= egress_ports("nlu")
    assert {53, 9092, 6379, 5432} <= egress_ports("dialogue")
    assert {53, 9092, 5432} <= egress_ports("scheduler")
    assert {53, 9092, 5432} <= egress_ports("gateway")
    assert 5432 not in egress_ports("nlu")
    assert 8001 not in egress_ports("dialogue")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_checkov_exceptions_are_each_justified() -> None:
    import yaml

    config_path = REPO / "deploy" / "k8s" / "checkov.yaml"
    config = yaml.safe_load(config_path.read_text())
    text = config_path.read_text()
    for check in config["skip-check"]:
        # Each skipped check has a comment above it that names it and says why.
        assert f"# {check} " in text
    assert config["skip-check"] == ["CKV_K8S_43", "CKV_K8S_15"]


def test_crd_copies_are_the_recorded_ones() -> None:
    import hashlib

    source = (REPO / "deploy" / "k8s" / "crds" / "SOURCE.txt").read_text()
    files = sorted(Path(REPO / "deploy" / "k8s" / "crds").rglob("*.yaml"))
    assert len(files) == 5
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() in source, path.name


def test_the_model_rollout_job_is_valid_restricted_and_fits_the_base() -> None:
    import yaml

    job = yaml.safe_load((REPO / "deploy" / "k8s" / "jobs" / "model-rollout.yaml").read_text())
    assert validate(job) == "kubernetes"
    assert job["metadata"]["namespace"] == NAMESPACE
    resources = rendered("prod")
    spec = job["spec"]["template"]["spec"]
    one(resources, "ServiceAccount", spec["serviceAccountName"])
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"parley-models", "parley-triton-models"}
    assert claims <= {c["metadata"]["name"] for c in of_kind(resources, "PersistentVolumeClaim")}
    [container] = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] >= 10000
    assert container["image"] == "registry.example.com/parley/nlu:0.1.0"
    # It writes the repository Triton serves, in a folder Triton is told to use.
    [triton] = pod_spec(one(resources, "Deployment", "parley-triton"))["containers"]
    assert "--model-repository=/models/repository" in triton["args"]
    assert "/triton/repository/" in container["args"][-1]
    labels = job["spec"]["template"]["metadata"]["labels"]
    fetch = one(resources, "NetworkPolicy", "model-rollout-fetch")["spec"]
    assert _selects(fetch["podSelector"], labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_autoscaled_and_leaves_replicas_to_its_autoscaler(
    overlay: str,
) -> None:
    resources = rendered(overlay)
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(resources, "ScaledObject")}
    hpas = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(resources, "HorizontalPodAutoscaler")
    }
    assert not scaled & hpas, "two autoscalers fight over one Deployment"
    for deployment in of_kind(resources, "Deployment"):
        name = deployment["metadata"]["name"]
        assert name in scaled | hpas, name
        assert "replicas" not in deployment["spec"], f"{name}: `kubectl apply` would reset it"


def _rollout_script(root: Path) -> str:
    import yaml

    job = yaml.safe_load((REPO / "deploy" / "k8s" / "jobs" / "model-rollout.yaml").read_text())
    script: str = job["spec"]["template"]["spec"]["containers"][0]["args"][-1]
    return script.replace("/models", str(root / "models")).replace("/triton", str(root / "triton"))


def test_the_rollout_script_fetches_stages_and_renames_a_new_triton_model(tmp_path: Path) -> None:
    import os
    import subprocess

    (tmp_path / "models").mkdir()
    (tmp_path / "bin").mkdir()
    source = tmp_path / "20260101-120000.tar.gz"
    source.write_bytes(b"archive bytes")
    # A stand-in for `parley export triton`: records its arguments, writes <out>/<name>/.
    fake = tmp_path / "bin" / "parley"
    fake.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
        'out=$6; name=$8; mkdir -p "$out/$name/1" && echo cfg > "$out/$name/config.pbtxt"\n'
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "MODEL": source.name,
        "MODEL_URL": source.as_uri(),
        "INSTANCE_KIND": "KIND_CPU",
        "HOSTNAME": "pod",
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-euc", _rollout_script(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = run()
    assert result.returncode == 0, result.stderr
    name = "parley_nlu_20260101_120000"
    assert (tmp_path / "models" / source.name).read_bytes() == b"archive bytes"
    assert (tmp_path / "triton" / "repository" / name / "config.pbtxt").is_file()
    assert not (tmp_path / "triton" / "staging" / name).exists()
    args = (tmp_path / "bin" / "args").read_text().split()
    assert args[:2] == ["export", "triton"]
    assert args[-2:] == ["--instance-kind", "KIND_CPU"]
    archive = tmp_path / "models" / source.name
    assert f"PARLEY_NLU_MODEL={archive} PARLEY_NLU_TRITON_MODEL_NAME={name}" in result.stdout
    # A second roll-out of the same archive never overwrites the model Triton serves.
    again = run()
    assert again.returncode == 2
    assert f"{name} exists already" in again.stderr
