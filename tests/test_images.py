"""Each image's requirement set covers exactly what the ops it runs import (deploy/requirements-*.txt).

No Docker here: the check is on the requirement files the Dockerfiles install. What an image needs is computed
from the source: every pod loads the code location (`definitions`, module-level imports), and runs its ops,
whose modules are followed through every import, module-level or inside a function. Imports guarded by
`except ImportError` are optional. Import names map to distributions through the installed packages' metadata.
The CPU image may run every op (the settings can put any workload on CPU); the GPU image runs the workloads the
settings may put on a GPU: embedding, training, inference.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

import pytest

import definitions
from rag_assets.embedding.bundled import LOCAL_MODELS

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = {"cpu": ROOT / "deploy" / "requirements-cpu.txt", "gpu": ROOT / "deploy" / "requirements-gpu.txt"}
OURS = ("rag_assets", "resources", "sensors", "definitions")
# Needed at run time without being imported by our code (the reason is the value).
RUNTIME_ONLY = {
    "dagster-k8s": "k8s_job_executor and K8sRunLauncher, in the run and step pods",
    "dagster-postgres": "the instance's run and event storage, opened by every run and step pod",
    **{m.package: "bundled embedding weights, imported by name (rag_assets.embedding.bundled)" for m in LOCAL_MODELS.values()},
}
GPU_CAPABLE_JOBS = ("ask_job", "sql_job")  # inference: on GPU nodes when the settings say so


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def guarded(node: ast.Try) -> bool:
    names = {n.id for h in node.handlers for n in ast.walk(h.type) if isinstance(n, ast.Name)} if node.handlers else set()
    return bool(names & {"ImportError", "ModuleNotFoundError"})


@cache
def imports_of(module: str, lazy: bool) -> frozenset[str]:
    """Dotted names `module` imports: at module level, or also inside functions (`lazy`); optional ones left out."""
    path = module_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not lazy:
                continue
            if isinstance(child, ast.Try) and guarded(child):
                for part in (*child.handlers, *child.orelse, *child.finalbody):
                    visit(part)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - child.level + 1] if child.level else []
                source = ".".join([*base, *([child.module] if child.module else [])])
                found.add(source)
                found.update(f"{source}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return frozenset(found)


def third_party_imports(start: list[str], lazy: bool) -> set[str]:
    """Third-party dotted names imported from `start`, following our own modules."""
    seen: set[str] = set()
    third: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in imports_of(module, lazy):
            top = name.split(".")[0]
            if top in OURS:
                parts = name.split(".")
                todo.extend(p for p in (".".join(parts[:k]) for k in range(1, len(parts) + 1)) if module_file(p))
            elif top not in sys.stdlib_module_names and top != "__future__":
                third.add(name)
    return third


@cache
def owners() -> dict[str, list[str]]:
    return md.packages_distributions()


def distribution_of(name: str) -> str | None:
    """The installed distribution providing an imported dotted name (a namespace package like `google` has several;
    None for the bare namespace, whose dotted imports name the distribution)."""
    top = name.split(".")[0]
    candidates = owners().get(top, [])
    if len(set(candidates)) == 1:
        return canonical(candidates[0])
    if name == top:
        return None
    spec = importlib.util.find_spec(".".join(name.split(".")[:2]))
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    for dist in dict.fromkeys(candidates):
        files = {Path(dist_file.locate()).resolve() for dist_file in md.distribution(dist).files or []}
        if origin in files:
            return canonical(dist)
    raise LookupError(f"no installed distribution provides {name}")


def op_modules(ops: set[str] | None = None) -> list[str]:
    """The modules defining the code location's ops (all, or those named)."""
    jobs = [definitions.defs.resolve_implicit_global_asset_job_def(), *(definitions.defs.resolve_job_def(j.name) for j in definitions.defs.jobs)]
    modules = {node.name: node.definition.compute_fn.decorated_fn.__module__ for job in jobs for node in job.graph.nodes}
    return sorted({m for op, m in modules.items() if ops is None or op in ops})


def gpu_image_ops() -> set[str]:
    graph = definitions.defs.resolve_implicit_global_asset_job_def().graph
    on_gpu = {node.name for node in graph.nodes if node.definition.tags.get("rag/node") == "gpu"}
    return on_gpu | {node.name for job in GPU_CAPABLE_JOBS for node in definitions.defs.resolve_job_def(job).graph.nodes}


def needed(image: str) -> set[str]:
    """Distributions an image needs: the code location's module-level imports, and its ops' modules' imports."""
    ops = None if image == "cpu" else gpu_image_ops()
    names = third_party_imports(["definitions"], lazy=False) | third_party_imports(op_modules(ops), lazy=True)
    return {d for d in map(distribution_of, names) if d}


def requirements(image: str) -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS[image].read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            pins[canonical(name.split("[")[0])] = version
    return pins


@pytest.mark.parametrize("image", ["cpu", "gpu"])
def test_each_image_installs_what_its_ops_import_and_nothing_else(image: str):
    listed = set(requirements(image))
    need = needed(image)
    runtime = {canonical(d) for d in RUNTIME_ONLY}
    assert need - listed == set(), f"{image} image misses {sorted(need - listed)}"
    assert listed - need - runtime == set(), f"{image} image installs {sorted(listed - need - runtime)}, which none of its ops import"


def test_pins_match_the_tested_versions():
    constraints = {canonical(n): v for n, _, v in (line.partition("==") for line in (ROOT / "constraints.txt").read_text().splitlines()) if v}
    for image in REQUIREMENTS:
        assert {d: v for d, v in requirements(image).items() if constraints.get(d) != v} == {}


def test_the_gpu_ops_need_torch_and_the_code_location_loads_without_it():
    assert "torch" in needed("gpu") and "sentence-transformers" in needed("gpu")
    assert {distribution_of(n) for n in third_party_imports(["definitions"], lazy=False)}.isdisjoint({"torch", "sentence-transformers"})
    assert gpu_image_ops() >= {"embeddings", "ranker_model"}


def test_every_needed_module_imports_in_this_environment():
    for image in REQUIREMENTS:
        for module in sorted(op_modules(None if image == "cpu" else gpu_image_ops())):
            assert importlib.util.find_spec(module) is not None
        for name in sorted(third_party_imports(["definitions"], lazy=True)):
            top = ".".join(name.split(".")[:2]) if name.split(".")[0] == "google" else name.split(".")[0]
            assert importlib.util.find_spec(top) is not None, name
