"""mcp-estate: MCP servers as a multi-region estate on AWS behind Cloudflare (README: Map of the code).

The repository keeps `components/` and `policies/` as top-level folders; they install as
`mcp_estate.components` and `mcp_estate.policies` (pyproject.toml's package-dir), so nothing is
installed under a generic top-level name. Run from a checkout where the project itself is not
installed (what `pulumi install` leaves: requirements.txt is the hashed lock, and pip cannot hash
the project), the same names are found in the folders beside this package. In a checkout they are
found there first, ahead of an installed copy: a second checkout (a git worktree) run with the first
one's editable install would otherwise build the first one's components with its own package.
"""

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_FOLDERS = {f"{__name__}.{folder}": _CHECKOUT / folder for folder in ("components", "policies")}


class _CheckoutFolders:
    """A meta path finder for `mcp_estate.components` and `mcp_estate.policies` in a checkout."""

    @staticmethod
    def find_spec(name: str, path=None, target=None) -> ModuleSpec | None:
        folder = _FOLDERS.get(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


if (_CHECKOUT / "pyproject.toml").is_file() and all((f / "__init__.py").is_file() for f in _FOLDERS.values()) \
        and not any(isinstance(finder, _CheckoutFolders) for finder in sys.meta_path):
    sys.meta_path.insert(0, _CheckoutFolders())
