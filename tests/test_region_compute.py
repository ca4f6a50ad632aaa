"""RegionCompute: a cluster and an ALB that only Cloudflare reaches, over TLS, behind a WAF."""

from __future__ import annotations

from functools import cache

import pulumi
import pulumi_aws as aws
from conftest import ACCOUNT, Plan, policy, run_program

from mcp_estate.components.region_compute import RegionCompute, RegionComputeArgs
from mcp_estate.offline.mocks import ELB_ACCOUNTS

REGION = "eu-west-1"
FRONT = f"front-{REGION}"
PREFIX = f"estate-test-{REGION}"
CERT = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
CF_IPV4 = ["103.21.244.0/22", "173.245.48.0/20"]
CF_IPV6 = ["2400:cb00::/32"]
TAGS = {"mcp-estate:stack": "test", "mcp-estate:environment": "dev", "mcp-estate:owner": "platform",
        "mcp-estate:region": REGION}


@cache
def front(deletion_protection: bool = True) -> tuple[Plan, dict]:
    """The plan of one region's compute front, and its component's resolved attributes."""
    seen: dict = {}

    def program():
        provider = aws.Provider(f"aws-{REGION}", region=REGION)
        compute = RegionCompute(FRONT, RegionComputeArgs(
            region=REGION, account_id=ACCOUNT, name_prefix=PREFIX, vpc_id="vpc-0a1b2c3d4e5f60718",
            public_subnet_ids=["subnet-0aaa", "subnet-0bbb"], certificate_arn=CERT,
            cloudflare_ipv4_cidrs=CF_IPV4, cloudflare_ipv6_cidrs=CF_IPV6, deletion_protection=deletion_protection,
            origin_rate_limit=3000, alert_key_arn=KEY,
            alert_emails=["sre.oncall@example.travel", "security@example.travel"],
            log_retention_days=90, tags=TAGS), opts=pulumi.ResourceOptions(provider=provider))
        pulumi.Output.all(
            cluster_arn=compute.cluster_arn, cluster_name=compute.cluster_name, alb_arn=compute.alb_arn,
            alb_arn_suffix=compute.alb_arn_suffix, alb_dns_name=compute.alb_dns_name,
            alb_sg=compute.alb_security_group_id, https=compute.https_listener_arn,
            topic=compute.alerts_topic_arn, acl=compute.web_acl_arn).apply(seen.update)

    return run_program(program), seen


def without(inputs: dict, *keys: str) -> dict:
    return {k: v for k, v in inputs.items() if k not in keys}


def test_alb_admits_only_cloudflare_ranges_and_only_on_443():
    plan, seen = front()
    rules = plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert {r.inputs["securityGroupId"] for r in rules} == {seen["alb_sg"]}
    assert {(r.inputs["fromPort"], r.inputs["toPort"], r.inputs["ipProtocol"]) for r in rules} == {(443, 443, "tcp")}
    lists = {p.id: p for p in plan.of_type("aws:ec2/managedPrefixList:ManagedPrefixList")}
    assert {r.inputs["prefixListId"] for r in rules} == set(lists)
    admitted = {e["cidr"] for p in lists.values() for e in p.inputs["entries"]}
    assert admitted == set(CF_IPV4 + CF_IPV6)
    ipv6 = plan.named(f"{FRONT}-cloudflare-ipv6").inputs
    assert ipv6["addressFamily"] == "IPv6" and ipv6["maxEntries"] == len(CF_IPV6)
    assert not any("cidrIpv4" in r.inputs or "cidrIpv6" in r.inputs for r in rules)


def test_alb_security_group_opens_no_egress_of_its_own():
    plan, _ = front()
    group = plan.named(f"{FRONT}-alb-sg")
    assert not group.inputs.get("egress") and not group.inputs.get("ingress")
    assert not plan.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")


def test_alb_is_internet_facing_hardened_and_logs_to_its_bucket():
    plan, seen = front()
    alb = plan.one("aws:lb/loadBalancer:LoadBalancer")
    bucket = plan.one("aws:s3/bucket:Bucket")
    assert without(alb.inputs, "tags", "name") == {
        "loadBalancerType": "application", "internal": False, "subnets": ["subnet-0aaa", "subnet-0bbb"],
        "securityGroups": [seen["alb_sg"]], "dropInvalidHeaderFields": True, "desyncMitigationMode": "strictest",
        "idleTimeout": 3600, "enableDeletionProtection": True,
        "accessLogs": {"bucket": bucket.id, "prefix": "alb", "enabled": True}}
    assert plan.one("aws:s3/bucketPolicy:BucketPolicy").urn in alb.dependencies
    assert (seen["alb_arn"], seen["alb_arn_suffix"], seen["alb_dns_name"]) == \
        (alb.outputs["arn"], alb.outputs["arnSuffix"], alb.outputs["dnsName"])


