"""The layers of README "Map of the code": imports only downward, no cycles, and runtime code that
runs without the CLI, Pulumi or the spec's dependencies."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from collections import defaultdict

from conftest import ROOT

# Layer -> the layers (of ours) it may import, besides itself. Lowest first.
ALLOWED = {
    "mcp_estate.policies.iam_actions": set(),   # a leaf: policy_sentry only
    "mcp_estate.policies.secret_names": set(),   # a leaf: the standard library only
    "mcp_estate.contract": {"mcp_estate.policies.iam_actions", "mcp_estate.policies.secret_names"},
    "mcp_estate.runtime": {"mcp_estate.contract.names"},   # standard library and boto3 besides
    "mcp_estate.components": {"mcp_estate.contract"},
    "mcp_estate.policies": {"mcp_estate.policies.iam_actions",   # published alone: nothing outside policies/
                            "mcp_estate.policies.secret_names"},
    # resource_inventory: the types the estate creates, whose shapes the region workers compile ahead.
    "mcp_estate.offline": {"mcp_estate.contract", "mcp_estate.components", "mcp_estate.policies.iam_actions",
                           "mcp_estate.policies.resource_inventory"},
    "mcp_estate.checking": {"mcp_estate.contract", "mcp_estate.policies"},
    "mcp_estate.operations": {"mcp_estate.contract"},
    "mcp_estate.cli": {"mcp_estate"},
    "mcp_estate": set(),   # the namespace's __init__, which every module's import runs
}
FOLDERS = {"mcp_estate": ROOT / "mcp_estate", "mcp_estate.components": ROOT / "components",
           "mcp_estate.policies": ROOT / "policies"}


def modules() -> dict[str, tuple[ast.Module, bool]]:
    """Module name -> its syntax tree and whether it is a package's __init__."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__main__" or "venv" in parts:
                continue
            name = ".".join((package, *parts[:-1]) if parts[-1] == "__init__" else (package, *parts))
            found[name] = ast.parse(path.read_text(), str(path)), parts[-1] == "__init__"
    return found


def imports(name: str, tree: ast.Module, is_package: bool) -> set[str]:
    """Every module of ours this one imports, at any depth of its body."""
    package = name if is_package else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] == "mcp_estate"}


def layer(module: str) -> str:
    return max((candidate for candidate in ALLOWED if module == candidate or module.startswith(f"{candidate}.")),
               key=len)


def graph() -> dict[str, set[str]]:
    found = modules()
    edges = {}
    for name, (tree, is_package) in found.items():
        edges[name] = {target for target in imports(name, tree, is_package) if target in found}
    return edges


def test_every_module_imports_only_its_own_layer_and_the_layers_below():
    wrong = []
    for module, targets in graph().items():
        own = layer(module)
        for target in targets:
            if target != "mcp_estate" and layer(target) != own and not any(target == a or target.startswith(f"{a}.")
                                                for a in ALLOWED[own]):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_a_planted_upward_import_is_caught():
    tree = ast.parse("from mcp_estate.cli import main\n")
    targets = imports("mcp_estate.runtime.probe", tree, False)
    assert targets == {"mcp_estate.cli", "mcp_estate.cli.main"}
    assert layer("mcp_estate.cli") not in ALLOWED[layer("mcp_estate.runtime.probe")]


def test_there_are_no_import_cycles():
    edges = graph()
    state: dict[str, int] = defaultdict(int)   # 0 new, 1 on the path, 2 done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state[target] == 1:
                cycles.append(path[path.index(target):] + [target])
            elif state[target] == 0:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if state[node] == 0:
            visit(node, [node])
    assert cycles == []


BLOCKER = """
import importlib.abc, sys
BLOCKED = ("pulumi", "pulumi_aws", "pulumi_cloudflare", "pulumi_policy", "pydantic", "yaml",
           "mcp_estate.cli", "mcp_estate.components", "mcp_estate.policies", "mcp_estate.offline",
           "mcp_estate.checking", "mcp_estate.operations", "mcp_estate.contract.spec")

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"runtime code imported {name}")

sys.meta_path.insert(0, Blocked())
import mcp_estate.runtime.probe, mcp_estate.runtime.canary_handler
print("ok")
"""


def test_the_runtime_imports_neither_the_cli_nor_pulumi_nor_the_specs_dependencies():
    result = subprocess.run([sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_the_blocker_would_catch_a_runtime_module_importing_the_cli():
    planted = BLOCKER.replace("import mcp_estate.runtime.probe,", "import mcp_estate.cli,")
    result = subprocess.run([sys.executable, "-c", planted], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "imported mcp_estate.cli" in result.stderr


MAP = re.search(r"## Map of the code\n(.+?)(?=\n## |\Z)", (ROOT / "README.md").read_text(), re.S)


def test_the_readmes_map_names_every_package_and_only_packages_that_exist():
    named = set(re.findall(r"^- `([\w/]+)/`", MAP.group(1), re.M))
    packages = {"components", "policies", "mcp_estate"} | {
        f"mcp_estate/{p.parent.name}" for p in (ROOT / "mcp_estate").glob("*/__init__.py")} | {
        p.parent.name for p in ROOT.glob("*/PulumiPlugin.yaml")}   # a plugin folder (provider/) is a package too
    assert named == packages
