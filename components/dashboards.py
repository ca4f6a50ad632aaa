"""CloudWatch dashboards: one per region (what runs there), one global (every region side by side).

A region's dashboard graphs, per server: the ALB's 5xx, p99 latency and healthy targets, the ECS
service's CPU and memory, the canary's success and probe latency through the ALB and through the
edge, and the per-tool calls and errors of `components/telemetry.py` (a SEARCH expression, so a
tool appears without a redeploy). The global dashboard puts the regions side by side: canary
success, ALB 5xx and p99, and tool calls and errors per region.

Servers declaring capabilities (README: Fast answers, later answers) add widgets to their region's
dashboard, and a region without them shows none: with `async`, the task queue's backlog (visible
messages) and the age of its oldest message, the dead-letter queue's depth, the worker's running
tasks (Container Insights) and failed tasks (`WorkerErrors`, components/telemetry.py); with
`cache`, the hit rate of the region's cache (ElastiCache Serverless `CacheHitRate`, dimension
`clusterId`, the cache's name) and each server's own hit rate from its tool-call lines
(`CacheHits` / (`CacheHits` + `CacheMisses`)).

Dashboards are global in an account (one name space for every region); each widget names the
region its metrics live in. The bodies are plain data with outputs only where AWS assigns the
value (ALB and target-group ARN suffixes, service names).

Requires: the providers of every region (each region's dashboard is managed through its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.names import CANARY_NAMESPACE as CANARY
from mcp_estate.contract.names import CANARY_PATHS as PATHS
from mcp_estate.contract.names import CANARY_SUCCESS_METRIC as SUCCESS

from .naming import child_opts
from .telemetry import CACHE_HITS, CACHE_MISSES, WORKER_ERRORS
from .telemetry import NAMESPACE as TOOLS

WIDTH, HEIGHT = 12, 6
PERIOD = 60


@dataclass
class DashboardWork:
    """A server's asynchronous work in a region (plan-time names)."""
    queue_name: str
    dead_letter_queue_name: str
    worker_service_name: str


@dataclass
class DashboardService:
    server: str
    service_name: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    work: DashboardWork | None = None     # the server declares `async`
    cache: bool = False                   # ... `cache`


@dataclass
class DashboardRegion:
    name: str
    cluster_name: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    services: list[DashboardService]
    cache_name: str | None = None         # the region's cache, when a server declares one


@dataclass
class DashboardsArgs:
    name_prefix: str                      # the estate's physical-name prefix, e.g. mcp-estate-prod
    home_region: str                      # where the global dashboard is managed
    regions: list[DashboardRegion]
    providers: dict[str, aws.Provider]


def metric_widget(title: str, region: str, metrics: list[list], stat: str, period: int = PERIOD) -> dict:
    return {"type": "metric", "width": WIDTH, "height": HEIGHT, "properties": {
        "title": title, "region": region, "view": "timeSeries", "stat": stat, "period": period,
        "metrics": metrics}}


def search(metric: str) -> list:
    """Every Server/Tool series of a tool metric, found when the dashboard is viewed."""
    return [{"expression": f"SEARCH('{{{TOOLS},Server,Tool}} MetricName=\"{metric}\"', 'Sum', 300)",
             "id": metric.lower(), "label": metric.lower()}]


def alb_metric(region: DashboardRegion, metric: str, service: DashboardService, *, everywhere: bool = False) -> list:
    """A target group's ALB metric; `everywhere`: on a widget of every region's metrics."""
    options = {"label": f"{service.server} {region.name}", "region": region.name} if everywhere else \
        {"label": service.server}
    return ["AWS/ApplicationELB", metric, "LoadBalancer", region.alb_arn_suffix,
            "TargetGroup", service.target_group_arn_suffix, options]


def ecs_metric(region: DashboardRegion, metric: str, service: DashboardService) -> list:
    return ["AWS/ECS", metric, "ClusterName", region.cluster_name, "ServiceName", service.service_name,
            {"label": service.server}]


def canary_metric(region: str, server: str, path: str, metric: str, **dimensions: str) -> list:
    extra = [part for key, value in dimensions.items() for part in (key, value)]
    return [CANARY, metric, "Server", server, "Region", region, "Path", path, *extra,
            {"label": f"{server} via {path}", "region": region}]


def region_widgets(region: DashboardRegion) -> list[dict]:
    name, services = region.name, region.services
    return [
        metric_widget("ALB 5xx per minute", name,
                      [alb_metric(region, "HTTPCode_Target_5XX_Count", s) for s in services], "Sum"),
        metric_widget("Latency p99 (s)", name, [alb_metric(region, "TargetResponseTime", s) for s in services], "p99"),
        metric_widget("Healthy tasks", name,
                      [alb_metric(region, "HealthyHostCount", s) for s in services], "Minimum"),
        metric_widget("ECS CPU %", name, [ecs_metric(region, "CPUUtilization", s) for s in services], "Average"),
        metric_widget("ECS memory %", name, [ecs_metric(region, "MemoryUtilization", s) for s in services],
                      "Average"),
        metric_widget("Canary success (1 = ok)", name,
                      [canary_metric(name, s.server, p, SUCCESS) for s in services for p in PATHS], "Minimum"),
        metric_widget("Canary probe latency (ms)", name,
                      [canary_metric(name, s.server, p, "Latency", Step="total") for s in services for p in PATHS],
                      "Maximum"),
        metric_widget("Tool calls per 5 minutes", name, [search("Calls")], "Sum", 300),
        metric_widget("Tool errors per 5 minutes", name, [search("Errors")], "Sum", 300),
    ]


