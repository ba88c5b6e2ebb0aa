"""The pods Kubernetes would receive, built by dagster-k8s's own code and checked against the Kubernetes schemas.

Each step's Job comes from `K8sStepHandler.launch_step` of the executor that deploy/settings.yaml selects
(`k8s_job_executor`), each run's Job from `K8sRunLauncher.launch_run`; only their API client is replaced by a
recorder (no cluster here). The launcher and the code location's container context are configured as the Helm
chart configures them from deploy/helm/dagster-values.yaml. Every manifest is validated with
`kubernetes-validate` (strict: unknown fields fail) for every Kubernetes version it bundles, 1.25 to 1.37.

Run as a script (`python tests/test_k8s_pods.py`) it prints the manifests as JSON: the test runs it in a
subprocess with other settings, since op and job tags are fixed when the code location is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HELM_VALUES = ROOT / "deploy" / "helm" / "dagster-values.yaml"
K8S_VERSIONS = [f"1.{minor}" for minor in range(25, 38)]
NAMESPACE = "rag"
GPU = "nvidia.com/gpu"
# Op config that must be given for a run to be created (the rest has defaults).
REQUIRED_OP_CONFIG = {
    "ranker_model": {"dataset": "/rag/beir/scifact"},
    "experiment_report": {"experiment": "demo"},
    "purge_sources": {"sources": ["old-wiki"]},
    "retrieve_original": {"question": "How do I rotate the keys?"},
    "reword": {"question": "How many documents per source?"},
}
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@dataclass(frozen=True)
class Pod:
    job: str  # the Dagster job
    ops: tuple[str, ...]  # the ops that run in it: one for a step pod, every op of an in-process run
    kind: str  # "step" or "run"
    manifest: dict


class RecordingBatchApi:
    """Stands in for kubernetes.client.BatchV1Api: keeps each Job it is asked to create, as the API would get it."""

    def __init__(self):
        self.jobs: list[dict] = []

    def create_namespaced_job(self, body, namespace, **_):
        from kubernetes.client import ApiClient

        self.jobs.append({**ApiClient().sanitize_for_serialization(body), "namespace": namespace})


def helm_deployment() -> dict:
    values = yaml.safe_load(HELM_VALUES.read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return {"values": values, "deployment": deployment}


def code_image(deployment: dict) -> str:
    return f"{deployment['image']['repository']}:{deployment['image']['tag']}"


def launcher_config(values: dict, kubeconfig: str) -> dict:
    """K8sRunLauncher's config as the chart renders it into the instance (the keys our values set)."""
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    return {
        "service_account_name": "dagster", "instance_config_map": "dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"], "dagster_home": values["global"]["dagsterHome"],
        "job_namespace": NAMESPACE, "image_pull_policy": k8s["imagePullPolicy"], "env_config_maps": k8s["envConfigMaps"],
        "env_secrets": k8s["envSecrets"], "env_vars": k8s["envVars"], "volume_mounts": k8s["volumeMounts"], "volumes": k8s["volumes"],
        "fail_pod_on_run_failure": k8s["failPodOnRunFailure"],
        "load_incluster_config": False, "kubeconfig_file": kubeconfig,  # in the cluster: in-cluster config
    }


def container_context(deployment: dict) -> dict:
    """What `includeConfigInLaunchedRuns` hands every run of the code location: its env (through a ConfigMap),
    secrets, volumes and resources."""
    return {"k8s": {
        "namespace": NAMESPACE, "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"dagster-dagster-user-deployments-{deployment['name']}-user-env"],
        "env_secrets": [s["name"] for s in deployment["envSecrets"]],
        "volumes": deployment["volumes"], "volume_mounts": deployment["volumeMounts"], "resources": deployment["resources"],
    }}


def run_config(job) -> dict:
    ops = {name: {"config": REQUIRED_OP_CONFIG[name]} for name in job.graph.node_names() if name in REQUIRED_OP_CONFIG}
    return {"ops": ops} if ops else {}


