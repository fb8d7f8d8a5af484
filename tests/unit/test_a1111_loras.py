"""LoRAs on A1111 (issue 40): the job's LoRAs reach the WebUI as ``<lora:NAME:WEIGHT>`` tags naming files the agent
fetched and linked into the folder ``--lora-dir`` names; extra-network tags typed into users' prompts are stripped
(A1111 would load any ``<type:args>`` it finds: modules/extra_networks.py ``re_extra_net``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.backends.a1111_loras import strip_extra_networks
from runtime.backends.base import ExtraModel, JobInputError
from tests.job_context import job_context
from tests.unit.test_backends_a1111 import backend_for, model, webui  # noqa: F401 - the fixture


def _lora(tmp_path: Path, model_id: str) -> ExtraModel:
    path = tmp_path / "cache" / f"{model_id.replace('/', '--')}@v1" / "weights.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"lora")
    return ExtraModel(path, "lora")


def test_the_webui_receives_lora_tags_naming_the_linked_files_and_no_user_tags(webui, tmp_path):  # noqa: F811
    backend = backend_for(webui)
    backend.load_model("sd15", model(tmp_path, "sd15.safetensors"))
    ctx = job_context("j1", "sd15/base", "txt2img", prompt="a cat <lora:../../etc/secret:1> <hypernet:x:2>, sunny",
                      negative_prompt="blurry <lyco:other:0.5>", seed=7,
                      loras=[{"model": "sd15/pix", "weight": 0.8}, {"model": "sd15/ink", "weight": -0.5}])
    ctx.extra_models = {m: _lora(tmp_path, m) for m in ("sd15/pix", "sd15/ink")}
    backend.run(ctx)
    sent = webui.generations[-1]
    assert sent["prompt"] == "a cat  , sunny <lora:sd15--pix:0.8> <lora:sd15--ink:-0.5>"
    assert sent["negative_prompt"] == "blurry "
    assert (webui.lora_dir / "sd15--pix.safetensors").resolve() == ctx.extra_models["sd15/pix"].path.resolve()
    assert ("POST", "/sdapi/v1/refresh-loras") in webui.requests


def test_a_prompt_without_loras_is_stripped_of_tags_too(webui, tmp_path):  # noqa: F811
    backend = backend_for(webui)
    backend.load_model("sd15", model(tmp_path, "sd15.safetensors"))
    backend.run(job_context("j2", "sd15", "txt2img", prompt="<lora:anything:1>a dog", seed=1))
    assert webui.generations[-1]["prompt"] == "a dog"
    assert ("POST", "/sdapi/v1/refresh-loras") not in webui.requests  # nothing to link: no refresh


def test_a_lora_the_webui_does_not_list_is_an_input_error_not_a_silent_base_image(webui, tmp_path):  # noqa: F811
    """A1111 skips an unknown LoRA with a log line; the adapter checks its list instead of trusting it."""
    webui.lora_dir = tmp_path / "elsewhere"  # a WebUI started without --lora-dir on the agent's folder
    backend = backend_for(webui)
    backend.load_model("sd15", model(tmp_path, "sd15.safetensors"))
    ctx = job_context("j3", "sd15/base", "txt2img", prompt="a cat", seed=7, loras=[{"model": "sd15/pix"}])
    ctx.extra_models = {"sd15/pix": _lora(tmp_path, "sd15/pix")}
    with pytest.raises(JobInputError, match="--lora-dir"):
        backend.run(ctx)
    assert webui.generations == []


@pytest.mark.parametrize(("text", "clean"), [
    ("<lora:x:1>", ""), ("a <LORA:x> b", "a  b"), ("<lyco:a:b:c>d", "d"), ("a < b > c", "a < b > c"),
    ("x <not a tag> y", "x <not a tag> y"), ("<a:b><c:d>e", "e"),
])
def test_strip_follows_a1111s_extra_network_pattern(text, clean):
    assert strip_extra_networks(text) == clean
