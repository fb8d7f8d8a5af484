"""Issue 43, item 3 (key lifecycle) on the key store side: the tenant on the key record, ``genai-stack api-key
list | revoke | rotate`` against moto, and a revocation's bound through the authorizer with an injected clock."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runtime.api.auth import OPTIONAL_FIELDS, KeyRecord, SsmKeyStore, authenticate, generate_key, hash_key
from runtime.api.authorizer import authorize
from runtime.api.handler import to_request
from runtime.jobs.key_use import KeyUse, key_use_pk
from runtime.jobs.store import create_table
from tools import api_keys, stack_setup

PREFIX = "/genai-fleet/dev/api-keys"
TABLE = "genai-dev-jobs"  # the job table components/job_store.py names for stack dev


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        create_table(session.client("dynamodb"), TABLE)
        yield session


def _event(key: str, source: str = "198.51.100.9") -> dict[str, Any]:
    return {"headers": {"authorization": f"Bearer {key}"}, "requestContext": {"http": {"sourceIp": source}}}


def _vouched(context: dict[str, Any]):
    """The principal the API handler builds from an authorizer's context."""
    request, _ = to_request({"rawPath": "/v1/jobs", "requestContext": {"http": {"method": "GET"},
                                                                       "authorizer": {"lambda": context}}})
    return request.principal


