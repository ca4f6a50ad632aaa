"""One region's compute front: the ECS cluster and the public ALB that only Cloudflare can reach.

Creates, per region:
- an ECS cluster with Container Insights (enhanced: per-task and per-container metrics);
- the ALB security group: TCP 443 only from Cloudflare's ranges (a managed prefix list per
  address family); no egress here, each service adds its own ALB->task rule;
- the access-log bucket: private, owner-enforced, SSE-S3 (the only encryption ALB log
  delivery supports), logs expiring with the estate's retention, writable only by the
  region's ELB log-delivery account under `alb/`, and TLS-only;
- the internet-facing ALB in the public subnets (invalid headers dropped, strictest desync
  mitigation, a one-hour idle timeout for long-lived Streamable HTTP / SSE streams);
- an HTTPS listener (TLS 1.3/1.2 policy, default 404: services add their own rules) and an
  HTTP listener that only redirects to HTTPS;
- the residency guard: on the HTTPS listener, rules at priorities 1-50 (below every server route,
  so evaluated first) answering 403 to requests whose `CF-IPCountry` is a country of a strict
  residency group the region is not in. Cloudflare geo-steers a proxied request by the data
  center serving it, not by the visitor's country, so a strict group's visitor can be steered
  here; Cloudflare sets `CF-IPCountry` from the visitor's IP, and only Cloudflare reaches the ALB.
  Requests without the header (the canary's direct ALB probe) are not refused;
- a WAFv2 web ACL on the ALB: a per-client rate limit keyed on the visitor's address as
  Cloudflare forwards it, and the common and known-bad-inputs rule sets (which read the request,
  not its source address); with `auth` on, per server a rule answering an MCP request without a
  bearer token with 401 and the `WWW-Authenticate` challenge (components/token_validation.py);
- the alert topic (KMS-encrypted) with one email subscription per address.

Requires: the region's `aws.Provider` in `opts`; `alert_key_arn` a key whose policy lets
CloudWatch (and SNS) use it, or alarms cannot publish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.aws_limits import CONDITION_VALUES_PER_RULE, NAME_LIMITS
from mcp_estate.contract.iam_documents import document
from mcp_estate.contract.names import bounded_name
from mcp_estate.contract.resource_server import ResourceServer
from mcp_estate.contract.spec import GUARD_PRIORITIES

from .naming import child_opts
from .token_validation import CHALLENGE_PRIORITY, waf_challenge_body, waf_challenge_rule

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
LOG_PREFIX = "alb"
COUNTRY_HEADER = "CF-IPCountry"   # Cloudflare's visitor country (zone setting ip_geolocation)
VALUES_PER_RULE = CONDITION_VALUES_PER_RULE.value   # ALB quota: condition values per rule, all conditions
GUARD_STATUS = "403"
GUARD_BODY = ("This request comes from a country whose residency group is served in other regions: it must be "
              "served in its residency group. Retry through the public hostname.\n")

LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"


@dataclass
class RegionComputeArgs:
    region: str
    account_id: str
    name_prefix: str                       # physical names: cluster, web ACL, topic
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    certificate_arn: pulumi.Input[str]     # validated ACM certificate for the estate hostname
    cloudflare_ipv4_cidrs: list[str]
    cloudflare_ipv6_cidrs: list[str]
    deletion_protection: bool
    origin_rate_limit: int                 # requests per client IP per 5 minutes
    alert_key_arn: pulumi.Input[str]
    alert_emails: list[str]
    log_retention_days: int
    tags: dict[str, str]
    refused_countries: list[str] = field(default_factory=list)   # strict groups' countries, not this region's
    # Servers whose MCP path answers 401 with their challenge to requests without a bearer token.
    token_challenges: list[ResourceServer] = field(default_factory=list)
    surface_rules: list[dict] = field(default_factory=list)       # MCP surface rules (priorities 200 and up)


def guard_rules(countries: list[str]) -> list[dict]:
    """The residency guard's rules: priority, CF-IPCountry values (5 a rule) and a fixed 403."""
    ordered = sorted(set(countries))
    chunks = [ordered[i:i + VALUES_PER_RULE] for i in range(0, len(ordered), VALUES_PER_RULE)]
    if len(chunks) > GUARD_PRIORITIES:   # cannot happen: 249 ISO countries fit in 50 rules
        raise ValueError(f"{len(ordered)} refused countries need {len(chunks)} guard rules, over {GUARD_PRIORITIES}")
    return [{"priority": priority, "values": chunk} for priority, chunk in enumerate(chunks, start=1)]


