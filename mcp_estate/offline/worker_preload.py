"""What the processes planning regions (offline/parallel.py) are forked from: the estate's modules
imported and the fidelity inspector's shapes compiled for every type the estate creates. Pure Python:
nothing here runs a Pulumi program, so the forked processes inherit no threads."""

from mcp_estate.components import stack_layout  # noqa: F401  (the components, the SDKs, the contract)
from mcp_estate.policies.resource_inventory import KNOWN_TYPES

from .fidelity import prepare

# Providers are no reviewed production type (the pack leaves them out) but are inspected too.
TYPES = sorted(KNOWN_TYPES | {"pulumi:providers:aws", "pulumi:providers:cloudflare"})
prepare(TYPES)