def test_alb_deletion_protection_follows_the_estate():
    plan, _ = front(deletion_protection=False)
    assert plan.one("aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"] is False


def test_https_listener_serves_the_certificate_with_tls_1_3_policy_and_404s_by_default():
    plan, seen = front()
    https = plan.named(f"{FRONT}-https")
    assert https.outputs["arn"] == seen["https"]
    assert without(https.inputs, "tags") == {
        "loadBalancerArn": seen["alb_arn"], "port": 443, "protocol": "HTTPS",
        "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06", "certificateArn": CERT,
        "defaultActions": [{"type": "fixed-response", "fixedResponse": {
            "contentType": "application/json", "statusCode": "404", "messageBody": '{"error":"not found"}'}}]}


def test_http_listener_only_redirects_to_https():
    plan, seen = front()
    http = plan.named(f"{FRONT}-http")
    assert without(http.inputs, "tags") == {
        "loadBalancerArn": seen["alb_arn"], "port": 80, "protocol": "HTTP",
        "defaultActions": [{"type": "redirect",
                            "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]}
    assert len(plan.of_type("aws:lb/listener:Listener")) == 2


def test_access_log_bucket_is_private_owner_enforced_encrypted_and_expires_logs():
    plan, _ = front()
    bucket = plan.one("aws:s3/bucket:Bucket")
    assert bucket.inputs["forceDestroy"] is False
    assert without(plan.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs, "bucket") == {
        "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}
    assert plan.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs == {
        "bucket": bucket.id, "rule": {"objectOwnership": "BucketOwnerEnforced"}}
    encryption = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    assert plan.one(encryption).inputs == {
        "bucket": bucket.id, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}
    assert plan.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs == {
        "bucket": bucket.id, "rules": [{"id": "expire-alb-logs", "status": "Enabled", "filter": {"prefix": "alb/"},
                                        "expiration": {"days": 90}}]}


def test_only_the_regions_elb_account_writes_logs_and_only_over_tls():
    plan, _ = front()
    bucket_arn = plan.one("aws:s3/bucket:Bucket").outputs["arn"]
    allow, deny = policy(plan.one("aws:s3/bucketPolicy:BucketPolicy"), "policy")["Statement"]
    assert without(allow, "Sid") == {
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ELB_ACCOUNTS[REGION]}:root"},
        "Action": "s3:PutObject", "Resource": f"{bucket_arn}/alb/AWSLogs/{ACCOUNT}/*"}
    assert without(deny, "Sid") == {
        "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def test_waf_screens_the_alb_with_managed_rules_and_a_per_visitor_rate_limit():
    plan, seen = front()
    acl = plan.one("aws:wafv2/webAcl:WebAcl")
    assert acl.inputs["scope"] == "REGIONAL" and acl.inputs["defaultAction"] == {"allow": {}}
    assert acl.outputs["arn"] == seen["acl"]
    rules = {r["name"]: r for r in acl.inputs["rules"]}
    assert sorted(rules) == ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                             "rate-per-client-ip"]
    assert len({r["priority"] for r in rules.values()}) == 3
    assert all(r["visibilityConfig"] == {"cloudwatchMetricsEnabled": True, "metricName": name,
                                         "sampledRequestsEnabled": True} for name, r in rules.items())
    common = rules["AWSManagedRulesCommonRuleSet"]
    assert common["overrideAction"] == {"none": {}}
    assert common["statement"]["managedRuleGroupStatement"]["ruleActionOverrides"] == [
        {"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}}]
    assert rules["rate-per-client-ip"]["action"] == {"block": {}}
    assert rules["rate-per-client-ip"]["statement"] == {"rateBasedStatement": {
        "limit": 3000, "evaluationWindowSec": 300, "aggregateKeyType": "FORWARDED_IP",
        "forwardedIpConfig": {"headerName": "CF-Connecting-IP", "fallbackBehavior": "MATCH"}}}
    association = plan.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.inputs == {"resourceArn": seen["alb_arn"], "webAclArn": seen["acl"]}


# Statements that judge the request's source address, and AWS's rule groups that do (IP reputation).
ADDRESS_STATEMENTS = ("rateBasedStatement", "ipSetReferenceStatement", "geoMatchStatement", "asnMatchStatement")
ADDRESS_GROUPS = ("AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesAnonymousIpList")


def test_no_origin_waf_rule_judges_cloudflares_address_instead_of_the_visitors():
    # Behind Cloudflare the source address is a Cloudflare edge: a rule reading it judges Cloudflare.
    plan, _ = front()
    for rule in plan.one("aws:wafv2/webAcl:WebAcl").inputs["rules"]:
        statement = rule["statement"]
        group = statement.get("managedRuleGroupStatement", {}).get("name")
        assert group not in ADDRESS_GROUPS, f"{group} reads only the source address (no forwarded-IP setting)"
        for kind in ADDRESS_STATEMENTS:
            if kind in statement:
                assert statement[kind]["forwardedIpConfig"]["headerName"] == "CF-Connecting-IP", rule["name"]


def test_cluster_has_enhanced_container_insights():
    plan, seen = front()
    cluster = plan.one("aws:ecs/cluster:Cluster")
    assert cluster.inputs["name"] == PREFIX
    assert cluster.inputs["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    assert (seen["cluster_arn"], seen["cluster_name"]) == (cluster.outputs["arn"], PREFIX)


def test_alerts_topic_is_encrypted_and_mails_each_address():
    plan, seen = front()
    topic = plan.one("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == KEY and topic.outputs["arn"] == seen["topic"]
    subscriptions = {s.name: s.inputs for s in plan.of_type("aws:sns/topicSubscription:TopicSubscription")}
    assert subscriptions == {
        f"{FRONT}-alerts-sre-oncall-example-travel": {"topic": seen["topic"], "protocol": "email",
                                                      "endpoint": "sre.oncall@example.travel"},
        f"{FRONT}-alerts-security-example-travel": {"topic": seen["topic"], "protocol": "email",
                                                    "endpoint": "security@example.travel"}}


# -- the residency guard: refuse strict groups' visitors steered here by their data center (W2) ------

def guarded(countries: list[str]) -> Plan:
    def program():
        provider = aws.Provider(f"aws-{REGION}", region=REGION)
        RegionCompute(FRONT, RegionComputeArgs(
            region=REGION, account_id=ACCOUNT, name_prefix=PREFIX, vpc_id="vpc-0a1b2c3d4e5f60718",
            public_subnet_ids=["subnet-0aaa", "subnet-0bbb"], certificate_arn=CERT,
            cloudflare_ipv4_cidrs=CF_IPV4, cloudflare_ipv6_cidrs=CF_IPV6, deletion_protection=True,
            origin_rate_limit=3000, alert_key_arn=KEY, alert_emails=[], log_retention_days=90, tags=TAGS,
            refused_countries=countries), opts=pulumi.ResourceOptions(provider=provider))
    return run_program(program)


def test_a_region_outside_every_strict_group_refuses_their_countries_five_to_a_rule():
    prod_eu = ["DE", "FR", "IE", "NL", "ES", "IT", "AT", "BE", "PT", "SE", "FI", "DK", "PL"]
    plan = guarded(prod_eu)
    rules = sorted(plan.of_type("aws:lb/listenerRule:ListenerRule"), key=lambda r: r.inputs["priority"])
    https = plan.named(f"{FRONT}-https")
    assert [(r.name, r.inputs["priority"], r.inputs["conditions"]) for r in rules] == [
        (f"{FRONT}-residency-guard-{i}", i, [{"httpHeader": {"httpHeaderName": "CF-IPCountry", "values": values}}])
        for i, values in ((1, ["AT", "BE", "DE", "DK", "ES"]), (2, ["FI", "FR", "IE", "IT", "NL"]),
                          (3, ["PL", "PT", "SE"]))]
    assert all(r.inputs["listenerArn"] == https.outputs["arn"] for r in rules)
    for rule in rules:
        [action] = rule.inputs["actions"]
        assert action["type"] == "fixed-response"
        assert action["fixedResponse"]["statusCode"] == "403"
        assert action["fixedResponse"]["contentType"] == "text/plain"
        assert "must be served in its residency group" in action["fixedResponse"]["messageBody"]
        assert len(action["fixedResponse"]["messageBody"]) <= 1024   # the ALB's limit for a message body


def test_a_region_of_the_only_strict_group_refuses_nobody():
    assert guarded([]).of_type("aws:lb/listenerRule:ListenerRule") == []


def test_the_guard_fits_every_country_under_the_server_routes():
    from mcp_estate.components.region_compute import guard_rules
    from mcp_estate.contract.geography import ISO_COUNTRIES
    from mcp_estate.contract.spec import GUARD_PRIORITIES
    rules = guard_rules(sorted(ISO_COUNTRIES))
    assert max(r["priority"] for r in rules) <= GUARD_PRIORITIES
    assert sorted(c for r in rules for c in r["values"]) == sorted(ISO_COUNTRIES)
    assert all(len(r["values"]) <= 5 for r in rules)


def test_the_canarys_direct_alb_probe_sends_no_country_so_the_guard_never_refuses_it():
    # The canary connects to the ALB's private addresses (components/canary.py): Cloudflare is not on the
    # path, so no CF-IPCountry is added, and the probe sends none of its own.
    from mcp_estate.runtime import probe
    assert not {h.lower() for h in probe._BASE_HEADERS} & {"cf-ipcountry"}
    source = open(probe.__file__).read() + open(probe.__file__.replace("probe.py", "canary_handler.py")).read()
    assert "cf-ipcountry" not in source.lower()
