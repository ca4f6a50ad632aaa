"""Opt-in capabilities a server declares: a regional cache and asynchronous work.

Both stay inside the residency rules: one cache and one queue per region, never replicated;
task state lives in the group's state table (README: Fast answers, later answers).
"""

from __future__ import annotations

from pydantic import Field

from .fields import Strict

# What the estate tells the tasks of a server declaring `cache` / `async` (README: Fast answers,
# later answers; spec.RESERVED_ENV refuses them in a server's `environment`). A worker gets none of
# the cache's: its role may not connect to the cache (components/async_worker.py).
CACHE_ENDPOINT_ENV = "MCP_CACHE_ENDPOINT"    # the region's cache endpoint (TLS)
CACHE_NAME_ENV = "MCP_CACHE_NAME"            # the cache's name, which an IAM auth token names
CACHE_USER_ENV = "MCP_CACHE_USER"            # the server's cache user (also the user id)
TASK_QUEUE_ENV = "MCP_TASK_QUEUE_URL"        # the server's task queue in the region
CACHE_ENV = frozenset({CACHE_ENDPOINT_ENV, CACHE_NAME_ENV, CACHE_USER_ENV})
CAPABILITY_ENV = CACHE_ENV | {TASK_QUEUE_ENV}


class Cache(Strict):
    """This server's share of the region's ElastiCache Serverless (Valkey) cache: the cache's limits
    are the sums of the shares of the servers using it."""
    max_data_gb: int = Field(5, ge=1, le=5000, description="Storage limit of the region's cache, GB")
    max_ecpu_per_second: int = Field(5000, ge=1000, le=15_000_000, description="Compute limit, ECPU/s")


class WorkerScaling(Strict):
    # At least one task: the scaling metric is backlog / running tasks, which has no value at zero
    # tasks, so target tracking could never scale out from zero.
    min: int = Field(1, ge=1, le=1000)
    max: int = Field(4, ge=1, le=1000)
    backlog_per_task: int = Field(100, ge=1, description="Visible messages per running worker task")


class AsyncWork(Strict):
    """A queue per region and a worker service running the server's image with its own command."""
    command: list[str] = Field(min_length=1, description="The worker's command (same pinned image)")
    cpu: int = 256
    memory: int = 512
    scaling: WorkerScaling = Field(default_factory=WorkerScaling)
    visibility_timeout_seconds: int = Field(300, ge=0, le=43200)
    max_receive_count: int = Field(5, ge=1, le=1000, description="Receives before a message goes to the DLQ")
    retention_days: int = Field(4, ge=1, le=14)
    max_age_alarm_minutes: int = Field(15, ge=1, description="Alarm when the oldest message is older")
    max_failed_tasks_per_minute: int = Field(
        5, ge=0, description="Failed tasks per minute (the worker's `mcp.task` lines, docs/telemetry.md) above "
                             "which the worker alarms and a deployment of it rolls back")
