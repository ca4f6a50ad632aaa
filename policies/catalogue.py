"""Every control of the pack, in one list: importing a rules module registers its policies."""

from . import (container_runtime, data_protection, deployment_safety, edge_origin,  # noqa: F401
               least_privilege, private_networking, resource_inventory, stack_topology, supply_chain)
from .control import CONTROLS, Control, Risk

__all__ = ["CONTROLS", "Control", "Risk"]
