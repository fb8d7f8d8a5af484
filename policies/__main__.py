"""Entry point the Pulumi CLI runs: build the policy pack (this call serves it and never returns)."""

from pulumi_policy import EnforcementLevel, PolicyPack

from genai_policies import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
