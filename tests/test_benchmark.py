"""Benchmark: plan a 10-region, 50-server estate offline (skipped in the normal test run).

Run: python -m pytest tests/test_benchmark.py --benchmark-only -n 0 --dist no
"""

from __future__ import annotations

import hashlib

import pytest
from conftest import ACCOUNT

from mcp_estate.components.estate import Estate
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.limits import estate_limit_problems
from mcp_estate.offline.runner import run_offline

REGIONS = {"americas": ["us-east-1", "us-east-2", "us-west-2", "ca-central-1", "sa-east-1"],
           "eu": ["eu-west-1", "eu-central-1", "eu-west-3", "eu-north-1"],
           "apac": ["ap-southeast-1"]}


def large_spec(servers: int = 50) -> dict:
    def image(name: str) -> str:
        digest = hashlib.sha256(name.encode()).hexdigest()
        return f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mcp/{name}@sha256:{digest}"
    groups = [{"name": group, "primary_region": regions[0], "strict": group == "eu",
               "countries": ["DE", "FR"] if group == "eu" else [],
               "regions": [{"name": r, "cidr": f"10.{100 + i}.0.0/16"} for r in regions]}
              for i, (group, regions) in enumerate(REGIONS.items())]
    for offset, group in enumerate(groups):   # distinct CIDRs across groups
        for j, region in enumerate(group["regions"]):
            region["cidr"] = f"10.{10 * offset + j + 100}.0.0/16"
    return {"environment": "prod", "owner": "travel-platform", "aws_account_id": ACCOUNT,
            "auth": {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"},
            "primary_region": "us-east-1",
            "domain": {"hostname": "mcp.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
            "residency_groups": groups,
            "servers": [{"name": f"server-{n:02d}", "image": image(f"server-{n:02d}"), "secrets": [f"key-{n:02d}"],
                         "permissions": [{"actions": ["dynamodb:GetItem", "dynamodb:PutItem"], "resources": ["state"]}]}
                        for n in range(servers)],
            "edge": {"health_server": "server-00"},
            "secrets": [{"name": "canary-oauth-client", "home_region": "us-east-1"}],
            "monitoring": {"probe_credentials_secret": "canary-oauth-client", "probe_token_cidrs": ["203.0.113.0/24"]},
            # 3 listener rules per server (route, metadata, health) on each region's ALB: 150 of them.
            "aws_quotas": {"rules_per_alb": 200}}


@pytest.mark.benchmark(min_rounds=1, max_time=1, warmup=False)
def test_plan_a_ten_region_fifty_server_estate(benchmark):
    raw = large_spec()
    spec = parse_spec(raw)   # every cross-field check: 50 servers fit one web ACL and one Pro zone

    def plan():
        return run_offline(lambda: Estate("mcp-estate", spec), stack="bench", account_id=ACCOUNT,
                           config={"mcp-estate:estate": raw}, inspect=inspect_resource,
                           inspect_all=lambda registered: estate_limit_problems(registered, spec.aws_quotas))

    resources = benchmark.pedantic(plan, rounds=1, iterations=1)
    assert sum(r.type == "aws:ecs/service:Service" for r in resources) == 500
