"""The CrossGuard pack: `pulumi preview --policy-pack policies [--policy-pack-config policies/config/prod.json]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the project root: `policies`

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.catalogue import CONTROLS  # noqa: E402

PolicyPack(name="mcp-estate", enforcement_level=EnforcementLevel.MANDATORY,
           description="Controls for multi-region MCP server estates on AWS behind Cloudflare",
           policies=[control.policy for control in CONTROLS])
