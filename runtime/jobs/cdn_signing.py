"""CloudFront signed URLs for outputs (issue 43): botocore's ``CloudFrontSigner`` with an RSA key.

A canned policy (the URL and an expiry): CloudFront serves the URL until ``Expires`` when ``Signature``
verifies with the public key ``Key-Pair-Id`` names in the behaviour's trusted key group, and answers 403
otherwise. The signature is RSA-SHA256, which CloudFront accepts when the URL says ``Hash-Algorithm=SHA256``
(its default, SHA-1, is what botocore's signer assumes; the signer's RSA function is ours, so we choose).
The private key (PEM) is an SSM SecureString that only the API and the webhook sender may read
(components/cdn_storage.py, components/api.py, components/job_events.py); it is read once per process.

Environment of both: ``GENAI_OUTPUT_SIGNING_KEY_ID`` (the CloudFront public key id) and
``GENAI_OUTPUT_SIGNING_KEY_PARAMETER`` (the SecureString); neither set: public links.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from runtime.jobs.output_links import DEFAULT_TTL_SECONDS, OutputLinks

KEY_ID_VARIABLE = "GENAI_OUTPUT_SIGNING_KEY_ID"
KEY_PARAMETER_VARIABLE = "GENAI_OUTPUT_SIGNING_KEY_PARAMETER"
HASH_ALGORITHM = "Hash-Algorithm=SHA256"  # CloudFront's parameter naming the signature's hash (default SHA-1)


class CloudFrontUrlSigner:
    """Signs output URLs with a canned policy: RSA-SHA256 over the policy, as CloudFront verifies them."""

    def __init__(self, key_id: str, private_key_pem: bytes | str) -> None:
        pem = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a CloudFront signing key must be an RSA private key (PEM)")
        self.key_id = key_id
        self._signer = CloudFrontSigner(key_id, lambda policy: key.sign(policy, padding.PKCS1v15(), hashes.SHA256()))

    def sign(self, url: str, expires_at: int) -> str:
        signed = self._signer.generate_presigned_url(url, date_less_than=dt.datetime.fromtimestamp(expires_at, dt.UTC))
        return f"{signed}&{HASH_ALGORITHM}"


def new_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM) of a new 2048-bit RSA key: the size CloudFront public keys take."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def output_links(base_url: str, key_id: str | None, parameter: str | None, ssm: Callable[[], Any],
                 ttl_s: int = DEFAULT_TTL_SECONDS) -> OutputLinks:
    """The output links of a process: signed when it is given a signing key (``key_id``, and the SecureString
    ``parameter`` holding its private half, read once through ``ssm()``, a boto3 client), public when given
    neither (``outputAccess: public``)."""
    if not key_id and not parameter:
        return OutputLinks(base_url, ttl_s=ttl_s)
    if not key_id or not parameter:
        raise RuntimeError(f"{KEY_ID_VARIABLE} and {KEY_PARAMETER_VARIABLE} go together: set both (signed "
                           f"output links) or neither (public)")
    pem = ssm().get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    return OutputLinks(base_url, CloudFrontUrlSigner(key_id, pem), ttl_s=ttl_s)
