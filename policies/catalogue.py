"""Every control of the pack, in one list: importing a rules module registers its policies; the list's
order is the pack's, by module as named here, then as each module declares them, whatever imported what first."""

from . import (capabilities, container_runtime, data_protection, deployment_safety, edge_origin, escalation,
               least_privilege, mcp_surface, per_user_data, private_networking, resource_inventory, stack_topology,
               staged_rollout, supply_chain, token_validation)
from . import edge_delegation
from .control import CONTROLS as REGISTERED
from .control import Control, Risk

MODULES = (container_runtime, data_protection, deployment_safety, edge_origin, escalation, least_privilege,
           private_networking, resource_inventory, stack_topology, supply_chain, per_user_data, staged_rollout,
           token_validation, mcp_surface, capabilities, edge_delegation)
_RANK = {module.__name__: rank for rank, module in enumerate(MODULES)}
CONTROLS: list[Control] = sorted(REGISTERED, key=lambda c: (_RANK[c.module], REGISTERED.index(c)))

__all__ = ["CONTROLS", "Control", "Risk"]
