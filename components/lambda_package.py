"""A Lambda function's code, packaged at plan time from what is installed: no download, no build step.

`lambda_archive(["mcp_estate.runtime.canary_handler"])` holds the entry modules, every module of their own
packages they import (with the packages' `__init__.py`), and the installed distributions of the
third-party modules they import, with those distributions' requirements for the Lambda runtime
(Python 3.12 on Linux arm64), file by file from each distribution's RECORD. The archive's paths
and contents depend only on the installed files, so the plan is the same on every run.

Imports are read from the source, at module level only: a lazy import inside a function (the
probe's CLI entry point importing the CLI) is not part of the function's code. The standard
library and the AWS SDK (boto3 and botocore, which Lambda's Python runtimes include) are not
packaged. Only pure-Python distributions can be vendored this way: one with compiled code was
built for this machine, not for Lambda's arm64, and packaging refuses it.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import cache
from importlib import metadata
from pathlib import Path, PurePosixPath

import pulumi
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

RUNTIME_PROVIDED = frozenset({"boto3", "botocore"})
# The marker environment of Lambda's python3.12 runtime on arm64 (Amazon Linux 2023).
LAMBDA_ENVIRONMENT = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
                      "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix",
                      "implementation_name": "cpython", "platform_python_implementation": "CPython",
                      "extra": ""}
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")


class PackagingError(Exception):
    """The code cannot be packaged for Lambda from what is installed."""


def lambda_archive(entry_modules: list[str]) -> pulumi.AssetArchive:
    return pulumi.AssetArchive({path: pulumi.FileAsset(str(source))
                                for path, source in sorted(package_files(entry_modules).items())})


def package_files(entry_modules: list[str]) -> dict[str, Path]:
    """Archive path -> installed file, for the entry modules and everything they import."""
    own = {name.split(".")[0] for name in entry_modules}
    files: dict[str, Path] = {}
    third_party: set[str] = set()
    pending, seen = list(entry_modules), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        source = _source(name)
        files.update(_with_packages(name, source))
        for imported in _imported(source, name):
            top = imported.split(".")[0]
            if top in own:
                pending.append(imported)
            elif top not in sys.stdlib_module_names and top not in RUNTIME_PROVIDED:
                third_party.add(top)
    for distribution in sorted(_closure(third_party)):
        files.update(_distribution_files(distribution))
    return files


def _source(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise PackagingError(f"module {module} has no Python source to package")
    return Path(spec.origin)


def _with_packages(module: str, source: Path) -> dict[str, Path]:
    """The module's file and its packages' `__init__.py`, at their import paths."""
    parts = module.split(".")
    files = {"/".join(parts) + ("/__init__.py" if source.name == "__init__.py" else ".py"): source}
    for depth in range(1, len(parts)):
        files["/".join(parts[:depth]) + "/__init__.py"] = _source(".".join(parts[:depth]))
    return files


def _imported(source: Path, module: str) -> set[str]:
    """Absolute names of what the module imports when it is imported (function bodies excluded)."""
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    pending: list[ast.AST] = list(ast.parse(source.read_text(), str(source)).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module
            names.add(base)
            # `from package import submodule` imports the submodule too
            names.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
        pending.extend(ast.iter_child_nodes(node))
    return names


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):   # the parent is a module, not a package
        return False


@cache
def _providers() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _closure(top_level_modules: set[str]) -> set[str]:
    """The distributions providing these modules, and what they require on Lambda."""
    pending = []
    for top in sorted(top_level_modules):
        providers = _providers().get(top)
        if not providers:
            raise PackagingError(f"'{top}' is imported but no installed distribution provides it: "
                                 "install it in the environment that runs `estate plan`")
        pending += providers
    found: set[str] = set()
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found or name in RUNTIME_PROVIDED:
            continue
        found.add(name)
        for requirement in map(Requirement, metadata.requires(name) or []):
            if requirement.marker is None or requirement.marker.evaluate(LAMBDA_ENVIRONMENT):
                pending.append(requirement.name)
    return found


def _distribution_files(name: str) -> dict[str, Path]:
    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise PackagingError(f"distribution '{name}' is required but not installed") from None
    if "Root-Is-Purelib: false" in (distribution.read_text("WHEEL") or ""):
        raise PackagingError(f"distribution '{name}' is not pure Python: it cannot be vendored for Lambda's "
                             "arm64 from this machine's build; package it as a layer built for the runtime")
    files = {}
    for entry in distribution.files or []:
        path = PurePosixPath(entry.as_posix())
        if path.parts[0] == ".." or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue   # scripts installed outside site-packages, and this interpreter's bytecode
        if path.parts[0].endswith(".dist-info") and path.name != "METADATA":
            continue   # RECORD, INSTALLER...: this installation's bookkeeping, not the package
        if path.suffix in COMPILED_SUFFIXES:
            raise PackagingError(f"distribution '{name}' ships compiled code ({path}): it cannot be "
                                 "vendored for Lambda's arm64 from this machine's build")
        files[str(path)] = Path(distribution.locate_file(entry))
    return files