def queue_metric(region: str, metric: str, queue: str, server: str) -> list:
    return ["AWS/SQS", metric, "QueueName", queue, {"label": server, "region": region}]


def work_widgets(region: DashboardRegion) -> list[dict]:
    """Per region, for the servers declaring `async` (none without)."""
    name, working = region.name, [s for s in region.services if s.work]
    if not working:
        return []
    return [
        metric_widget("Task queue backlog (visible messages)", name, [queue_metric(
            name, "ApproximateNumberOfMessagesVisible", s.work.queue_name, s.server) for s in working], "Maximum"),
        metric_widget("Age of the oldest task (s)", name, [queue_metric(
            name, "ApproximateAgeOfOldestMessage", s.work.queue_name, s.server) for s in working], "Maximum"),
        metric_widget("Dead-lettered tasks (messages in the DLQ)", name, [queue_metric(
            name, "ApproximateNumberOfMessagesVisible", s.work.dead_letter_queue_name, s.server)
            for s in working], "Maximum"),
        metric_widget("Worker tasks running", name, [
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", region.cluster_name,
             "ServiceName", s.work.worker_service_name, {"label": s.server}] for s in working], "Average"),
        metric_widget("Worker failed tasks per minute", name, [
            [TOOLS, WORKER_ERRORS, "Server", s.server, {"label": s.server}] for s in working], "Sum"),
    ]


def cache_widgets(region: DashboardRegion) -> list[dict]:
    """The region's cache hit rate, and each declaring server's own from its lines (none without)."""
    caching = [s for s in region.services if s.cache]
    if not caching or region.cache_name is None:
        return []
    metrics: list[list] = [["AWS/ElastiCache", "CacheHitRate", "clusterId", region.cache_name,
                            {"label": f"cache {region.cache_name}", "stat": "Average"}]]
    for i, s in enumerate(caching):
        metrics += [[TOOLS, CACHE_HITS, "Server", s.server, {"id": f"hits{i}", "visible": False}],
                    [TOOLS, CACHE_MISSES, "Server", s.server, {"id": f"misses{i}", "visible": False}],
                    [{"expression": f"100 * hits{i} / (hits{i} + misses{i})", "label": f"{s.server} tool calls",
                      "id": f"rate{i}"}]]
    return [metric_widget("Cache hit rate (%)", region.name, metrics, "Sum", 300)]


def global_widgets(regions: list[DashboardRegion], home: str) -> list[dict]:
    """Every metric names its own region; `home` is only the widgets' default."""
    return [
        metric_widget("Canary success through the ALB, every region", home,
                      [canary_metric(r.name, s.server, "alb", SUCCESS) for r in regions for s in r.services],
                      "Minimum"),
        metric_widget("Canary success through the edge, every region", home,
                      [canary_metric(r.name, s.server, "edge", SUCCESS) for r in regions for s in r.services],
                      "Minimum"),
        metric_widget("ALB 5xx per minute, every region", home,
                      [alb_metric(r, "HTTPCode_Target_5XX_Count", s, everywhere=True)
                       for r in regions for s in r.services], "Sum"),
        metric_widget("Latency p99 (s), every region", home,
                      [alb_metric(r, "TargetResponseTime", s, everywhere=True) for r in regions for s in r.services],
                      "p99"),
        *[metric_widget(f"Tool calls and errors per 5 minutes, {r.name}", r.name,
                        [search("Calls"), search("Errors")], "Sum", 300)
          for r in regions],
    ]


class Dashboards(pulumi.ComponentResource):
    def __init__(self, name: str, args: DashboardsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:dashboards:Dashboards", name, None, opts)
        for region in args.regions:
            widgets = [*region_widgets(region), *work_widgets(region), *cache_widgets(region)]
            self._dashboard(f"{name}-{region.name}", f"{args.name_prefix}-{region.name}", widgets,
                            args.providers[region.name])
        self._dashboard(f"{name}-global", f"{args.name_prefix}-global", global_widgets(args.regions, args.home_region),
                        args.providers[args.home_region])
        self.register_outputs({})

    def _dashboard(self, resource_name: str, dashboard_name: str, widgets: list[dict],
                   provider: aws.Provider) -> None:
        aws.cloudwatch.Dashboard(resource_name, dashboard_name=dashboard_name, opts=child_opts(self, provider=provider),
                                 dashboard_body=pulumi.Output.json_dumps({"widgets": widgets}))