def _cli(argv: list[str], capsys) -> tuple[int, Any, str]:
    code = stack_setup.main(["api-key", *argv, "--stack", "dev"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


# --- (a) the tenant on the key record ---------------------------------------------------------------------
def test_a_record_written_before_tenants_is_its_own_tenant_and_a_tenant_key():
    _, record = generate_key("old")
    old_json = {"sha256": record.sha256, "name": "old", "disabled": False, "quota_per_day": 5,
                "rate_per_second": None}  # what records looked like before issue 43
    read = KeyRecord.from_json(record.key_id, json.dumps(old_json))
    assert (read.tenant, read.scope, read.quota_per_day) == (record.key_id, "tenant", 5)
    assert KeyRecord.from_json(record.key_id, read.to_json()) == read


def test_an_unknown_scope_makes_a_record_that_authorizes_nobody():
    with pytest.raises(ValueError, match="scope must be one of tenant, operator"):
        KeyRecord(key_id="abcdefabcdef", sha256="0" * 64, scope="admin")


def test_the_authorizer_vouches_for_the_tenant_and_scope_and_the_handler_reads_them(aws):
    store = SsmKeyStore(aws.client("ssm"), PREFIX, accept_untagged=True)
    key = store.mint("ops", scope="operator", tenant="acme")
    answer = authorize(_event(key), store)
    assert answer["isAuthorized"] and answer["context"]["tenant"] == "acme"
    assert answer["context"]["scope"] == "operator"
    principal = _vouched(answer["context"])
    assert (principal.id, principal.tenant, principal.scope) == (answer["context"]["key_id"], "acme", "operator")
    # A context from an authorizer older than issue 43: tenant = key id, and never more than the tenant scope.
    legacy = _vouched({"key_id": "abcdefabcdef"})
    assert (legacy.tenant, legacy.scope) == ("abcdefabcdef", "tenant")


# --- (b) list / revoke / rotate ---------------------------------------------------------------------------
def test_list_shows_every_field_but_never_a_secret(aws, capsys):
    code, alice, _ = _cli(["--name", "alice", "--quota-per-day", "40"], capsys)
    assert code == 0 and alice["scope"] == "tenant" and alice["tenant"] == alice["key_id"]
    code, ops, _ = _cli(["create", "--name", "ops", "--scope", "operator"], capsys)
    assert code == 0 and ops["scope"] == "operator"
    KeyUse(TABLE, aws.client("dynamodb"), clock=lambda: 1_767_225_600.0).note(alice["key_id"])  # 2026-01-01
    code, listed, _ = _cli(["list"], capsys)
    assert code == 0
    by_id = {k["key_id"]: k for k in listed["keys"]}
    assert set(by_id) == {alice["key_id"], ops["key_id"]}  # the tag secret is no key
    a = by_id[alice["key_id"]]
    assert (a["name"], a["tenant"], a["scope"], a["quota_per_day"], a["last_used"], a["revoked"]) == (
        "alice", alice["key_id"], "tenant", 40, "2026-01-01", None)
    assert a["created"] and by_id[ops["key_id"]]["last_used"] is None
    assert set(OPTIONAL_FIELDS) <= set(a)  # every optional field, generically
    text = json.dumps(listed)
    for minted in (alice, ops):
        assert minted["key"] not in text and hash_key(minted["key"]) not in text
    assert "sha256" not in text


def test_revoking_an_unknown_or_malformed_key_id_is_a_clear_error_with_exit_code_2(aws, capsys):
    code, _, err = _cli(["revoke", "--key-id", "zzzzzzzzzzzz"], capsys)
    assert code == 2 and "no API key has id 'zzzzzzzzzzzz'" in err and "api-key list" in err
    code, _, err = _cli(["revoke", "--key-id", "gf_not-an-id"], capsys)
    assert code == 2 and "is not a key id" in err
    code, _, err = _cli(["revoke"], capsys)
    assert code == 1 and "needs --key-id" in err


def test_rotate_issues_a_second_key_for_the_same_tenant_with_the_same_fields(aws, capsys):
    ssm = aws.client("ssm")
    store = SsmKeyStore(ssm, PREFIX, accept_untagged=True)
    _, first, _ = _cli(["--name", "alice", "--quota-per-day", "40", "--scope", "operator"], capsys)
    old = store.lookup(first["key_id"])
    store.put(KeyRecord(**{**old.__dict__, "rate_per_second": 2.5}))  # an optional field set by hand
    code, second, _ = _cli(["rotate", "--key-id", first["key_id"]], capsys)
    assert code == 0 and second["replaces"] == first["key_id"] and second["key_id"] != first["key_id"]
    new = SsmKeyStore(ssm, PREFIX).lookup(second["key_id"])
    assert (new.tenant, new.scope, new.name) == (first["key_id"], "operator", "alice")
    assert new.optional_fields() == {**old.optional_fields(), "rate_per_second": 2.5}
    fresh = SsmKeyStore(ssm, PREFIX, accept_untagged=True)
    both = [authenticate({"authorization": f"Bearer {k}"}, fresh) for k in (first["key"], second["key"])]
    assert {p.tenant for p in both} == {first["key_id"]}  # the same jobs, quota and spend
    _cli(["revoke", "--key-id", first["key_id"]], capsys)
    code, _, err = _cli(["rotate", "--key-id", first["key_id"]], capsys)
    assert code == 1 and "is revoked" in err


def test_a_revoked_key_is_refused_by_the_authorizer_within_the_stated_bound(aws):
    ssm, now = aws.client("ssm"), [1000.0]
    cached = SsmKeyStore(ssm, PREFIX, clock=lambda: now[0], accept_untagged=True)  # one authorizer instance
    admin = SsmKeyStore(ssm, PREFIX)
    minted = api_keys.create(admin, "bob")
    assert authorize(_event(minted["key"]), cached)["isAuthorized"]
    now[0] += 1.0
    result = api_keys.revoke(SsmKeyStore(ssm, PREFIX), minted["key_id"])
    assert result["refused_everywhere_within_seconds"] == api_keys.REVOCATION_BOUND_SECONDS == cached.cache_seconds
    now[0] += api_keys.REVOCATION_BOUND_SECONDS - 1.5  # still within the cached answer
    assert authorize(_event(minted["key"]), cached)["isAuthorized"]
    now[0] += 0.5  # the bound, counted from the lookup: refused
    assert authorize(_event(minted["key"]), cached) == {"isAuthorized": False}
    # A revoked key is answered as an unknown one: nothing says it exists.
    _, unknown_record = generate_key("never stored")
    assert authorize(_event(minted["key"].replace(minted["key_id"], unknown_record.key_id)), cached) == {
        "isAuthorized": False}


def test_key_use_is_recorded_once_per_key_per_day_by_each_instance(aws):
    ddb, now, calls = aws.client("dynamodb"), [1_767_225_600.0], []
    real = ddb.update_item
    ddb.update_item = lambda **kw: (calls.append(kw["Key"]["pk"]["S"]), real(**kw))[1]
    use = KeyUse(TABLE, ddb, clock=lambda: now[0])
    for _ in range(50):
        use.note("abcdefabcdef")
    assert calls == [key_use_pk("abcdefabcdef")]
    other_instance = KeyUse(TABLE, ddb, clock=lambda: now[0])
    other_instance.note("abcdefabcdef")  # tried, refused by its condition: the day is recorded already
    now[0] += 86400
    use.note("abcdefabcdef")
    assert len(calls) == 3 and use.last_used(["abcdefabcdef", "zzzzzzzzzzzz"]) == {"abcdefabcdef": "2026-01-02"}
