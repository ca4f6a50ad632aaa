"""A Lambda's code is packaged from what is installed: its own modules, and pure-Python dependencies only."""

from __future__ import annotations

import importlib
import sys

import pytest

from mcp_estate.components.lambda_package import PackagingError, package_files


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A package `fn` on sys.path; `write(name, source)` adds a module to it."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(module: str, source: str) -> None:
        (tmp_path / "fn" / f"{module}.py").write_text(source)
        importlib.invalidate_caches()
    yield write
    for name in [name for name in sys.modules if name == "fn" or name.startswith("fn.")]:
        del sys.modules[name]   # finding a module imports its package: the next test has its own


def test_the_canary_is_its_handler_and_the_probe_without_the_probes_lazy_cli_import():
    assert sorted(package_files(["mcp_estate.runtime.canary_handler"])) == [
        "mcp_estate/__init__.py", "mcp_estate/contract/__init__.py", "mcp_estate/contract/names.py",
        "mcp_estate/runtime/__init__.py",
        "mcp_estate/runtime/canary_handler.py", "mcp_estate/runtime/probe.py", "mcp_estate/runtime/tokens.py"]


def test_own_modules_are_followed_and_the_standard_library_and_the_aws_sdk_are_left_to_the_runtime(project):
    project("handler", "import json\nimport boto3\nfrom . import helper\nfrom fn.other import thing\n")
    project("helper", "import os\n")
    project("other", "thing = 1\n")
    project("unused", "import idna\n")
    assert sorted(package_files(["fn.handler"])) == ["fn/__init__.py", "fn/handler.py", "fn/helper.py", "fn/other.py"]


def test_a_pure_python_dependency_is_vendored_with_its_metadata_but_not_this_installs_bookkeeping(project):
    project("handler", "import idna\n")
    files = package_files(["fn.handler"])
    assert "idna/__init__.py" in files and "idna/core.py" in files
    metadata = [path for path in files if ".dist-info/" in path]
    assert len(metadata) == 1 and metadata[0].endswith("/METADATA")
    assert not any(path.endswith(".pyc") for path in files)


def test_a_dependency_with_compiled_code_is_refused_by_name(project):
    project("handler", "import yaml\n")
    with pytest.raises(PackagingError, match="'pyyaml' is not pure Python"):
        package_files(["fn.handler"])


def test_an_import_nothing_installed_provides_is_refused(project):
    project("handler", "import no_such_module_anywhere\n")
    with pytest.raises(PackagingError, match="'no_such_module_anywhere' is imported but no installed"):
        package_files(["fn.handler"])
