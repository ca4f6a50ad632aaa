"""The component package's plugin: serves `McpEstate` (components/package.py) to the Pulumi engine.

The Python language host runs this folder as `python provider/ <engine address>`, which puts only
this folder on `sys.path`: the checkout's root goes first, so the estate is built from this checkout
(where `mcp_estate` also finds `components/`), whether or not the project is installed in the virtualenv.
"""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp_estate.components.package import serve  # noqa: E402 (needs the checkout on sys.path)

if __name__ == "__main__":
    serve(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"], sys.argv[1:])
