"""Where ops run, from one deployment settings file (`deploy/settings.yaml`, or the one `$RAG_DEPLOY_SETTINGS` names).

Ops declare only their workload (`placement("embedding")`); the settings decide which workloads get a GPU node,
what every pod requests, the GPU image, and the executor (`multiprocess` in dev, `k8s_job_executor` on a
cluster). Placement is written as `dagster-k8s/config` tags, which `k8s_job_executor` applies to each step's pod
(op tags) and `K8sRunLauncher` to a run's pod (job tags, for the in-process inference jobs); the multiprocess
executor ignores them. A pod learns where it runs from `$RAG_NODE_KIND` (`gpu` or `cpu`), set by those tags.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Workload = Literal["embedding", "training", "inference", "cpu"]
NodeKind = Literal["gpu", "cpu"]
DEFAULT_SETTINGS = Path(__file__).resolve().parents[1] / "deploy" / "settings.yaml"
NODE_KIND_ENV = "RAG_NODE_KIND"
NODE_TAG = "rag/node"  # a plain tag too: run-queue limits and the UI can select GPU runs by it
K8S_CONFIG_TAG = "dagster-k8s/config"
POOL_TAG = "dagster/concurrency_key"  # an op's concurrency pool, as a tag


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: dict[str, str]
    limits: dict[str, str] = {}


class CpuSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resources: Resources


class GpuSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="The GPU ops' image (deploy/Dockerfile.gpu).")
    resources: Resources
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, str]] = []
    pool: str = Field(default="gpu", description="The Dagster concurrency pool of GPU steps (k8s executor only).")


class DeploymentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executor: Literal["multiprocess", "k8s"] = "multiprocess"
    gpu_workloads: set[Workload] = {"embedding", "training"}
    cpu: CpuSettings
    gpu: GpuSettings

    def node_kind(self, workload: Workload) -> NodeKind:
        return "gpu" if workload in self.gpu_workloads else "cpu"


def current_node_kind() -> NodeKind:
    """The kind of node this process runs on, as its pod's placement says (`cpu` when unset: dev, or a CPU pod)."""
    return "gpu" if os.environ.get(NODE_KIND_ENV, "").lower() == "gpu" else "cpu"


def settings_path() -> Path:
    return Path(os.environ["RAG_DEPLOY_SETTINGS"]) if os.environ.get("RAG_DEPLOY_SETTINGS") else DEFAULT_SETTINGS


class DeploymentSettingsError(ValueError):
    """The deployment settings file cannot be used; the message names the file and each problem."""


def read_settings(path: Path) -> DeploymentSettings:
    if not path.is_file():
        raise FileNotFoundError(f"no deployment settings at {path} (set RAG_DEPLOY_SETTINGS to the file)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DeploymentSettingsError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        return DeploymentSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}" for e in exc.errors())
        raise DeploymentSettingsError(f"{path}: {problems}") from None


def load_settings() -> DeploymentSettings:
    """The settings in force: `$RAG_DEPLOY_SETTINGS`, else the repository's `deploy/settings.yaml`;
    `$RAG_EXECUTOR` (`k8s` or `multiprocess`), when set, overrides the file's executor."""
    settings = read_settings(settings_path())
    override = os.environ.get("RAG_EXECUTOR", "").lower()
    if override:
        settings = settings.model_copy(update={"executor": "k8s" if override == "k8s" else "multiprocess"})
    return settings


def k8s_config(workload: Workload, settings: DeploymentSettings) -> dict[str, Any]:
    """The `dagster-k8s/config` of a workload's pod. A CPU step names no resources: it takes the executor's
    default (`cpu.resources`, see `executor_def`); `run_placement` adds them for a run's pod."""
    kind = settings.node_kind(workload)
    env = [{"name": NODE_KIND_ENV, "value": kind}]
    if kind == "cpu":
        return {"container_config": {"env": env}}
    gpu = settings.gpu
    pod_spec: dict[str, Any] = {}
    if gpu.node_selector:
        pod_spec["node_selector"] = dict(gpu.node_selector)
    if gpu.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in gpu.tolerations]
    return {
        "container_config": {"image": gpu.image, "env": env, "resources": gpu.resources.model_dump(exclude_defaults=True)},
        "pod_spec_config": pod_spec,
    }


def placement(workload: Workload, settings: DeploymentSettings | None = None) -> dict[str, Any]:
    """Op tags placing a step of this workload (its pod's config, its node kind, and on the k8s executor
    the GPU pool)."""
    settings = settings or load_settings()
    tags: dict[str, Any] = {K8S_CONFIG_TAG: k8s_config(workload, settings), NODE_TAG: settings.node_kind(workload)}
    if settings.node_kind(workload) == "gpu" and settings.executor == "k8s":
        tags[POOL_TAG] = settings.gpu.pool  # in dev every pool has one slot: GPU steps there stay unpooled
    return tags


def run_placement(workload: Workload, settings: DeploymentSettings | None = None) -> dict[str, str]:
    """Job tags placing a whole in-process run's pod (K8sRunLauncher reads run tags; a run tag is a string)."""
    settings = settings or load_settings()
    if settings.node_kind(workload) == "cpu":
        config = {"container_config": {**k8s_config(workload, settings)["container_config"],
                                       "resources": settings.cpu.resources.model_dump(exclude_defaults=True)}}
    else:
        config = k8s_config(workload, settings)
    return {K8S_CONFIG_TAG: json.dumps(config), NODE_TAG: settings.node_kind(workload)}


def step_k8s_config(settings: DeploymentSettings) -> dict[str, Any]:
    """What every step pod gets before its op's tags are merged on (deep merge: a GPU op's resources add to these)."""
    return {"container_config": {"resources": settings.cpu.resources.model_dump(exclude_defaults=True)}}


def executor_def(settings: DeploymentSettings | None = None):
    """The executor the settings name: `k8s_job_executor` with the CPU defaults for every step, or multiprocess."""
    import dagster as dg

    settings = settings or load_settings()
    if settings.executor != "k8s":
        return dg.multiprocess_executor
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured({"step_k8s_config": step_k8s_config(settings)}, name="k8s")
