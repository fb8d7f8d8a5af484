"""Signed URL checks of local mode's CDN stand-in, as CloudFront makes them for a behaviour with a trusted key group.

A request is served only when its query carries a canned policy's ``Expires``, ``Signature`` and
``Key-Pair-Id`` (and optionally ``Hash-Algorithm``: ``SHA1``, the default, or ``SHA256``), the key id is
one of the key group's public keys, the signature verifies over the canned policy rebuilt from the
requested URL (so a URL re-pointed at another object fails) and ``Expires`` is still ahead. Anything else
is CloudFront's 403. The policy is rebuilt byte for byte as CloudFront and botocore's signer write it:
``{"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":<expires>}}}]}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNING_PARAMETERS = ("Expires", "Signature", "Key-Pair-Id", "Hash-Algorithm", "Policy")
_HASHES = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256}


def canned_policy(resource: str, expires: int) -> bytes:
    statement = {"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
    return json.dumps({"Statement": [statement]}, separators=(",", ":")).encode()


def _url_b64decode(value: str) -> bytes:
    """CloudFront's URL-safe base64: '-' for '+', '_' for '=', '~' for '/'."""
    return base64.b64decode(value.replace("-", "+").replace("_", "=").replace("~", "/"), validate=True)


class SignedUrlVerifier:
    """The key group's public keys (key id -> PEM); ``refusal`` says why a request is refused, or None."""

    def __init__(self, public_keys: Mapping[str, str | bytes], clock: Callable[[], float] = time.time) -> None:
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        for key_id, pem in public_keys.items():
            key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError(f"public key {key_id}: CloudFront key groups hold RSA public keys")
            self._keys[key_id] = key
        self._clock = clock

    def refusal(self, resource: str, query: Mapping[str, str]) -> str | None:
        """None when ``resource`` (the requested URL without the signing parameters) may be served."""
        if "Policy" in query:
            return "custom policies are not used by this stack"
        missing = [p for p in ("Expires", "Signature", "Key-Pair-Id") if not query.get(p)]
        if missing:
            return f"missing {', '.join(missing)}"
        key = self._keys.get(query["Key-Pair-Id"])
        if key is None:
            return "unknown Key-Pair-Id"
        algorithm = _HASHES.get(query.get("Hash-Algorithm") or "SHA1")
        if algorithm is None:
            return "unsupported Hash-Algorithm"
        try:
            expires = int(query["Expires"])
            signature = _url_b64decode(query["Signature"])
        except (ValueError, binascii.Error):
            return "malformed Expires or Signature"
        try:
            key.verify(signature, canned_policy(resource, expires), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            return "signature does not match"
        if self._clock() >= expires:
            return "expired"
        return None
