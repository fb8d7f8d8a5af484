"""Lambda REQUEST authorizer for api-key mode (HTTP API, payload 2.0, simple responses, no caching).

It runs the same ``authenticate`` as local mode and hands the key id to the handler in the authorizer
context. To keep 401 (no credentials) apart from 403 (bad credentials) -- API Gateway answers every
denial with 403 -- a request *without* credentials is let through with an empty ``key_id``; the handler
then answers 401 without touching any data. A wrong, unknown or disabled key is denied here (403).
When the key store cannot be read the request is denied (fail closed). A made-up key fails its tag check
offline (no SSM call), and a source with too many failures is denied without lookups for a while.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from runtime import aws_clients
from runtime.api.auth import FailureLimiter, KeyStore, SsmKeyStore, authenticate, credentials_from_headers
from runtime.api.environment import AuthorizerConfig
from runtime.api.problems import ApiError

log = logging.getLogger(__name__)
_KEYS: KeyStore | None = None
_LOCK = threading.Lock()
_FAILURES = FailureLimiter()  # per instance: a source that keeps failing is denied without SSM lookups


def _key_store() -> KeyStore:
    global _KEYS
    with _LOCK:
        if _KEYS is None:
            cfg = AuthorizerConfig.from_env()
            ssm = aws_clients.client("ssm", profile="authorizer", endpoint_url=cfg.endpoint_url)
            _KEYS = SsmKeyStore(ssm, cfg.api_keys_prefix, accept_untagged=cfg.accept_untagged_keys)
        return _KEYS


def authorize(event: Mapping[str, Any], keys: KeyStore, failures: FailureLimiter | None = None) -> dict[str, Any]:
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    if credentials_from_headers(headers) is None:
        return {"isAuthorized": True, "context": {"key_id": ""}}
    source = ((event.get("requestContext") or {}).get("http") or {}).get("sourceIp") or None
    try:
        principal = authenticate(headers, keys, source=source, failures=failures)
    except ApiError as exc:
        if exc.status >= 500:
            log.warning("key store unavailable; denying: %s", exc)
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": {"key_id": principal.id,
                                              "quota_per_day": principal.quota_per_day or 0,
                                              "rate_per_second": principal.rate_per_second or 0,
                                              "tenant": principal.tenant, "scope": principal.scope,
                                              "max_priority": principal.max_priority}}


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    return authorize(event, _key_store(), _FAILURES)
