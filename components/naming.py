"""Names several components must agree on, defined once.

The workers' log groups and the CloudWatch agent's parameter are created by ``Monitoring`` and named in
the workers' user data and IAM policy by ``InferenceCluster``; both import them from here, so the cluster
does not depend on the monitoring component. AWS resource names elsewhere use ``FleetConfig.resource_prefix``.
"""

from __future__ import annotations

from components.config import NAMESPACE, FleetConfig


def log_group_names(cfg: FleetConfig) -> dict[str, str]:
    """CloudWatch log groups the workers write: agent and backend logs, and the worker's EMF records."""
    base = f"/{NAMESPACE}/{cfg.environment}"
    return {"agent": f"{base}/agent", "backend": f"{base}/backend", "metrics": f"{base}/metrics"}


def spot_events_log_group_name(cfg: FleetConfig) -> str:
    """Log group the spot interruption / rebalance events are recorded in."""
    return f"/aws/events/{NAMESPACE}/{cfg.environment}/spot-events"


def agent_parameter_name(cfg: FleetConfig) -> str:
    """SSM parameter holding the CloudWatch agent config; user data passes it to the agent."""
    return f"/{NAMESPACE}/{cfg.environment}/cloudwatch-agent"
