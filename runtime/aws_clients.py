"""The one place boto3 clients are made: retry mode, timeouts and endpoint per kind of caller.

Every call site (API handler, authorizer, job-events functions, Kafka lag function, worker agent)
asks ``client(service, profile=..., region=..., endpoint_url=...)``. The profiles keep the worst case
of one AWS call, ``max_attempts * (connect + read)`` plus backoff, inside what the caller can wait:

- ``api``: the job API handler, a 29 s Lambda behind a 30 s gateway: 3 x (2 + 6) s = 24 s.
- ``authorizer``: a 5 s Lambda: 2 x (1 + 1) s = 4 s at most, usually one SSM read of milliseconds.
- ``function``: queue/stream-driven Lambdas (dead letters, sweeper, webhooks, Kafka lag), 60 s or more.
- ``worker``: the agent on an instance; long reads for S3 ranges, a big pool for parallel parts.

``max_attempts`` counts every attempt, the first included (botocore's ``total_max_attempts``); standard
mode's backoff between them is at most about a second for the first two retries.

botocore's defaults (legacy retry mode, 60 s connect and read timeouts) would let one hung call outlive
a Lambda; "standard" retry mode retries throttling and transient errors with jittered backoff.
``endpoint_url`` points a client at moto (tests, local mode); None means the regional AWS endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClientProfile:
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    max_pool_connections: int = 10

    @property
    def worst_case_seconds(self) -> float:
        """Upper bound of the time spent in socket waits for one call, every attempt timing out."""
        return self.max_attempts * (self.connect_timeout + self.read_timeout)


PROFILES: dict[str, ClientProfile] = {
    "api": ClientProfile(connect_timeout=2, read_timeout=6, max_attempts=3),
    "authorizer": ClientProfile(connect_timeout=1, read_timeout=1, max_attempts=2),
    "function": ClientProfile(connect_timeout=5, read_timeout=10, max_attempts=5),
    "worker": ClientProfile(connect_timeout=5, read_timeout=30, max_attempts=5, max_pool_connections=32),
}


def botocore_config(profile: str, **overrides: Any) -> Any:
    """The ``botocore.config.Config`` of a profile; ``overrides`` replace single settings (e.g. read_timeout)."""
    from botocore.config import Config

    if profile not in PROFILES:
        raise ValueError(f"unknown AWS client profile {profile!r}; use one of {', '.join(PROFILES)}")
    p = PROFILES[profile]
    settings: dict[str, Any] = {"connect_timeout": p.connect_timeout, "read_timeout": p.read_timeout,
                                "max_pool_connections": p.max_pool_connections,
                                "retries": {"mode": "standard", "total_max_attempts": p.max_attempts}}
    settings.update(overrides)
    return Config(**settings)


def client(service: str, *, profile: str, region: str | None = None, endpoint_url: str | None = None,
           **overrides: Any) -> Any:
    """A boto3 client for ``service`` with the profile's timeouts and retries."""
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url or None,
                        config=botocore_config(profile, **overrides))