def build_pods() -> list[Pod]:
    """Every pod the code location would create on the cluster, under the deployment settings in force
    (with the executor the Helm values select): one per step for `k8s_job_executor` jobs, one per run."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import create_execution_plan
    from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
    from dagster._core.execution.context_creation_job import create_context_free_log_manager
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.step_delegating import StepHandlerContext
    from dagster._core.launcher import LaunchRunContext
    from dagster._grpc.types import ExecuteStepArgs

    import definitions
    from rag_assets import deployment as placement

    helm = helm_deployment()
    settings = placement.load_settings().model_copy(update={"executor": "k8s"})  # the Helm values set RAG_EXECUTOR=k8s
    source = definitions.defs
    defs = dg.Definitions(assets=source.assets, jobs=source.jobs, resources=source.resources,
                          executor=placement.executor_def(settings))
    repo = ReconstructableRepository.for_module("definitions", "defs", working_directory="/opt/rag",
                                                container_image=code_image(helm["deployment"]),
                                                container_context=container_context(helm["deployment"]))
    recorder = RecordingBatchApi()
    pods: list[Pod] = []
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG)
        launcher = {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher_config(helm["values"], str(kubeconfig))}
        with dg.instance_for_test(overrides={"run_launcher": launcher}) as instance:
            instance.run_launcher._api_client.batch_api = recorder  # noqa: SLF001 (the one seam: no cluster)
            jobs = [defs.resolve_implicit_global_asset_job_def(), *(defs.resolve_job_def(j.name) for j in source.jobs)]
            for job in jobs:
                recon = repo.get_reconstructable_job(job.name)
                config = run_config(job)
                plan = create_execution_plan(job, run_config=config)
                run = instance.create_run_for_job(job, execution_plan=plan, run_config=config, tags=job.run_tags,  # as a launch does
                                                  job_code_origin=recon.get_python_origin())
                instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
                steps_in_run = job.executor_def.name == "in_process"
                pods.append(Pod(job.name, tuple(job.graph.node_names()) if steps_in_run else (), "run", recorder.jobs[-1]))
                if steps_in_run:
                    continue
                executor_config = job.executor_def.config_schema.resolve_config({}).value["config"]
                executor = job.executor_def.executor_creation_fn(
                    InitExecutorContext(job=recon, executor_def=job.executor_def, executor_config=executor_config, instance=instance))
                handler = executor._step_handler  # noqa: SLF001
                handler._api_client.batch_api = recorder  # noqa: SLF001
                orchestration = PlanOrchestrationContext(
                    plan_data=PlanData(job=recon, dagster_run=run, instance=instance, execution_plan=plan),
                    log_manager=create_context_free_log_manager(instance, run), executor=executor, output_capture=None)
                for step in plan.steps:
                    args = ExecuteStepArgs(job_origin=recon.get_python_origin(), run_id=run.run_id, step_keys_to_execute=[step.key],
                                           instance_ref=instance.get_ref())
                    list(handler.launch_step(StepHandlerContext(instance=instance, plan_context=orchestration, steps=[step],
                                                                execute_step_args=args, dagster_run=run)))
                    pods.append(Pod(job.name, (step.key,), "step", recorder.jobs[-1]))
    return pods


def container(pod: Pod) -> dict:
    return pod.manifest["spec"]["template"]["spec"]["containers"][0]


def wants_gpu(pod: Pod) -> bool:
    resources = container(pod).get("resources") or {}
    return any(GPU in (resources.get(part) or {}) for part in ("requests", "limits"))


def env(pod: Pod) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(pod).get("env") or []}


def placement_by_op(pods: list[Pod]) -> dict[str, set[tuple[bool, str]]]:
    """Per op: the (GPU?, image) of every pod it would run in, over every job that runs it."""
    out: dict[str, set[tuple[bool, str]]] = {}
    for pod in pods:
        for op in pod.ops:
            out.setdefault(op, set()).add((wants_gpu(pod), container(pod)["image"]))
    return out


@cache
def default_pods() -> tuple[Pod, ...]:
    return tuple(build_pods())


@cache
def pods_with_inference_on_gpu() -> tuple[Pod, ...]:
    """The same, in a fresh process whose settings add `inference` to the GPU workloads."""
    from rag_assets.deployment import settings_path

    settings = yaml.safe_load(settings_path().read_text())
    settings["gpu_workloads"] = [*settings["gpu_workloads"], "inference"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.yaml"
        path.write_text(yaml.safe_dump(settings))
        envs = {**os.environ, "RAG_DEPLOY_SETTINGS": str(path), "RAG_EXECUTOR": "k8s"}
        out = subprocess.run([sys.executable, __file__], env=envs, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return tuple(Pod(p["job"], tuple(p["ops"]), p["kind"], p["manifest"]) for p in json.loads(out.stdout))


def test_exactly_the_embedding_and_training_ops_get_a_gpu_and_the_gpu_image():
    from rag_assets.deployment import load_settings

    settings = load_settings()
    pods = default_pods()
    by_op = placement_by_op(list(pods))
    code = code_image(helm_deployment()["deployment"])
    assert all(len(p) == 1 for p in by_op.values()), {op: p for op, p in by_op.items() if len(p) > 1}  # same pod in every job
    placed = {op: next(iter(p)) for op, p in by_op.items()}
    gpu_ops = {op for op, (gpu, _) in placed.items() if gpu}
    assert gpu_ops == {"embeddings", "ranker_model"}
    assert {op: image for op, (gpu, image) in placed.items()} == {op: settings.gpu.image if op in gpu_ops else code for op in placed}
    # every op of the code location is covered: the assets, and the ops of the op jobs
    assert set(placed) >= {"documents", "chunks", "embeddings", "index", "warehouse", "schema_index", "embedding_model",
                           "llm_model", "ranker_model", "evaluation", "experiment_report", "purge_sources",
                           "retrieve_original", "answer_question", "reword", "answer"}
    print(f"\nops requesting a GPU: {len(gpu_ops)}/{len(placed)} ({len(gpu_ops) / len(placed):.1%}): {sorted(gpu_ops)}")


def test_gpu_pods_land_on_gpu_nodes_and_cpu_pods_ask_for_cpu_and_memory_only():
    from rag_assets.deployment import load_settings

    settings = load_settings()
    for pod in default_pods():
        spec, resources = pod.manifest["spec"]["template"]["spec"], container(pod)["resources"]
        if wants_gpu(pod):
            assert resources["limits"][GPU] == settings.gpu.resources.limits[GPU]
            assert spec["nodeSelector"] == settings.gpu.node_selector and spec["tolerations"] == settings.gpu.tolerations
            assert env(pod)["RAG_NODE_KIND"] == "gpu"
        else:
            assert set(resources["requests"]) == {"cpu", "memory"} and set(resources.get("limits", {})) <= {"cpu", "memory"}
            assert "nodeSelector" not in spec and "tolerations" not in spec
            assert env(pod).get("RAG_NODE_KIND", "cpu") == "cpu"
        if pod.kind == "step":  # the settings' CPU defaults (a GPU op's own resources replace them key by key)
            expected = settings.gpu.resources if wants_gpu(pod) else settings.cpu.resources
            assert resources["requests"] == {**settings.cpu.resources.requests, **expected.requests}
        # what every pod of the code location shares: its volume for RAG_HOME, its env and secrets, the namespace
        assert {m["mountPath"] for m in container(pod)["volumeMounts"]} == {"/rag"}
        assert {s.get("secretRef", {}).get("name") for s in container(pod)["envFrom"]} >= {"rag-assets-secrets"}
        assert pod.manifest["namespace"] == NAMESPACE


@pytest.mark.slow  # a subprocess
def test_inference_runs_stay_on_cpu_unless_the_settings_say_otherwise():
    def inference_pods(pods):
        return {p.job: p for p in pods if p.job in ("ask_job", "sql_job")}

    on_cpu = inference_pods(default_pods())
    assert set(on_cpu) == {"ask_job", "sql_job"}
    assert all(p.kind == "run" and not wants_gpu(p) and env(p)["RAG_NODE_KIND"] == "cpu" for p in on_cpu.values())
    on_gpu = inference_pods(pods_with_inference_on_gpu())
    assert all(wants_gpu(p) and env(p)["RAG_NODE_KIND"] == "gpu" for p in on_gpu.values())
    by_op = placement_by_op(list(pods_with_inference_on_gpu()))
    gpu_ops = {op for op, placed in by_op.items() if any(gpu for gpu, _ in placed)}
    assert gpu_ops == {"embeddings", "ranker_model"} | {op for p in on_gpu.values() for op in p.ops}


@pytest.mark.slow  # a subprocess
def test_every_manifest_is_a_valid_kubernetes_job_for_1_25_to_1_37():
    import kubernetes_validate

    pods = [*default_pods(), *pods_with_inference_on_gpu()]
    validated = Counter()
    for pod in pods:
        manifest = {k: v for k, v in pod.manifest.items() if k != "namespace"}
        for version in K8S_VERSIONS:
            assert kubernetes_validate.validate(manifest, version, strict=True) == version
            validated[version] += 1
    assert set(validated) == set(K8S_VERSIONS) and len(set(validated.values())) == 1
    assert K8S_VERSIONS[-1] == kubernetes_validate.latest_version() or kubernetes_validate.latest_version().startswith(K8S_VERSIONS[-1])


def test_the_validator_rejects_what_kubernetes_would():
    import kubernetes_validate

    manifest = {k: v for k, v in default_pods()[0].manifest.items() if k != "namespace"}
    broken = json.loads(json.dumps(manifest))
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limitz"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_gpu_steps_share_the_gpu_pool_on_the_cluster_only():
    from rag_assets.deployment import POOL_TAG, load_settings, placement

    settings = load_settings()
    on_cluster = settings.model_copy(update={"executor": "k8s"})
    assert placement("embedding", on_cluster)[POOL_TAG] == settings.gpu.pool
    assert POOL_TAG not in placement("cpu", on_cluster)
    assert POOL_TAG not in placement("embedding", settings.model_copy(update={"executor": "multiprocess"}))


if __name__ == "__main__":
    json.dump([{"job": p.job, "ops": p.ops, "kind": p.kind, "manifest": p.manifest} for p in build_pods()], sys.stdout)
