"""deploy/helm/dagster-values.yaml checked as `helm install` checks it, offline.

Helm merges the chart's defaults with our values (maps merge, lists and scalars replace, null deletes) and
validates the result against the chart's `values.schema.json`; a subchart gets its own defaults merged with the
parent's section for it (and `global`) and its own schema. The chart files are copies under deploy/helm/schema/
(see SOURCE.md there). The schemas' online `$ref`s to Kubernetes definitions resolve against the definitions
bundled with `kubernetes-validate`, so the Kubernetes objects in our values are checked too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "schema"
SHARED_CHART = Path("/work/shared/charts/dagster")  # where the copies came from, when present
VALUES = ROOT / "deploy" / "helm" / "dagster-values.yaml"
K8S_DEFINITIONS = (  # the remote documents the chart's schemas point at
    "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0/_definitions.json",
    "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json",
)


def helm_merge(defaults: dict, values: dict) -> dict:
    """Helm's coalescing of values over a chart's defaults."""
    out = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = helm_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def kubernetes_registry() -> Registry:
    """The Kubernetes definitions of the newest version kubernetes-validate bundles, under the chart's URLs."""
    import importlib.resources

    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    path = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local" / "_definitions.json"
    definitions = json.loads(path.read_text())["$defs"]
    document = Resource.from_contents({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                       "$defs": definitions, "definitions": definitions})
    return Registry().with_resources([(url, document) for url in K8S_DEFINITIONS])


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def errors(values: dict) -> list[str]:
    """Schema errors of values merged over the chart's defaults, for the chart and its user-deployments subchart."""
    registry = kubernetes_registry()
    merged = helm_merge(read_yaml(CHART / "values.yaml"), values)
    found = []
    for schema_file, instance in (
        (CHART / "values.schema.json", merged),
        (CHART / "dagster-user-deployments" / "values.schema.json", {
            **helm_merge(read_yaml(CHART / "dagster-user-deployments" / "values.yaml"), merged["dagster-user-deployments"]),
            "global": helm_merge(read_yaml(CHART / "dagster-user-deployments" / "values.yaml").get("global", {}), merged["global"]),
        }),
    ):
        schema = json.loads(schema_file.read_text())
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        found += [f"{schema_file.parent.name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]
    return found


def test_our_values_validate_against_the_charts_schemas():
    assert errors(read_yaml(VALUES)) == []


def test_the_check_catches_bad_values_including_kubernetes_objects():
    values = read_yaml(VALUES)
    bad_mount = copy.deepcopy(values)
    bad_mount["dagster-user-deployments"]["deployments"][0]["volumeMounts"][0]["mountPath"] = 5  # a Kubernetes VolumeMount field
    assert any("mountPath" in e for e in errors(bad_mount))
    no_launcher_config = copy.deepcopy(values)
    no_launcher_config["runLauncher"]["config"] = {"k8sRunLauncher": None}
    assert errors(no_launcher_config)
    bad_limit = copy.deepcopy(values)
    bad_limit["concurrency"]["runs"]["tagConcurrencyLimits"][0]["limit"] = "one"
    assert any("limit" in e for e in errors(bad_limit))


def test_the_values_describe_our_deployment():
    from rag_assets.deployment import DEFAULT_SETTINGS, read_settings

    values = read_yaml(VALUES)
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert {"name": "RAG_EXECUTOR", "value": "k8s"} in code["env"] and code["includeConfigInLaunchedRuns"]["enabled"]
    assert any(e["name"] == "RAG_MILVUS_URI" for e in code["env"])
    assert f"{code['image']['repository']}:{code['image']['tag']}" != read_settings(DEFAULT_SETTINGS).gpu.image  # GPU ops: their own image
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    limits = {(limit["key"], json.dumps(limit.get("value"))) for limit in values["concurrency"]["runs"]["tagConcurrencyLimits"]}
    assert {("experiment", "null"), ("rag/node", '"gpu"'), ("dagster/backfill", "null")} <= limits
    assert values["concurrency"]["enabled"] and values["concurrency"]["pools"]["granularity"] == "op"


@pytest.mark.skipif(not SHARED_CHART.is_dir(), reason="no shared chart copy on this machine")
@pytest.mark.parametrize("name", ["values.schema.json", "values.yaml", "charts/dagster-user-deployments/values.schema.json",
                                  "charts/dagster-user-deployments/values.yaml"])
def test_the_bundled_chart_files_are_unchanged_copies(name: str):
    ours = CHART / name.removeprefix("charts/")
    assert ours.read_bytes() == (SHARED_CHART / name).read_bytes()
