"""API keys that resist floods (issue 16, finding 7): tags checked offline, a bounded LRU with a negative
cache, and a per-source limit on failed authentications. SSM is moto's, behind a call counter.
"""

from __future__ import annotations

import json
import secrets
import uuid

import pytest

from runtime.api import key_format
from runtime.api.auth import (
    FailureLimiter,
    KeyRecord,
    SsmKeyStore,
    authenticate,
    generate_key,
    hash_key,
    parse_key,
)
from runtime.api.authorizer import authorize
from runtime.api.problems import ApiError

pytestmark = pytest.mark.integration


class CountingSsm:
    """Passes calls to a real (moto) SSM client and counts GetParameter per parameter name."""

    def __init__(self, client):
        self.client, self.gets = client, []

    def get_parameter(self, **kwargs):
        self.gets.append(kwargs["Name"])
        return self.client.get_parameter(**kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def ssm(aws_clients):
    return CountingSsm(aws_clients("ssm"))


@pytest.fixture
def prefix():
    return f"/genai-fleet/t{uuid.uuid4().hex[:8]}/api-keys"


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _random_key(tag_secret: bytes | None = None, valid_tag: bool = False) -> str:
    body = f"gf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    tag = key_format.key_tag(body, tag_secret) if valid_tag else "".join(secrets.choice("abcdefgh") for _ in range(8))
    return f"{body}_{tag}"


def test_minted_keys_work_and_made_up_keys_cost_no_lookup(ssm, prefix):
    store = SsmKeyStore(ssm, prefix)
    key = store.mint("alice", quota_per_day=7)
    assert parse_key(key) and len(key.split("_")[-1]) == 8
    principal = authenticate(_bearer(key), store)
    assert principal.quota_per_day == 7
    ssm.gets.clear()
    for _ in range(200):  # a flood of well-formed, made-up keys
        with pytest.raises(ApiError) as info:
            authenticate(_bearer(_random_key()), store)
        assert info.value.status == 403
    assert ssm.gets == []  # refused on the tag alone (the tag secret is cached)
    # Someone who knows the public checksum key still cannot pass: the stack has a tag secret.
    forged = _random_key(tag_secret=None, valid_tag=True)
    with pytest.raises(ApiError):
        authenticate(_bearer(forged), store)
    assert ssm.gets == []
    # A second mint reuses the stack's tag secret: both keys stay valid.
    other = store.mint("bob")
    assert authenticate(_bearer(other), store).id != principal.id
    assert authenticate(_bearer(key), store).id == principal.id


def test_without_a_tag_secret_the_tag_is_a_public_checksum(ssm, prefix):
    store = SsmKeyStore(ssm, prefix)
    key, record = generate_key("carol")  # the documented minting of the first version still works
    store.put(record)
    assert authenticate(_bearer(key), store).id == record.key_id
    typo = key[:20] + ("A" if key[20] != "A" else "B") + key[21:]
    ssm.gets.clear()
    with pytest.raises(ApiError):
        authenticate(_bearer(typo), store)
    assert ssm.gets == []


def test_untagged_first_format_keys_only_where_allowed(ssm, prefix):
    key_id = "abcdefghijkl"
    old_key = f"gf_{key_id}_{secrets.token_urlsafe(32)}"
    SsmKeyStore(ssm, prefix).put(KeyRecord(key_id=key_id, sha256=hash_key(old_key), name="old"))
    ssm.gets.clear()
    with pytest.raises(ApiError) as info:
        authenticate(_bearer(old_key), SsmKeyStore(ssm, prefix))
    assert info.value.status == 403 and not any(name.endswith(key_id) for name in ssm.gets)
    assert authenticate(_bearer(old_key), SsmKeyStore(ssm, prefix, accept_untagged=True)).id == key_id


def test_cache_is_a_bounded_lru_with_negative_entries(ssm, prefix):
    now = [0.0]
    store = SsmKeyStore(ssm, prefix, max_entries=3, clock=lambda: now[0])
    valid = store.mint("dave")
    tag = store.tag_secret()
    authenticate(_bearer(valid), store)
    ssm.gets.clear()
    unknown = [_random_key(tag, valid_tag=True) for _ in range(6)]  # pass the tag, miss the store
    for key in unknown[:2]:
        for _ in range(5):
            with pytest.raises(ApiError):
                authenticate(_bearer(key), store)
        authenticate(_bearer(valid), store)  # keeps the valid key the most recently used
    assert len(ssm.gets) == 2  # one lookup per unknown id: misses are cached too
    for key in unknown[2:]:
        with pytest.raises(ApiError):
            authenticate(_bearer(key), store)
        authenticate(_bearer(valid), store)
    assert len(store._cache) == 3  # bounded
    ssm.gets.clear()
    authenticate(_bearer(valid), store)
    assert ssm.gets == []  # the valid key was never dropped (the old cache emptied itself at 10,000)
    now[0] += 61
    authenticate(_bearer(valid), store)
    assert len(ssm.gets) == 1  # entries expire, so revocations take effect within a minute


def _untagged_key() -> str:
    return f"gf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def test_a_source_with_too_many_failures_gets_429_without_lookups(ssm, prefix):
    """The budget holds back the keys a flood that costs lookups is made of: keys anyone can make, here untagged
    ones where they are accepted (issue 29 moved tag-verified keys out of its reach: the next test)."""
    now = [0.0]
    store = SsmKeyStore(ssm, prefix, clock=lambda: now[0], accept_untagged=True)
    failures = FailureLimiter(burst=3, per_second=0.1, clock=lambda: now[0])
    valid = _untagged_key()
    store.put(KeyRecord(key_id=parse_key(valid), sha256=hash_key(valid), name="erin"))
    authenticate(_bearer(valid), store, source="198.51.100.7", failures=failures)  # cached as valid
    for _ in range(3):
        with pytest.raises(ApiError) as info:
            authenticate(_bearer(_untagged_key()), store, source="198.51.100.7", failures=failures)
        assert info.value.status == 403
    ssm.gets.clear()
    for _ in range(50):
        with pytest.raises(ApiError) as info:
            authenticate(_bearer(_untagged_key()), store, source="198.51.100.7", failures=failures)
        assert info.value.status == 429 and int(info.value.headers["Retry-After"]) >= 1
    assert ssm.gets == []  # the flood never reached SSM
    assert authenticate(_bearer(valid), store, source="198.51.100.7", failures=failures).id  # cached key still works
    with pytest.raises(ApiError) as info:  # another address is not affected
        authenticate(_bearer(_untagged_key()), store, source="203.0.113.9", failures=failures)
    assert info.value.status == 403
    now[0] += 10  # the budget refills
    with pytest.raises(ApiError) as info:
        authenticate(_bearer(_untagged_key()), store, source="198.51.100.7", failures=failures)
    assert info.value.status == 403


def test_a_flood_never_locks_out_a_key_minted_with_the_tag_secret(ssm, prefix):
    """Issue 29, item 4: keys refused offline use no budget and no lookup; a key whose tag verifies under the
    stack's tag secret is looked up whatever its address did (the flood here even holds the tag secret)."""
    now = [0.0]
    store = SsmKeyStore(ssm, prefix, clock=lambda: now[0], accept_untagged=True)
    failures = FailureLimiter(burst=20, per_second=0.2, clock=lambda: now[0])
    store.mint("first")
    tag = store.tag_secret()
    ip = "198.51.100.7"
    ssm.gets.clear()
    for _ in range(200):  # garbage: refused on the tag alone
        with pytest.raises(ApiError) as info:
            authenticate(_bearer(_random_key()), store, source=ip, failures=failures)
        assert info.value.status == 403
    assert ssm.gets == [] and failures.retry_after(ip) == 0  # no lookup, no budget used
    fresh = store.mint("fresh")  # a real key nobody has used yet (not cached)
    assert authenticate(_bearer(fresh), store, source=ip, failures=failures).id == parse_key(fresh)
    for second in range(0, 32, 4):  # one bad key every 4 s for 30 s, then a newly minted key
        now[0] = float(second)
        with pytest.raises(ApiError):
            authenticate(_bearer(_random_key(tag, valid_tag=False)), store, source=ip, failures=failures)
    newer = store.mint("newer")
    assert authenticate(_bearer(newer), store, source=ip, failures=failures).id == parse_key(newer)
    # A flood that costs lookups (untagged keys here) exhausts the budget: the minted keys still pass, and
    # the flood's lookups stop at the budget instead of throttling SSM for everyone.
    ssm.gets.clear()
    for _ in range(200):
        with pytest.raises(ApiError):
            authenticate(_bearer(_untagged_key()), store, source=ip, failures=failures)
    assert len(ssm.gets) <= 20
    latest = store.mint("latest")
    assert authenticate(_bearer(latest), store, source=ip, failures=failures).id == parse_key(latest)
    assert authenticate(_bearer(fresh), store, source=ip, failures=failures).id == parse_key(fresh)


def _with_wrong_secret(key: str, tag_secret: bytes | None) -> str:
    """A real key id with another secret, tagged so that it passes the offline check."""
    key_id, secret = key[3:15], key[16:-9]
    body = f"gf_{key_id}_{('A' if secret[0] != 'A' else 'B') + secret[1:]}"
    return f"{body}_{key_format.key_tag(body, tag_secret)}"


def test_a_real_key_id_with_a_wrong_secret_is_refused(ssm, prefix):
    """Issue 33's check, kept beside issue 29's rework of the comparison: the id alone never authenticates."""
    store = SsmKeyStore(ssm, prefix, accept_untagged=True)
    key = store.mint("grace")
    assert authenticate(_bearer(key), store).id == parse_key(key)  # cached as valid
    wrong = _with_wrong_secret(key, store.tag_secret())
    assert parse_key(wrong) == parse_key(key) and wrong != key
    with pytest.raises(ApiError) as info:
        authenticate(_bearer(wrong), store)
    assert info.value.status == 403
    with pytest.raises(ApiError) as info:  # the untagged form of the same id and another secret
        authenticate(_bearer(wrong[:-9]), store)
    assert info.value.status == 403


@pytest.mark.parametrize("tagged_with_secret", [True, False])
def test_unknown_key_ids_and_wrong_secrets_get_the_same_answer(ssm, prefix, tagged_with_secret):
    """Issue 29, item 5: before and after the source's budget runs out, status and body never tell whether a
    key id exists (the old code answered a known id 403 and an unknown one 429 once the budget was gone)."""
    now = [0.0]
    store = SsmKeyStore(ssm, prefix, clock=lambda: now[0])
    if tagged_with_secret:
        key = store.mint("heidi")
        tag = store.tag_secret()
    else:  # a stack without a tag secret: checksum tags, which anyone can compute
        key, record = generate_key("heidi")
        store.put(record)
        tag = None
    authenticate(_bearer(key), store)  # the real key id is cached
    wrong = _with_wrong_secret(key, tag)
    # Two addresses with the same history: one keeps sending the real id with a wrong secret, the other
    # unknown ids; step by step (budget left, then spent) they must get the same answers.
    budgets = {ip: FailureLimiter(burst=3, per_second=0.1, clock=lambda: now[0]) for ip in ("192.0.2.1", "192.0.2.2")}
    seen: dict[str, list[tuple[int, str]]] = {ip: [] for ip in budgets}
    for _ in range(8):
        for ip, presented in (("192.0.2.1", wrong), ("192.0.2.2", _random_key(tag, valid_tag=True))):
            with pytest.raises(ApiError) as info:
                authenticate(_bearer(presented), store, source=ip, failures=budgets[ip])
            seen[ip].append((info.value.status, json.dumps(info.value.body(), sort_keys=True)))
    assert seen["192.0.2.1"] == seen["192.0.2.2"]
    assert {status for status, _ in seen["192.0.2.1"]} == ({403} if tagged_with_secret else {403, 429})
    assert authenticate(_bearer(key), store, source="192.0.2.1", failures=budgets["192.0.2.1"]).id  # still works


def test_failure_limiter_is_bounded():
    limiter = FailureLimiter(burst=1, max_sources=100)
    for i in range(1000):
        limiter.record_failure(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._sources) == 100
    assert limiter.retry_after("10.0.3.231") > 0 and limiter.retry_after(None) == 0


def test_authorizer_denies_a_flood_without_ssm_calls(ssm, prefix):
    store = SsmKeyStore(ssm, prefix)
    valid = store.mint("frank")
    failures = FailureLimiter(burst=5, per_second=0.01)

    def event(key, ip):
        return {"headers": {"authorization": f"Bearer {key}"}, "requestContext": {"http": {"sourceIp": ip}}}

    assert authorize(event(valid, "192.0.2.1"), store, failures)["isAuthorized"]
    ssm.gets.clear()
    assert not any(authorize(event(_random_key(), "192.0.2.1"), store, failures)["isAuthorized"] for _ in range(500))
    assert ssm.gets == []
    assert authorize({"headers": {"authorization": "Bearer"}}, store, failures) == {
        "isAuthorized": True, "context": {"key_id": ""}}  # no credentials: the handler answers 401


def test_behind_the_authorizer_a_flood_does_not_deny_real_keys_from_its_address(ssm, prefix):
    """Issue 29, item 4 at the gateway: the authorizer turns a refusal into 403 for the whole address, so a
    flood of made-up keys must leave the address's real, uncached keys alone."""
    store = SsmKeyStore(ssm, prefix, accept_untagged=True)
    store.mint("first")
    failures = FailureLimiter()  # the authorizer's own defaults

    def event(key):
        return {"headers": {"authorization": f"Bearer {key}"}, "requestContext": {"http": {"sourceIp": "192.0.2.7"}}}

    assert not any(authorize(event(_random_key()), store, failures)["isAuthorized"] for _ in range(200))
    assert not any(authorize(event(_untagged_key()), store, failures)["isAuthorized"] for _ in range(50))
    fresh = store.mint("fresh")
    assert authorize(event(fresh), store, failures)["isAuthorized"]
