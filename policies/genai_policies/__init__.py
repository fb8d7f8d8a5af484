"""Rules of the genai-fleet CrossGuard policy pack, importable without starting a policy server.

``policies/__main__.py`` hands ``POLICIES`` to ``PolicyPack``; tests and ``tools/preview.py`` call each
policy's ``validate`` directly. Modules: ``tagging`` (required tags), ``cost`` (instance types, group
sizes, spot share, retention, monthly budget), ``security`` (IMDSv2, encryption, public access,
HTTPS, ingress, IAM, API auth), ``teardown`` (production data protected from ``pulumi destroy``),
``pricing`` (the estimate behind the budget rule), and AWS's own rules that the engine cannot see:
``wiring`` (between resources: event sources, VPC egress, lifecycle hooks, input URLs) and ``limits``
(API Gateway, SQS and Auto Scaling limits).
"""

from pulumi_policy import Policy

from . import cost, limits, output_access, security, tagging, teardown, wiring

PACK_NAME = "genai-fleet"
POLICIES: list[Policy] = [*tagging.POLICIES, *cost.POLICIES, *security.POLICIES, *teardown.POLICIES,
                          *wiring.POLICIES, *limits.POLICIES,
                          *output_access.POLICIES]  # issue 43: signed outputs in production
POLICIES_BY_NAME: dict[str, Policy] = {p.name: p for p in POLICIES}

__all__ = ["PACK_NAME", "POLICIES", "POLICIES_BY_NAME", "cost", "limits", "output_access", "security", "tagging",
           "teardown", "wiring"]
