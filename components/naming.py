"""Names several components must agree on, defined once.

The workers' log groups and the CloudWatch agent's parameter are created by ``Monitoring`` and named in
the workers' user data and IAM policy by ``InferenceCluster``; the API key prefix and the webhook secret are
made by the operator (``tools/stack_setup.py``), checked by ``components/prerequisites.py`` and read by the
Lambdas. All take the stack's ``StackIdentity``, so no component imports another for a name. AWS resource
names elsewhere use ``StackIdentity.resource_prefix``.
"""

from __future__ import annotations

from components.config import StackIdentity
from components.config_settings import NAMESPACE


def log_group_names(stack: StackIdentity) -> dict[str, str]:
    """CloudWatch log groups the workers write: agent and backend logs, and the worker's EMF records."""
    base = f"/{NAMESPACE}/{stack.environment}"
    return {"agent": f"{base}/agent", "backend": f"{base}/backend", "metrics": f"{base}/metrics"}


def spot_events_log_group_name(stack: StackIdentity) -> str:
    """Log group the spot interruption / rebalance events are recorded in."""
    return f"/aws/events/{NAMESPACE}/{stack.environment}/spot-events"


def agent_parameter_name(stack: StackIdentity) -> str:
    """SSM parameter holding the CloudWatch agent config; user data passes it to the agent."""
    return f"/{NAMESPACE}/{stack.environment}/cloudwatch-agent"


def webhook_secret_parameter(stack: StackIdentity) -> str:
    """SSM SecureString holding the webhook signing secret (README: "Webhook signing secret")."""
    return f"/{NAMESPACE}/{stack.environment}/webhook-secret"


def api_keys_prefix(stack: StackIdentity) -> str:
    """SSM path under which each API key is one SecureString (``make api-key``)."""
    return f"/{NAMESPACE}/{stack.environment}/api-keys"


# issue 43: the outputs' signing key pairs (genai-stack rotate-signing-key makes them)
def output_signing_key_parameter(stack: StackIdentity, key: str, part: str) -> str:
    """SSM parameter of one part of signing key pair ``key``: ``public`` (String, PEM), ``private``
    (SecureString, PEM) or ``retired-at`` (when signing moved off it, tools/signing_keys.py)."""
    if part not in ("public", "private", "retired-at"):
        raise ValueError(f"part must be public, private or retired-at, not {part!r}")
    return f"/{NAMESPACE}/{stack.environment}/output-signing-keys/{key}/{part}"
