"""The pack's entry point: `pulumi preview --policy-pack policies`, or the pack published with
`pulumi policy publish` (run from `policies/`) and enforced by a policy group.

Pulumi runs this file with `python -m pulumi.policy`, i.e. `runpy.run_path(<pack directory>)`: as a
script, outside any package, from wherever the pack lives (this repository's `policies/`, or the
directory a published version is unpacked into). The controls import each other relatively, so
this file loads its own directory as the package `policies` (the name `estate check` imports it
by) and builds the pack from the very list `estate check` evaluates. Nothing outside this
directory is imported: the pack's dependencies are its own requirements.txt.
"""

import importlib.util
import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

PACKAGE = "policies"


def load_pack_package() -> None:
    """Import this directory as `policies` (Python's recipe for importing a package from a path)."""
    here = Path(__file__).resolve().parent
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None and Path(loaded.__file__).resolve().parent == here:
        return
    spec = importlib.util.spec_from_file_location(PACKAGE, here / "__init__.py",
                                                  submodule_search_locations=[str(here)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)


load_pack_package()
from policies.catalogue import CONTROLS  # noqa: E402 - importable only once the package is loaded

PolicyPack(name="mcp-estate", enforcement_level=EnforcementLevel.MANDATORY,
           description="Controls for multi-region MCP server estates on AWS behind Cloudflare",
           policies=[control.policy for control in CONTROLS])
