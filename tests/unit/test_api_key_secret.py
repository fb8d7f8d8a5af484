"""The key's secret is checked, not only its id and tag (issue 33, finding 1): a real key id with a wrong secret
and a tag that is valid for that wrong key is refused, through authenticate() and through the Lambda authorizer."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest

from runtime.api import key_format
from runtime.api.auth import StaticKeyStore, authenticate, generate_key
from runtime.api.authorizer import authorize
from runtime.api.problems import ApiError


def _same_id_other_secret(key: str, tag_secret: bytes | None) -> str:
    """``gf_<the real key id>_<another secret>_<the tag that other key really has>``: passes every offline check."""
    key_id = key_format.parse(key, tag_secret).key_id
    body = f"gf_{key_id}_{secrets.token_urlsafe(32)}"
    return f"{body}_{key_format.key_tag(body, tag_secret)}"


@pytest.mark.parametrize("tag_secret", [None, b"the stack's tag secret"], ids=["public-checksum", "tag-secret"])
def test_a_real_key_id_with_a_wrong_secret_is_forbidden(tag_secret):
    key, record = generate_key("alice", tag_secret=tag_secret)
    store = StaticKeyStore({record.key_id: record}, tag_secret=tag_secret, accept_untagged=False)
    forged = _same_id_other_secret(key, tag_secret)
    parsed = key_format.parse(forged, tag_secret)
    assert parsed.key_id == record.key_id and parsed.tag_ok  # only the secret differs
    assert authenticate({"authorization": f"Bearer {key}"}, store).id == record.key_id
    with pytest.raises(ApiError) as info:
        authenticate({"authorization": f"Bearer {forged}"}, store)
    assert info.value.status == 403
    with pytest.raises(ApiError) as info:
        authenticate({"x-api-key": forged}, store)
    assert info.value.status == 403
    assert authorize({"headers": {"authorization": f"Bearer {forged}"}}, store) == {"isAuthorized": False}
    assert authorize({"headers": {"authorization": f"Bearer {key}"}}, store)["isAuthorized"] is True


def test_an_untagged_key_with_a_real_id_and_a_wrong_secret_is_forbidden():
    key_id = "abcdefghijkl"
    real = f"gf_{key_id}_{secrets.token_urlsafe(32)}"
    store = StaticKeyStore.from_keys([real])  # local mode: first-format keys accepted
    assert authenticate({"x-api-key": real}, store).id == key_id
    with pytest.raises(ApiError) as info:
        authenticate({"x-api-key": f"gf_{key_id}_{secrets.token_urlsafe(32)}"}, store)
    assert info.value.status == 403


def test_a_disabled_key_is_forbidden_with_its_right_secret():
    key, record = generate_key("revoked")
    store = StaticKeyStore({record.key_id: replace(record, disabled=True)})
    with pytest.raises(ApiError) as info:
        authenticate({"authorization": f"Bearer {key}"}, store)
    assert info.value.status == 403
