"""Lambda adapter and authorizer: principals from the authorizer context, 401 vs 403, the routes documented."""

from __future__ import annotations

import json
import re

from runtime.api.app import ApiApp, ApiOptions
from runtime.api.auth import StaticKeyStore, TokenBucket, generate_key
from runtime.api.authorizer import authorize
from runtime.api.handler import ApiConfig, handle_event
from runtime.api.openapi import document
from runtime.queues.memory import InMemoryQueue

KEY, RECORD = generate_key("unit")
KEYS = StaticKeyStore({RECORD.key_id: RECORD})


def _event(path, method="GET", headers=None, authorizer=None):
    ctx = {"http": {"method": method, "path": path}, "requestId": "r1", "domainName": "api.example.com"}
    if authorizer is not None:
        ctx["authorizer"] = authorizer
    return {"rawPath": path, "headers": headers or {}, "requestContext": ctx, "body": None}


def _app(mode="api-key"):
    return ApiApp(store=None, producer=InMemoryQueue(), options=ApiOptions(auth_mode=mode), keys=KEYS)


def test_authorizer_separates_missing_from_wrong_credentials():
    assert authorize({"headers": {}}, KEYS) == {"isAuthorized": True, "context": {"key_id": ""}}
    wrong = KEY[:-1] + ("B" if KEY.endswith("A") else "A")  # always differs from the real key
    assert authorize({"headers": {"x-api-key": wrong}}, KEYS) == {"isAuthorized": False}
    ok = authorize({"headers": {"Authorization": f"Bearer {KEY}"}}, KEYS)
    assert ok["isAuthorized"] and ok["context"]["key_id"] == RECORD.key_id


def test_handler_answers_401_when_authorizer_vouched_for_nobody():
    result = handle_event(_event("/v1/models", headers={"x-api-key": KEY},
                                 authorizer={"lambda": {"key_id": ""}}), _app())
    assert result["statusCode"] == 401  # headers are not re-read once an authorizer ran
    trusted = handle_event(_event("/v1/models", authorizer={"lambda": {"key_id": RECORD.key_id}}), _app())
    assert trusted["statusCode"] == 200


def test_iam_principal_comes_from_request_context():
    app = _app("iam")
    assert handle_event(_event("/v1/models"), app)["statusCode"] == 401
    iam = {"iam": {"userArn": "arn:aws:iam::123456789012:user/dev"}}
    assert handle_event(_event("/v1/models", authorizer=iam), app)["statusCode"] == 200


def test_every_route_is_documented():
    doc = document()
    for pattern, methods in _app()._routes:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: "{id}", pattern.pattern.strip("^$")).replace("\\", "")
        for method in methods:
            assert method.lower() in doc["paths"][path], (method, path)
    json.dumps(doc)


def test_token_bucket():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert [bucket.allow("k")[0] for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert bucket.allow("k")[0]


def test_config_from_env_requires_table():
    cfg = ApiConfig.from_env({"GENAI_JOB_TABLE": "t", "GENAI_HOT_MODELS": '["a"]', "GENAI_MAX_WAIT_SECONDS": "90"})
    assert cfg.hot_models == ("a",) and cfg.max_wait_seconds == 25.0 and cfg.auth_mode == "api-key"
    try:
        ApiConfig.from_env({})
    except RuntimeError as exc:
        assert "GENAI_JOB_TABLE" in str(exc)
    else:
        raise AssertionError("expected a RuntimeError")


def test_authorizer_treats_an_empty_bearer_as_no_credentials():
    """Lets it through with no key id, so the handler answers 401 (docs), not the gateway's 403."""
    for value in ("Bearer", "Bearer   ", "bearer"):
        assert authorize({"headers": {"authorization": value}}, KEYS) == {"isAuthorized": True,
                                                                           "context": {"key_id": ""}}
    result = handle_event(_event("/v1/models", headers={"authorization": "Bearer"}), _app())
    assert result["statusCode"] == 401


def test_prefer_wait_parsing():
    from runtime.api.request_headers import prefer_wait as _prefer_wait

    cases = {"wait=1.5": 1.5, "wait=10": 10, "respond-async, wait=5": 0, "wait=\"3\"": 3, "handling=lenient; wait=2": 2,
             "wait=1.5x": 0, "wait=abc": 0, "xwait=3": 0, "wait=99": 25, "wait=": 0, "wait=1.": 0, "": 0}
    for header, expected in cases.items():
        assert _prefer_wait({"prefer": header}, 25.0) == expected, header
    assert _prefer_wait({"prefer": "wait=5"}, 0.0) == 0


def test_links_use_the_gateway_domain_and_a_known_scheme():
    from runtime.api.handler import to_request

    event = _event("/v1/health", headers={"host": "evil.example", "x-forwarded-proto": "javascript"})
    request, _ = to_request(event)
    assert request.base_url == "https://api.example.com"
