"""How API keys are formed, so a random or mistyped key is refused before any key-store lookup.

A key is ``gf_<key_id>_<secret>_<tag>``:

- ``key_id``: 12 lowercase letters/digits, public; names the key record (SSM parameter ``<prefix>/<key_id>``);
- ``secret``: 43 URL-safe base64 characters (256 random bits);
- ``tag``: 8 base32 characters (40 bits), the first bytes of ``HMAC-SHA256(tag_secret, "gf_<key_id>_<secret>")``.

With a tag secret (the stack's ``<prefix>/tag-secret`` SecureString, created on first mint), only someone who
holds it can make a key that passes the tag check, so a flood of made-up keys costs no SSM call at all; a
guessed tag passes once in 2**40. Without one, the tag is keyed with a public constant and works like the
checksums major API providers put in their tokens: typos and random strings are still refused offline.

Keys of the first format (``gf_<key_id>_<secret>``, no tag) are accepted only where the key store allows
them (``accept_untagged``: local mode; in the cloud only with ``GENAI_API_KEYS_ACCEPT_UNTAGGED=true``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

PUBLIC_TAG_KEY = b"genai-fleet api key checksum v1"  # used when no tag secret is configured
TAG_SECRET_NAME = "tag-secret"  # noqa: S105 - a parameter name beside the key records, never a key id
_TAGGED = re.compile(r"^(gf_([a-z0-9]{12})_[A-Za-z0-9_-]{43})_([a-z2-7]{8})$")
_UNTAGGED = re.compile(r"^gf_([a-z0-9]{12})_[A-Za-z0-9_-]{43}$")
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    tagged: bool
    tag_ok: bool  # False for untagged keys and for tags that do not match


def key_tag(body: str, tag_secret: bytes | None) -> str:
    """The 8-character tag of ``gf_<key_id>_<secret>`` under ``tag_secret`` (None: the public checksum key)."""
    mac = hmac.new(tag_secret or PUBLIC_TAG_KEY, body.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:5]).decode().lower()


def new_key(tag_secret: bytes | None = None) -> tuple[str, str]:
    """(key, key_id) of a fresh tagged key."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    body = f"gf_{key_id}_{secrets.token_urlsafe(32)}"
    return f"{body}_{key_tag(body, tag_secret)}", key_id


def parse(key: str, tag_secret: bytes | None = None) -> ParsedKey | None:
    """What a presented key claims to be, checked offline; None when it has neither format."""
    m = _TAGGED.match(key)
    if m:
        ok = hmac.compare_digest(m.group(3), key_tag(m.group(1), tag_secret))
        return ParsedKey(key_id=m.group(2), tagged=True, tag_ok=ok)
    m = _UNTAGGED.match(key)
    if m:
        return ParsedKey(key_id=m.group(1), tagged=False, tag_ok=False)
    return None


def new_tag_secret() -> str:
    return secrets.token_urlsafe(32)
