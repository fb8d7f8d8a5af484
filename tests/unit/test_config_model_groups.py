"""genai-fleet:modelGroups: a typed map of group -> model ids; every bad value named with what is allowed."""

from __future__ import annotations

import pytest

from components.config import ConfigError, load

BASE = {"owner": "team-a", "costCenter": "cc-1"}


def problems(**values) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load({**BASE, **values}, stack="dev")
    return err.value.problems


def test_groups_arrive_as_json_from_the_engine_and_are_typed():
    cfg = load({**BASE, "modelGroups": '{"sdxl": ["sdxl/base-1.0", "sdxl/turbo"], "flux": ["flux-dev"]}'}, stack="dev")
    assert cfg.queue.model_groups == (("sdxl", ("sdxl/base-1.0", "sdxl/turbo")), ("flux", ("flux-dev",)))
    assert load(BASE, stack="dev").queue.model_groups == ()


@pytest.mark.parametrize(("value", "message"), [
    ('["sdxl"]', "genai-fleet:modelGroups = [\"sdxl\"]: must be an object of group name -> list of model ids"),
    ('{"sdxl": "sdxl-base"}', "must be an object of group name -> list of model ids"),
    ('{"SDXL": ["a"]}', "group 'SDXL': names are 1-24 lowercase letters"),
    ('{"default": ["a"]}', "not 'default'"),
    ('{"sdxl": []}', "group 'sdxl' lists no models"),
    ('{"sdxl": ["Bad Model"]}', "group 'sdxl' contains 'Bad Model': model ids are lowercase"),
    ('{"a": ["m"], "b": ["m"]}', "model 'm' is in groups 'a' and 'b': put it in one"),
    ('{' + ", ".join(f'"g{i}": ["m{i}"]' for i in range(7)) + '}', "has 7 groups: at most 6"),
])
def test_bad_groups_are_named_with_what_is_allowed(value, message):
    assert any(message in p for p in problems(modelGroups=value)), problems(modelGroups=value)


def test_groups_need_sqs_for_now():
    found = problems(modelGroups='{"sdxl": ["a"]}', queueKind="kafka", natGateways="single")
    assert any("queueKind = kafka" in p and "modelGroups" in p for p in found)
