"""The demo's table (tools/demo.py): signed output URLs (issue 43) are shown without their long query."""

from __future__ import annotations

from tools.demo import shown_url, table

SIGNED = ("http://127.0.0.1:1/outputs/j_1/1/image-0.png?Expires=1796711772&Signature=" + "a" * 340
          + "&Key-Pair-Id=KLOCALOUTPUTS1&Hash-Algorithm=SHA256")


def test_a_signed_url_is_shown_as_its_object_path_marked_signed():
    assert shown_url(SIGNED) == "http://127.0.0.1:1/outputs/j_1/1/image-0.png (signed)"
    assert shown_url("http://cdn/outputs/j_1/1/image-0.png") == "http://cdn/outputs/j_1/1/image-0.png"


def test_the_table_stays_narrow_with_signed_urls():
    row = {"id": "j_1", "mode": "sync", "size": "512x512", "status": "succeeded", "attempts": 1, "queue": 9,
           "infer": 514, "upload": 8, "total": 542, "e2e": 580, "check": "ok PNG", "url": SIGNED}
    assert max(len(line) for line in table([row]).splitlines()) < 200
