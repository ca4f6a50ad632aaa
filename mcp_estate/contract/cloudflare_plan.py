"""What each Cloudflare plan includes of the features the edge builds (README: Cloudflare prerequisites).

The spec names the zone's plan (`domain.cloudflare_plan`); the edge builds only what that plan
includes, and the spec rejects what it cannot give. Figures from Cloudflare's plan table
(cloudflare-docs `src/content/plans/index.json`: WAF custom rules, managed rulesets, rate limiting
rules, Load Balancing origins) and its rate-limiting table
(`src/content/partials/waf/rate-limiting-availability-by-plan.mdx`: rule fields, counting periods,
mitigation timeouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Protocol

CloudflarePlan = Literal["free", "pro", "business", "enterprise"]

MANAGED_RULESETS = {   # Cloudflare-published ids (waf/managed-rules)
    "cloudflare_managed": "efb7b8c949ac4650a09736fc376e9aee",
    "owasp_core": "4814384a9e5d4991b9815dcfc25d2f1f",
    # On every plan; Cloudflare: not needed where its Managed Ruleset runs.
    "cloudflare_free_managed": "77454fe2d30c4220b5701f6fdfb893ba",
}


@dataclass(frozen=True)
class PlanAllowance:
    custom_rules: int                   # WAF custom rules per zone
    ratelimit_rules: int                # rate limiting rules per zone
    max_ratelimit_period: int           # longest counting period, seconds
    max_mitigation_timeout: int         # longest block after the limit is hit, seconds
    ratelimit_host_field: bool          # `http.host` in a rate limiting rule (Free: path only)
    managed_rulesets: tuple[str, ...]   # keys of MANAGED_RULESETS the zone may execute
    load_balancer_origins: int | None   # Load Balancing add-on origins; None: by contract

    @property
    def ratelimit_period(self) -> int:
        """The edge counts a minute where the plan allows, else its longest period (Free: 10 s)."""
        return min(60, self.max_ratelimit_period)

    @property
    def mitigation_timeout(self) -> int:
        """Ten minutes' block where the plan allows, else its longest (Free: 10 s)."""
        return min(600, self.max_mitigation_timeout)


EXPRESSION_MAX_CHARS = 4096         # one rule expression (Rules language: fields and expressions)
ADVANCED_RATELIMIT_RULES = 100      # Enterprise with Advanced Rate Limiting
# Origin (AWS WAF, regional web ACL): rate-based rules per web ACL, and the web ACL capacity
# above which AWS charges more and the most it allows (AWS WAF quotas, WCU pages).
WAF_RATE_BASED_RULES = 10
WAF_WCU_INCLUDED, WAF_WCU_MAX = 1500, 5000

PAID_MANAGED = ("cloudflare_managed", "owasp_core")
ALLOWANCES: dict[str, PlanAllowance] = {
    "free": PlanAllowance(5, 1, 10, 10, False, ("cloudflare_free_managed",), 20),
    "pro": PlanAllowance(20, 2, 60, 3600, True, PAID_MANAGED, 20),
    "business": PlanAllowance(100, 5, 600, 86400, True, PAID_MANAGED, 20),
    # Rate limiting rules on Enterprise need application security in the contract.
    "enterprise": PlanAllowance(1000, 5, 65535, 86400, True, PAID_MANAGED, None),
}


class _Group(Protocol):
    strict: bool
    regions: list


def load_balancer_origins(groups: Iterable[_Group]) -> int:
    """Origins the edge puts in pools: one per region, plus each strict group's last-resort pool
    holding every region of the group again (components/edge.py)."""
    return sum(len(g.regions) * (2 if g.strict else 1) for g in groups)
