"""Client settings shared by every Kafka client of the fleet (API producer, worker consumer, lag publisher,
topic creator): plain for the local mock cluster, MSK IAM otherwise.

MSK IAM is SASL/OAUTHBEARER over TLS with a token from ``aws-msk-iam-sasl-signer-python``, wired the way
that library documents for confluent-kafka: ``security.protocol=SASL_SSL``, ``sasl.mechanisms=OAUTHBEARER``
and an ``oauth_cb`` returning ``(token, expiry)`` where the expiry is in seconds since the epoch (the
signer returns milliseconds). librdkafka calls the callback again before the token expires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def msk_iam_oauth_cb(region: str) -> Callable[[Any], tuple[str, float]]:
    """The ``oauth_cb`` librdkafka calls for a token (credentials from the default AWS chain)."""
    if not region:
        raise ValueError("region is required for MSK IAM auth (the signer signs for one region)")

    def oauth_cb(_oauth_config: Any) -> tuple[str, float]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000

    return oauth_cb


def security_config(iam_auth: bool, region: str | None) -> dict[str, Any]:
    """The security part of a librdkafka config: MSK IAM when ``iam_auth``, nothing (PLAINTEXT) otherwise."""
    if not iam_auth:
        return {}
    return {"security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER",
            "oauth_cb": msk_iam_oauth_cb(region or "")}


SECURITY_KEYS = ("bootstrap.servers", "security.protocol", "sasl.mechanisms", "sasl.mechanism", "oauth_cb")
