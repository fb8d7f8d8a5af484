"""The output signing key drill (issue 43): ``genai-stack rotate-signing-key`` step by step against moto's SSM, the
stack under Pulumi mocks after each step, and links signed before, during and after checked as CloudFront would.

Links signed with the old key keep working through the whole rotation until they expire; the key group holds
two keys between ``add`` and the deploy after ``remove``; ``remove`` is refused while an old link may be valid."""

from __future__ import annotations

import shutil

import boto3
import pytest
from moto import mock_aws

from fleetdev.local.cdn_signatures import SignedUrlVerifier
from fleetdev.pulumi_mocks import ROOT, run_stack
from runtime.jobs.cdn_signing import CloudFrontUrlSigner
from tools import signing_keys
from tools.stack_setup import stack_settings

URL = "https://d111111abcdef8.cloudfront.net/outputs/j_01/1/image-0.png"
PREFIX = "/genai-fleet/dev/output-signing-keys"


@pytest.fixture
def ssm(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


@pytest.fixture
def stack_file(tmp_path, monkeypatch):
    """A copy of the dev stack file the steps edit (stack_setup reads Pulumi.<stack>.yaml under ROOT)."""
    path = tmp_path / "Pulumi.dev.yaml"
    shutil.copy(ROOT / "Pulumi.dev.yaml", path)
    monkeypatch.setattr("tools.stack_setup.ROOT", tmp_path)
    return path


def _keys(ssm) -> dict[str, str]:
    """key name -> public PEM, as the stack would read them into the key group."""
    names = [p["Name"] for p in ssm.describe_parameters()["Parameters"] if p["Name"].endswith("/public")]
    return {n.split("/")[-2]: ssm.get_parameter(Name=n)["Parameter"]["Value"] for n in names}


def _sign(ssm, key: str, expires: int) -> str:
    private = ssm.get_parameter(Name=f"{PREFIX}/{key}/private", WithDecryption=True)["Parameter"]["Value"]
    return CloudFrontUrlSigner(f"id-{key}", private).sign(URL, expires)


def _cdn(ssm, now: float) -> SignedUrlVerifier:
    """The distribution after a deploy: its key group is the keys the stack file names."""
    cfg = stack_settings("dev")
    return SignedUrlVerifier({f"id-{k}": _keys(ssm)[k] for k in cfg.outputs.signing_keys}, clock=lambda: now)


def _ok(verifier: SignedUrlVerifier, url: str) -> bool:
    base, query = url.split("?", 1)
    return verifier.refusal(base, dict(p.split("=", 1) for p in query.split("&"))) is None


def _group(stack_file) -> tuple[list[str], str]:
    text = stack_file.read_text()
    cfg = stack_settings("dev")
    assert "# Development stack" in text  # the stack file's comments stay
    return list(cfg.outputs.signing_keys), cfg.outputs.signing_key


def test_a_rotation_never_breaks_a_link_before_its_expiry(ssm, stack_file):
    now = [1_000_000.0]
    step = lambda: signing_keys.rotate_signing_key(ssm, stack_settings("dev"), stack_file,  # noqa: E731
                                                     clock=lambda: now[0])
    ttl = stack_settings("dev").outputs.url_ttl_seconds

    assert step()["step"] == "init" and _group(stack_file) == (["k1"], "k1") and set(_keys(ssm)) == {"k1"}
    old_link = _sign(ssm, "k1", int(now[0]) + ttl)
    assert _ok(_cdn(ssm, now[0]), old_link)

    assert step()["step"] == "add" and _group(stack_file) == (["k1", "k2"], "k1")
    assert _ok(_cdn(ssm, now[0]), old_link)  # the group holds both; still signing with k1

    switched = step()
    assert switched["step"] == "switch" and _group(stack_file) == (["k1", "k2"], "k2")
    new_link = _sign(ssm, "k2", int(now[0]) + ttl)
    cdn = _cdn(ssm, now[0])
    assert _ok(cdn, old_link) and _ok(cdn, new_link)  # both keys verify during the overlap

    now[0] += ttl  # the old link's last valid moment has passed, but the deploy margin has not
    with pytest.raises(signing_keys.SigningKeyError, match="links signed with k1 may be valid until"):
        step()
    assert _group(stack_file) == (["k1", "k2"], "k2")  # nothing changed

    now[0] += signing_keys.DEPLOY_MARGIN_S
    assert step()["step"] == "remove" and _group(stack_file) == (["k2"], "k2")
    assert set(_keys(ssm)) == {"k2"}
    assert not [p for p in ssm.describe_parameters()["Parameters"] if "/k1/" in p["Name"]]  # private half gone
    later = _sign(ssm, "k2", int(now[0]) + ttl)
    assert _ok(_cdn(ssm, now[0]), later) and not _ok(_cdn(ssm, now[0]), old_link)

    # the next rotation starts again from one key
    assert step()["step"] == "add" and _group(stack_file) == (["k2", "k3"], "k2")


def test_the_stack_follows_each_step_under_mocks():
    """What `make up` would declare: both public keys in the group during a rotation, signing with the one named."""
    rec = run_stack("dev", {"outputSigningKeys": '["k1", "k2"]', "outputSigningKey": "k2"})
    group = rec.one("aws:cloudfront/keyGroup:KeyGroup", "outputs-key-group")
    assert group.inputs["items"] == ["outputs-signing-key-k1-id", "outputs-signing-key-k2-id"]
    env = rec.one("aws:lambda/function:Function", "api-handler-fn").inputs["environment"]["variables"]
    assert env["GENAI_OUTPUT_SIGNING_KEY_ID"] == "outputs-signing-key-k2-id"
    assert env["GENAI_OUTPUT_SIGNING_KEY_PARAMETER"] == f"{PREFIX}/k2/private"


def test_a_key_group_naming_a_key_without_a_key_pair_is_refused(ssm, stack_file):
    signing_keys.set_stack_values(stack_file, {"outputSigningKeys": ["k1", "k7"], "outputSigningKey": "k1"})
    with pytest.raises(signing_keys.SigningKeyError, match=r"lists \['k1', 'k7'\], which have no key pair"):
        signing_keys.rotate_signing_key(ssm, stack_settings("dev"), stack_file)
