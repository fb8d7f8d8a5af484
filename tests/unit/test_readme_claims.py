"""What the README and docs say about the deploy and the boot, compared with the code that does it."""

from __future__ import annotations

import ast
import json
import re

from fleetdev.pulumi_mocks import ROOT, run_stack
from tests.unit.component_harness import each

README = (ROOT / "README.md").read_text()


def _section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_webhook_secret_is_read_by_whom_the_readme_says():
    """The README's webhook secret step names the only reader of the signing secret; the recorded IAM grants agree."""
    step = _section(README, ". **Webhook signing secret**", ". **API key**")
    named = re.findall(r"read only by the `([a-z-]+)` function", step)
    for stack in ("dev", "prod"):
        rec = run_stack(stack)
        secret = f"parameter/genai-fleet/{stack}/webhook-secret"
        readers = set()
        for policy in each(rec, "aws:iam/rolePolicy:RolePolicy"):
            for st in json.loads(policy.inputs["policy"])["Statement"]:
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                if any(r.endswith(secret) for r in resources):
                    readers.add(policy.name.removeprefix("events-").removesuffix("-policy"))
        assert readers == set(named) == {"webhook-sender"}, stack


def _boot_warning_codes() -> set[str]:
    """The ``what=`` of every ``BootWarnings`` count in runtime/worker/boot.py."""
    tree = ast.parse((ROOT / "runtime/worker/boot.py").read_text())
    codes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and ast.unparse(node.args[0]) == "m.BOOT_WARNINGS":
            codes |= {kw.value.value for kw in node.keywords if kw.arg == "what"}
    return codes


def test_the_readme_lists_the_boot_warnings_the_agent_counts():
    """The failure policy names each boot warning and no other (a missing webhook secret is not one: the agent
    reads no secret)."""
    policy = _section(README, "Failure policy on an instance:", "**First-boot rehearsal**")
    listed = set(re.findall(r"`([a-z-]+)`, (?:a|the) ", policy))
    assert listed == _boot_warning_codes() == {"hot-model", "warm-up", "compile-cache-cold"}
    assert "missing webhook secret" not in policy


def test_the_readme_says_what_a_missing_hot_model_does():
    """The models step: a hot model not uploaded is a boot warning and the instance joins (boot.py completes the
    launching action CONTINUE after it); nothing replaces the instance for it."""
    step = _section(README, ". **Models**", "`tests/unit/test_deploy_steps.py`")
    assert "`what: hot-model`" in step and "joins anyway" in step and "replaces" not in step
    assert "hot-model" in _boot_warning_codes()


def test_no_doc_says_webhooks_leave_from_the_workers():
    """Webhooks are sent by the stack's webhook-sender function from the table's stream; the agent has no
    webhook code at all."""
    claims = re.compile(r"webhooks? (?:leave|leaves|are sent|is sent) from the workers|until webhooks move", re.I)
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert not claims.search(path.read_text()), path.name
    for path in sorted((ROOT / "runtime/worker").glob("*.py")):
        assert "webhook_dispatch" not in path.read_text() and "webhooks import" not in path.read_text(), path.name