def log_bucket_policy(bucket_arn: pulumi.Input[str], elb_account_arn: str, account_id: str) -> dict:
    """ALB log delivery may write its own prefix; nobody may use the bucket without TLS."""
    return document([
        {"Sid": "AllowAlbLogDelivery", "Effect": "Allow", "Principal": {"AWS": elb_account_arn},
         "Action": "s3:PutObject",
         "Resource": pulumi.Output.concat(bucket_arn, f"/{LOG_PREFIX}/AWSLogs/{account_id}/*")},
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}])


def visibility(metric: str) -> dict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


def managed_rule_group(name: str, priority: int, overrides: list[dict] | None = None) -> dict:
    statement = {"vendor_name": "AWS", "name": name}
    if overrides:
        statement["rule_action_overrides"] = overrides
    return {"name": name, "priority": priority, "override_action": {"none": {}},
            "statement": {"managed_rule_group_statement": statement}, "visibility_config": visibility(name)}


def rate_limit_rule(limit: int, priority: int) -> dict:
    # Behind Cloudflare every source IP is a Cloudflare edge: count the visitor's IP, which
    # Cloudflare sets in CF-Connecting-IP (the SG admits nobody else to spoof it).
    return {"name": "rate-per-client-ip", "priority": priority, "action": {"block": {}},
            "statement": {"rate_based_statement": {
                "limit": limit, "evaluation_window_sec": 300, "aggregate_key_type": "FORWARDED_IP",
                "forwarded_ip_config": {"header_name": "CF-Connecting-IP", "fallback_behavior": "MATCH"}}},
            "visibility_config": visibility("rate-per-client-ip")}


def web_acl_rules(rate_limit: int, challenges: list[ResourceServer] = ()) -> list[dict]:
    """Cheap verdicts first (floods), then request inspection.

    No rule judges the source address: behind Cloudflare it is always a Cloudflare edge, and AWS's
    IP-reputation and anonymous-IP rule groups read only that address (they take no forwarded-IP
    setting), so at the origin they would judge Cloudflare. Cloudflare judges the visitor's address
    at the edge (components/edge.py); only the rate rule here reads the forwarded one.
    """
    return [
        rate_limit_rule(rate_limit, 20),
        # MCP JSON-RPC bodies (tool results, batched calls) routinely exceed the 8 KB this rule
        # blocks at: count instead, the rest of the rule set still inspects the first 8 KB.
        managed_rule_group("AWSManagedRulesCommonRuleSet", 30,
                           [{"name": "SizeRestrictions_BODY", "action_to_use": {"count": {}}}]),
        managed_rule_group("AWSManagedRulesKnownBadInputsRuleSet", 40),
        # The 401 challenge MCP clients follow (the ALB cannot send it): components/token_validation.py.
        *(waf_challenge_rule(settings, CHALLENGE_PRIORITY + i, visibility(f"bearer-token-{settings.server}"))
          for i, settings in enumerate(sorted(challenges, key=lambda s: s.server))),
    ]


def email_slug(email: str) -> str:
    """A resource-name-safe form of an address (`sre.oncall@example.travel` -> `sre-oncall-example-travel`)."""
    return re.sub(r"[^a-z0-9]+", "-", email.lower()).strip("-")


