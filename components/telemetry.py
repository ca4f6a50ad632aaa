"""Per-tool telemetry of one MCP server in one region: metrics from its logs, and anomaly alarms.

The contract with the server (docs/telemetry.md): for every `tools/call` it handles, the server
writes ONE line to stdout, a JSON object (the awslogs driver ships it to the server's log group):

    {"event": "mcp.tool_call", "server": "booking", "tool": "search_flights",
     "outcome": "ok", "latency_ms": 182.4, "session": "3f1c9a0b2d4e6f70"}

- `event`: exactly "mcp.tool_call"; `server`: the server's name in the spec; `tool`: the tool's
  name as listed by `tools/list`;
- `outcome`: "ok", or "error" when the call failed (a JSON-RPC error or a result with `isError`);
- `latency_ms`: a number, from receiving the request to sending the result;
- `session`: an opaque correlation id, e.g. the first 16 hex digits of the SHA-256 of the
  `Mcp-Session-Id`, never the id itself (it authenticates the session). Never log arguments or
  results: they carry travellers' personal data.

Optional keys of the same line (docs/telemetry.md): `task_id` and `task_status` when the call is
task-augmented (MCP tasks: the status it answered, e.g. `working`), `cache` (`hit`, `miss` or
`bypass`) for a server declaring `cache`, and `sampling` / `elicitation`, the number of
server-initiated requests (sampling/createMessage, elicitation/create) the call sent the client.

A server declaring `async` has its worker write, for every task it finishes, one line
`{"event": "mcp.task", "server": ..., "task_id": ..., "status": "completed"|"failed"|"cancelled",
"latency_ms": ...}` to the same log group.

Other lines and other keys are ignored. Creates, on the server's log group:
- metric filters into namespace `MCPEstate/Tools`: `Calls`, `Errors` (count) and `Latency`
  (milliseconds) with dimensions `Server` and `Tool`, and `Calls` and `Errors` with `Server` alone
  (the per-server series the alarms watch); `SamplingRequests` and `ElicitationRequests` per
  `Server` (the sum of the counts); with `cache`, `CacheHits` and `CacheMisses` per `Server`; with
  `async`, `TasksFinished` and `WorkerErrors` (tasks `failed`) per `Server`. Dimension values come
  from the line's fields; each filter also requires `server` to be this server, so no process can
  write into another server's metrics. Metric filters with dimensions cannot emit a default value:
  a tool without calls has no data point, which the alarms treat as normal;
- an anomaly-detection alarm on the server's call rate (outside the band either way: a sudden
  surge, say an agent stuck in a loop, or a collapse) and one on its error count (above the band
  only: fewer errors than usual is no incident), to the region's alerts topic. The models learn
  from the metric's history: expect them to stay quiet for the first days.

Requires: the region's `aws.Provider` in `opts`; the server's log group (its name as an output,
so the filters wait for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .naming import child_opts

NAMESPACE = "MCPEstate/Tools"
EVENT = "mcp.tool_call"
TASK_EVENT = "mcp.task"                    # the worker's line, one per finished task
WORKER_ERRORS, TASKS_FINISHED = "WorkerErrors", "TasksFinished"
CACHE_HITS, CACHE_MISSES = "CacheHits", "CacheMisses"
PERIOD_SECONDS = 300
BAND_WIDTH = 2            # standard deviations of the anomaly-detection band
ANOMALOUS_PERIODS = 3     # consecutive periods outside the band before alarming


@dataclass
class ToolTelemetryArgs:
    server: str
    region: str
    name_prefix: str                      # the estate's physical-name prefix, e.g. mcp-estate-prod
    log_group_name: pulumi.Input[str]
    alerts_topic_arn: pulumi.Input[str]
    tags: dict[str, str]
    cache: bool = False                   # the server declares `cache`: hit and miss counts
    tasks: bool = False                   # ... `async`: its worker's finished and failed tasks


def filter_pattern(server: str, *conditions: str, event: str = EVENT) -> str:
    """A JSON filter pattern matching the server's lines of `event` (and `conditions`)."""
    terms = [f'($.event = "{event}")', f'($.server = "{server}")', *conditions]
    return "{ " + " && ".join(terms) + " }"


