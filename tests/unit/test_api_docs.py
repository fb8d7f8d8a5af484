"""docs/api.md's client-side webhook check works against the signer, and its key format matches the code."""

from __future__ import annotations

import re
import time
from pathlib import Path

from runtime.api.auth import generate_key
from runtime.functions.webhooks import sign

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()


def _verify_function():
    section = DOC.split("### Verifying a webhook", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # our own documentation's snippet
    return namespace["verify"]


def test_the_documented_webhook_check_accepts_real_signatures_and_refuses_others():
    verify = _verify_function()
    body, secret = b'{"event":"completed","job":{"id":"j_X"}}', b"whsec-docs"
    header = sign(secret, int(time.time()), body)
    assert verify(secret, header, body)
    assert not verify(secret, header, body + b" ")  # body changed
    assert not verify(b"other", header, body)  # wrong secret
    assert not verify(secret, sign(secret, int(time.time()) - 600, body), body)  # too old: a replay
    assert not verify(secret, "t=abc,v1=00", body) and not verify(secret, "", body)


def test_documented_key_shape_matches_generated_keys():
    key, record = generate_key("docs")
    assert re.fullmatch(r"gf_[a-z0-9]{12}_[A-Za-z0-9_-]{43}_[a-z2-7]{8}", key)
    assert "gf_<key id>_<secret>_<tag>" in DOC and record.key_id == key[3:15]
