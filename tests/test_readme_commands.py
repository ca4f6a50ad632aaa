"""The README's two commands are what CI and pull requests run: a newcomer's first steps stay true."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT

README = (ROOT / "README.md").read_text()
QUICK_START = re.findall(r"```sh\n(.+?)\n```", README.split("## Quick start", 1)[1], re.S)[:2]
RUNTIME, DEVELOPMENT = "requirements.lock", "requirements-dev.lock"


def install(lock: str) -> str:
    return f"pip install --require-hashes -r {lock} && pip install --no-deps -e ."


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", text, re.M))


def test_the_quick_start_plans_dev_from_the_runtime_lock_and_tests_from_the_development_lock():
    plan, tests = QUICK_START
    assert "\n" not in plan and "\n" not in tests, "each command is one line a newcomer can paste"
    assert plan.endswith(f"{install(RUNTIME)} && estate plan --stack dev")
    assert tests.endswith(f"{install(DEVELOPMENT)} && python -m pytest")


def test_the_runtime_lock_holds_no_development_tool_and_the_development_lock_the_same_pins_and_more():
    runtime, development = pins(RUNTIME), pins(DEVELOPMENT)
    assert {"pulumi", "pulumi-aws", "pulumi-cloudflare", "pydantic", "boto3"} <= runtime.keys()
    assert not {"pytest", "moto", "ruff", "hypothesis", "mutmut"} & runtime.keys()
    assert {name: development.get(name) for name in runtime} == runtime
    assert {"pytest", "ruff"} <= development.keys()


def test_pulumi_install_reads_requirements_txt_which_is_the_hashed_runtime_lock():
    """Pulumi's pip toolchain runs `pip install -r requirements.txt` in the project root
    (pulumi/pulumi sdk/python/toolchain/pip.go, InstallDependencies)."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["runtime"]["options"] == {"toolchain": "pip", "virtualenv": ".venv"}
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == [f"-r {RUNTIME}"]
    hashed = re.findall(r"^[a-z0-9][a-z0-9._-]*==\S+ \\\n\s+--hash=sha256:[0-9a-f]{64}",
                        (ROOT / RUNTIME).read_text(), re.M)
    assert len(hashed) == len(pins(RUNTIME)) > 0, "pip's hash-checking mode needs every pin hashed"


def test_ci_lints_then_runs_the_readmes_test_command_after_the_readmes_plan():
    script = (ROOT / ".ci" / "run").read_text()
    assert f"--require-hashes -r {DEVELOPMENT}" in script and "estate plan --stack dev" in script
    assert script.rstrip().splitlines()[-2:] == [
        "ruff check .                            # lint: pyproject.toml [tool.ruff]", "python -m pytest"]


def test_every_pull_request_runs_the_readmes_test_command_and_the_linter():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "policy.yml").read_text())
    assert "pull_request" in workflow[True]   # YAML 1.1 reads the key `on` as True
    steps = {s["name"]: s["run"] for s in workflow["jobs"]["tests"]["steps"] if "run" in s}
    assert " ".join(steps["Install and test (the README's command)"].replace("\\\n", " ").split()) == QUICK_START[1]
    assert steps["Lint (pyproject.toml [tool.ruff])"].strip() == ".venv/bin/ruff check ."