# metric filter key -> (metric, value, unit, extra conditions, dimensions beyond Server)
FILTERS: dict[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    "tool-calls": ("Calls", "1", "Count", (), ("Tool",)),
    "tool-errors": ("Errors", "1", "Count", ('($.outcome = "error")',), ("Tool",)),
    "tool-latency": ("Latency", "$.latency_ms", "Milliseconds", ("($.latency_ms >= 0)",), ("Tool",)),
    "calls": ("Calls", "1", "Count", (), ()),
    "errors": ("Errors", "1", "Count", ('($.outcome = "error")',), ()),
    # Server-initiated requests a call sent (issue 13: sampling abuse shows as a surge here).
    "sampling": ("SamplingRequests", "$.sampling", "Count", ("($.sampling > 0)",), ()),
    "elicitation": ("ElicitationRequests", "$.elicitation", "Count", ("($.elicitation > 0)",), ()),
}
CACHE_FILTERS = {
    "cache-hits": (CACHE_HITS, "1", "Count", ('($.cache = "hit")',), ()),
    "cache-misses": (CACHE_MISSES, "1", "Count", ('($.cache = "miss")',), ()),
}
# The worker's lines: (metric, value, unit, conditions, dimensions) as above, on event TASK_EVENT.
TASK_FILTERS = {
    "tasks-finished": (TASKS_FINISHED, "1", "Count", (), ()),
    "worker-errors": (WORKER_ERRORS, "1", "Count", ('($.status = "failed")',), ()),
}


def metric_filters(args: ToolTelemetryArgs) -> dict[str, tuple[str, dict]]:
    """Filter key -> (pattern, metric transformation) for the server's lines."""
    chosen = [(FILTERS, EVENT), *([(CACHE_FILTERS, EVENT)] if args.cache else []),
              *([(TASK_FILTERS, TASK_EVENT)] if args.tasks else [])]
    return {key: (filter_pattern(args.server, *conditions, event=event), {
        "name": metric, "namespace": NAMESPACE, "value": value, "unit": unit,
        "dimensions": {"Server": "$.server", **{d: f"$.{d.lower()}" for d in dimensions}}})
        for filters, event in chosen for key, (metric, value, unit, conditions, dimensions) in filters.items()}


class ToolTelemetry(pulumi.ComponentResource):
    def __init__(self, name: str, args: ToolTelemetryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:telemetry:ToolTelemetry", name, None, opts)
        for key, (pattern, transformation) in metric_filters(args).items():
            aws.cloudwatch.LogMetricFilter(
                f"{name}-{key}", name=f"{args.server}-{key}", log_group_name=args.log_group_name,
                pattern=pattern, metric_transformation=transformation, opts=child_opts(self))
        where = f"MCP server {args.server} in {args.region}"
        self.alarm_names = {
            "calls": self._anomaly(name, args, "Calls", "LessThanLowerOrGreaterThanUpperThreshold",
                                   f"{where}: tool calls per {PERIOD_SECONDS // 60} minutes outside their usual "
                                   "band (a surge, e.g. an agent looping, or a collapse)"),
            "errors": self._anomaly(name, args, "Errors", "GreaterThanUpperThreshold",
                                    f"{where}: failed tool calls per {PERIOD_SECONDS // 60} minutes above their "
                                    "usual band"),
        }
        self.register_outputs({"alarm_names": self.alarm_names})

    def _anomaly(self, name: str, args: ToolTelemetryArgs, metric: str, comparison: str, description: str) -> str:
        alarm_name = f"{args.name_prefix}-{args.server}-{args.region}-tool-{metric.lower()}-anomaly"
        aws.cloudwatch.MetricAlarm(
            f"{name}-{metric.lower()}-anomaly", name=alarm_name, alarm_description=description,
            comparison_operator=comparison, evaluation_periods=ANOMALOUS_PERIODS,
            datapoints_to_alarm=ANOMALOUS_PERIODS, threshold_metric_id="band", treat_missing_data="notBreaching",
            metric_queries=[
                {"id": "m", "return_data": True, "metric": {
                    "namespace": NAMESPACE, "metric_name": metric, "period": PERIOD_SECONDS, "stat": "Sum",
                    "dimensions": {"Server": args.server}}},
                {"id": "band", "expression": f"ANOMALY_DETECTION_BAND(m, {BAND_WIDTH})",
                 "label": f"{metric} (expected)", "return_data": True}],
            alarm_actions=[args.alerts_topic_arn], ok_actions=[args.alerts_topic_arn], tags=args.tags,
            opts=child_opts(self))
        return alarm_name
