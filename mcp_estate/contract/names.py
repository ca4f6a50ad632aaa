"""Physical names and the contract tags, computed in one place: the components name and tag what they
create with these, and `estate verify` and the canary find it by the same functions. Standard library
only: the canary's Lambda imports this module.

A child's URN holds only its parent's *type*, not its name, so every child name starts with its
component's name, which itself comes from stable spec names (server, region, group), never from a
list position.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ESTATE = "mcp-estate"   # the Estate component's name (__main__.py): every physical name starts with it

# The contract tags: on every resource; `estate verify` and the stack policies find resources by them.
STACK_TAG, ENVIRONMENT_TAG, OWNER_TAG = "mcp-estate:stack", "mcp-estate:environment", "mcp-estate:owner"
SERVER_TAG = "mcp-estate:server"
SECRET_TAG = "mcp-estate:secret"   # on each estate secret: its name in the spec (`estate verify` finds it by it)
REGION_TAG, GROUP_TAG = "mcp-estate:region", "mcp-estate:residency-group"
RESIDENCY_TAG = "mcp-estate:residency"   # "strict" | "open", on every resource of a group
COUNTRIES_TAG = "mcp-estate:countries"   # "AT BE DE ...", on a strict group's state table

# The canary's metrics: the Lambda writes them, the alarms and dashboards read them.
CANARY_NAMESPACE = "MCPEstate/Canary"
# The test listener rule of a CANARY/LINEAR service matches this header (and a VPC source address);
# the deployment hook sends it to reach the new revision (components/staged_deployment.py).
TEST_ROUTE_HEADER, TEST_ROUTE_VALUE = "X-Mcp-Estate-Route", "test"
CANARY_PATHS = ("alb", "edge")   # through the region's ALB directly, and through Cloudflare's edge
CANARY_SUCCESS_METRIC = "Success"   # 1 for a probe that succeeded, 0 for one that failed


@dataclass(frozen=True)
class ContractTags:
    """The tags every resource carries (README: Operations, `estate verify`)."""

    stack: str
    environment: str
    owner: str

    def __call__(self, *, region: str | None = None, server: str | None = None,
                 group: str | None = None, secret: str | None = None) -> dict[str, str]:
        tags = {STACK_TAG: self.stack, ENVIRONMENT_TAG: self.environment, OWNER_TAG: self.owner}
        for key, value in ((REGION_TAG, region), (SERVER_TAG, server), (GROUP_TAG, group), (SECRET_TAG, secret)):
            if value is not None:
                tags[key] = value
        return tags


@dataclass(frozen=True)
class PhysicalNames:
    """The names of an estate's stateful resources, from its prefix (`mcp-estate-<stack>`)."""

    prefix: str

    @classmethod
    def of_stack(cls, stack: str) -> PhysicalNames:
        return cls(f"{ESTATE}-{stack}")

    def state_table(self, group: str) -> str:
        return f"{self.prefix}-{group}-state"

    def secret(self, secret: str) -> str:
        return f"{self.prefix}/{secret}"

    def log_group(self, server: str) -> str:
        return f"/{self.prefix}/{server}"

    def flow_logs_role(self, region: str) -> str:
        return iam_name(f"{self.prefix}-{region}-flow-logs")

    def server_alarm_prefix(self, server: str, region: str) -> str:
        """Every alarm of a server in a region starts with it: the service's and the canary's."""
        return f"{self.prefix}-{server}-{region}-"

    def data_role(self, server: str, group: str) -> str:
        """A server's per-user data role in a residency group (components/per_user_data.py)."""
        return iam_name(f"{self.prefix}-{server}-{group}-data")

    def ecr_replica_role(self) -> str:
        return iam_name(f"{self.prefix}-ecr-replica-creation")

    # -- capabilities (README: Fast answers, later answers) ------------------------------------

    def cache(self, region: str) -> str:
        """The region's ElastiCache Serverless cache (one per region, never replicated)."""
        return bounded_name(f"{self.prefix}-{region}", ELASTICACHE_NAME_LIMIT)

    def cache_user(self, server: str) -> str:
        """A server's cache user: its id and, for IAM authentication, its name (the same in every region)."""
        return bounded_name(f"{self.prefix}-{server}", ELASTICACHE_NAME_LIMIT)

    def cache_user_group(self) -> str:
        return bounded_name(f"{self.prefix}-cache-users", ELASTICACHE_NAME_LIMIT)

    def task_queue(self, server: str) -> str:
        return f"{self.prefix}-{server}-tasks"            # SQS: 80 characters; at most 62 here

    def dead_letter_queue(self, server: str) -> str:
        return f"{self.prefix}-{server}-tasks-dlq"

    def worker_role(self, server: str, group: str) -> str:
        return iam_name(f"{self.prefix}-{server}-{group}-worker")


IAM_NAME_LIMIT = 64          # IAM role and policy names
ELASTICACHE_NAME_LIMIT = 40  # serverless cache names, user and user-group ids


def iam_name(name: str) -> str:
    """`name` if IAM accepts its length, else its start and a hash of the whole: still unique, still
    stable (a long stack or estate name must not make `pulumi up` fail on a role's name)."""
    return bounded_name(name, IAM_NAME_LIMIT)


def bounded_name(name: str, limit: int) -> str:
    """`name` if it fits in `limit` characters, else its start and a hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:limit - len(digest) - 1].rstrip('-')}-{digest}"