class RegionCompute(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegionComputeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:region_compute:RegionCompute", name, None, opts)
        self._prefix, self._args = name, args

        cluster = aws.ecs.Cluster(f"{name}-cluster", name=args.name_prefix, tags=args.tags, opts=child_opts(self),
                                  settings=[{"name": "containerInsights", "value": "enhanced"}])
        self.cluster_arn, self.cluster_name = cluster.arn, cluster.name

        self.alb_security_group_id = self._alb_security_group()
        alb = self._load_balancer(self._access_log_bucket())
        self.alb_arn, self.alb_arn_suffix, self.alb_dns_name = alb.arn, alb.arn_suffix, alb.dns_name
        self.https_listener_arn = self._listeners(alb)
        self.guard_rules = self._residency_guard()
        self.web_acl_arn = self._web_acl(alb)
        self.alerts_topic_arn = self._alerts()

        self.register_outputs({"cluster_arn": self.cluster_arn, "alb_arn": self.alb_arn,
                               "alb_dns_name": self.alb_dns_name, "https_listener_arn": self.https_listener_arn,
                               "web_acl_arn": self.web_acl_arn, "alerts_topic_arn": self.alerts_topic_arn})

    def _alb_security_group(self) -> pulumi.Output[str]:
        """HTTPS from Cloudflare's published ranges, held in one prefix list per address family."""
        args = self._args
        group = aws.ec2.SecurityGroup(f"{self._prefix}-alb-sg", vpc_id=args.vpc_id, tags=args.tags,
                                      description="MCP ALB: HTTPS from Cloudflare only", opts=child_opts(self))
        # A prefix list counts as max_entries rules against the group's 60-rule quota, so size it exactly.
        # No port 80: with SSL strict Cloudflare reaches origins on 443 only (the HTTP listener
        # below redirects anyway, should anyone widen this group).
        for family, cidrs in (("IPv4", args.cloudflare_ipv4_cidrs), ("IPv6", args.cloudflare_ipv6_cidrs)):
            ranges = aws.ec2.ManagedPrefixList(
                f"{self._prefix}-cloudflare-{family.lower()}", name=f"{args.name_prefix}-cloudflare-{family.lower()}",
                address_family=family, max_entries=len(cidrs), tags=args.tags, opts=child_opts(self),
                entries=[{"cidr": cidr, "description": "Cloudflare"} for cidr in cidrs])
            aws.vpc.SecurityGroupIngressRule(
                f"{self._prefix}-alb-https-{family.lower()}", security_group_id=group.id, ip_protocol="tcp",
                from_port=443, to_port=443, prefix_list_id=ranges.id, description=f"Cloudflare {family}",
                tags=args.tags, opts=child_opts(self))
        return group.id

    def _access_log_bucket(self) -> aws.s3.BucketPolicy:
        """The bucket's policy, once the bucket is locked down: the ALB must wait for it."""
        args, prefix = self._args, f"{self._prefix}-alb-logs"
        bucket = aws.s3.Bucket(prefix, force_destroy=False, tags=args.tags, opts=child_opts(self))
        private = aws.s3.BucketPublicAccessBlock(
            f"{prefix}-private", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child_opts(self))
        aws.s3.BucketOwnershipControls(f"{prefix}-ownership", bucket=bucket.id, opts=child_opts(self),
                                       rule={"object_ownership": "BucketOwnerEnforced"})
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{prefix}-encryption", bucket=bucket.id, opts=child_opts(self),
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}])
        aws.s3.BucketLifecycleConfiguration(f"{prefix}-lifecycle", bucket=bucket.id, opts=child_opts(self), rules=[{
            "id": "expire-alb-logs", "status": "Enabled", "filter": {"prefix": f"{LOG_PREFIX}/"},
            "expiration": {"days": args.log_retention_days}}])
        elb = aws.elb.get_service_account(region=args.region, opts=pulumi.InvokeOptions(parent=self))
        # After the public access block: S3 rejects concurrent changes to one bucket's policy settings.
        return aws.s3.BucketPolicy(f"{prefix}-policy", bucket=bucket.id, opts=child_opts(self, depends_on=[private]),
                                   policy=pulumi.Output.json_dumps(
                                       log_bucket_policy(bucket.arn, elb.arn, args.account_id)))

    def _load_balancer(self, log_policy: aws.s3.BucketPolicy) -> aws.lb.LoadBalancer:
        args = self._args
        # ALB checks it can write to the bucket when logging is turned on: the policy must exist.
        # Named, not autonamed: an autoname is the resource's name, a hyphen and 7 random characters,
        # and the provider refuses one longer than 32 ("plus 7 random chars is longer than maximum
        # length 32"), which `<estate>-<region>-front-alb` is. An ALB created before the estate was
        # split keeps its autoname (ignore_changes: a new name would replace it).
        return aws.lb.LoadBalancer(
            f"{self._prefix}-alb", load_balancer_type="application", internal=False,
            name=bounded_name(args.name_prefix, NAME_LIMITS[LOAD_BALANCER].max),
            subnets=args.public_subnet_ids, security_groups=[self.alb_security_group_id],
            drop_invalid_header_fields=True, desync_mitigation_mode="strictest", idle_timeout=3600,
            enable_deletion_protection=args.deletion_protection,
            access_logs={"bucket": log_policy.bucket, "prefix": LOG_PREFIX, "enabled": True},
            tags=args.tags, opts=child_opts(self, depends_on=[log_policy], ignore_changes=["name"]))

    def _listeners(self, alb: aws.lb.LoadBalancer) -> pulumi.Output[str]:
        args = self._args
        https = aws.lb.Listener(
            f"{self._prefix}-https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS",
            ssl_policy=TLS_POLICY, certificate_arn=args.certificate_arn, tags=args.tags, opts=child_opts(self),
            default_actions=[{"type": "fixed-response", "fixed_response": {
                "content_type": "application/json", "status_code": "404",
                "message_body": '{"error":"not found"}'}}])
        aws.lb.Listener(
            f"{self._prefix}-http", load_balancer_arn=alb.arn, port=80, protocol="HTTP", tags=args.tags,
            opts=child_opts(self), default_actions=[{"type": "redirect", "redirect": {
                "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}])
        return https.arn

    def _residency_guard(self) -> list[aws.lb.ListenerRule]:
        """Refuse, before any route, visitors of strict groups this region is not in (module docstring).
        Sorted countries, 5 a rule: adding a country changes or appends rules in place."""
        args = self._args
        return [aws.lb.ListenerRule(
            f"{self._prefix}-residency-guard-{rule['priority']}", listener_arn=self.https_listener_arn,
            priority=rule["priority"], tags=args.tags, opts=child_opts(self),
            conditions=[{"http_header": {"http_header_name": COUNTRY_HEADER, "values": rule["values"]}}],
            actions=[{"type": "fixed-response", "fixed_response": {
                "content_type": "text/plain", "status_code": GUARD_STATUS, "message_body": GUARD_BODY}}])
            for rule in guard_rules(args.refused_countries)]

    def _web_acl(self, alb: aws.lb.LoadBalancer) -> pulumi.Output[str]:
        args = self._args
        acl = aws.wafv2.WebAcl(f"{self._prefix}-waf", name=f"{args.name_prefix}-origin", scope="REGIONAL",
                               default_action={"allow": {}},
                               rules=web_acl_rules(args.origin_rate_limit, args.token_challenges) + args.surface_rules,
                               custom_response_bodies=[waf_challenge_body()] if args.token_challenges else None,
                               visibility_config=visibility(f"{args.name_prefix}-origin"),
                               tags=args.tags, opts=child_opts(self))
        aws.wafv2.WebAclAssociation(f"{self._prefix}-waf-alb", resource_arn=alb.arn, web_acl_arn=acl.arn,
                                    opts=child_opts(self))
        return acl.arn

    def _alerts(self) -> pulumi.Output[str]:
        args = self._args
        topic = aws.sns.Topic(f"{self._prefix}-alerts", name=f"{args.name_prefix}-alerts",
                              kms_master_key_id=args.alert_key_arn, tags=args.tags, opts=child_opts(self))
        for email in args.alert_emails:
            aws.sns.TopicSubscription(f"{self._prefix}-alerts-{email_slug(email)}", topic=topic.arn,
                                      protocol="email", endpoint=email, opts=child_opts(self))
        return topic.arn
