"""The policy pack is a publishable unit: `policies/` alone, with its own pinned requirements.

`pulumi policy publish` uploads only the pack's directory, and Pulumi runs a pack with
`python -m pulumi.policy`, which is `runpy.run_path(<pack directory>)`. These tests run it the
same way from a copy of the directory, in a fresh interpreter that can import neither the
project nor this checkout, and check that it builds exactly the policies `estate check` runs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import distribution

import pytest
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mcp_estate.checking.check import CONTROLS

PACK = ROOT / "policies"
# Runs the pack as `python -m pulumi.policy` does, with PolicyPack recorded instead of served (the
# real one starts the analyzer's gRPC server and never returns), and the project made unimportable.
DRIVER = """
import importlib.abc, json, runpy, sys
import pulumi_policy

class OutsideThePack(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("mcp_estate", "components"):
            raise ModuleNotFoundError(f"the pack imported {name}, which is not part of it")

def recorded(name, policies, enforcement_level=None, **_):
    modules = {m: getattr(module, "__file__", None) for m, module in sys.modules.items()
               if m.partition(".")[0] == "policies"}
    print(json.dumps({"name": name, "level": enforcement_level.value, "policies": [p.name for p in policies],
                      "modules": modules}))

sys.meta_path.insert(0, OutsideThePack())
pulumi_policy.PolicyPack = recorded
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The pack as a published version unpacks: the directory's files, under another name."""
    where = tmp_path_factory.mktemp("pulumi-analyzer") / "pulumi-analyzer-mcp-estate-v0.1.0"
    shutil.copytree(PACK, where, ignore=shutil.ignore_patterns("__pycache__", "venv"))
    (where.parent / "driver.py").write_text(DRIVER)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(where.parent)}   # no PYTHONPATH
    result = subprocess.run([sys.executable, str(where.parent / "driver.py"), str(where)], cwd=where.parent,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return where, json.loads(result.stdout)


def test_the_pack_runs_from_its_own_directory_alone_with_the_policies_estate_check_runs(published):
    where, pack = published
    assert pack["name"] == "mcp-estate" and pack["level"] == "mandatory"
    assert pack["policies"] == [control.name for control in CONTROLS]
    assert len(pack["policies"]) == len(set(pack["policies"])) > 0
    assert {name: file and os.path.dirname(file) for name, file in pack["modules"].items()} == {
        name: str(where) for name in pack["modules"]}, "every module of the pack is loaded from the copy"


def test_the_pack_imports_only_itself_the_standard_library_and_its_requirements():
    """Every import, including those inside functions that the run above does not reach."""
    allowed = {"pulumi_policy", "policy_sentry", *sys.stdlib_module_names}
    outside = []
    for path in sorted(PACK.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            outside += [f"{path.name}: {name}" for name in names
                        if name.partition(".")[0] not in allowed and name.partition(".")[0] != "policies"]
    assert outside == []


def test_the_pack_project_file_is_versioned_and_names_the_virtualenv_pulumi_creates():
    project = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), "semantic version, bumped for every publish"
    assert project["description"]


def requirement_blocks(text: str) -> dict[str, str]:
    """`name==version` with its hashes, per distribution, comments dropped."""
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    blocks = re.split(r"\s*\\?\s*\n(?=[A-Za-z0-9])", "\n".join(line for line in lines if line))
    return {canonicalize_name(block.split("==", 1)[0]): " ".join(sorted(block.replace("\\", " ").split()))
            for block in blocks if "==" in block}


def test_the_packs_requirements_are_pinned_and_hashed_exactly_as_the_project_lock():
    pack = requirement_blocks((PACK / "requirements.txt").read_text())
    lock = requirement_blocks((ROOT / "requirements.lock").read_text())
    assert {"pulumi-policy", "pulumi", "policy-sentry"} <= set(pack)
    assert {name: lock.get(name) for name in pack} == pack
    assert all("--hash=sha256:" in block for block in pack.values())
    assert "-r " not in (PACK / "requirements.txt").read_text(), "nothing outside the pack's directory"


def test_the_packs_requirements_hold_every_dependency_of_what_it_imports():
    """pip's hash-checking mode installs nothing that is not listed: the closure must be complete."""
    needed, todo = set(), ["pulumi-policy", "pulumi", "policy-sentry"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name not in needed:
            needed.add(name)
            todo += [r.name for r in map(Requirement, distribution(name).requires or [])
                     if not r.marker or r.marker.evaluate({"extra": ""})]
    assert needed == set(requirement_blocks((PACK / "requirements.txt").read_text()))
