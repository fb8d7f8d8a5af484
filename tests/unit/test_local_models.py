"""Local mode's model store stand-in and its checks: bad input fails before anything starts, with a message
naming what was expected (fleetdev/local/models.py, LocalPlatform's constructor, ``python -m fleetdev.local``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.diffusers_models import TINY_FAMILIES, tiny
from fleetdev.local import __main__ as cli
from fleetdev.local.models import TINY_MODELS, LocalModelError, check, diffusers_layout_problem, upload_source
from fleetdev.local.platform import LocalOptions, LocalPlatform
from runtime.model_store.upload import plan


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny("sd15", tmp_path_factory.mktemp("tiny") / "tiny-sd", seed=0)


def _layout(folder: Path, index: object, components: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(index if isinstance(index, str) else json.dumps(index))
    for name in components:
        (folder / name).mkdir()
        (folder / name / "config.json").write_text("{}")
    return folder


def test_a_tiny_pipeline_is_a_diffusers_layout_the_model_store_takes_whole(tiny_folder):
    assert diffusers_layout_problem(tiny_folder) is None
    model = check({"tiny-sd": str(tiny_folder)}, "diffusers")["tiny-sd"]
    assert (model.kind, model.path, model.tiny) == ("diffusers", tiny_folder, False)
    paths = {f.file.path for f in plan("tiny-sd", "diffusers", [upload_source(model, tiny_folder.parent)]).files}
    assert {"model_index.json", "unet/config.json", "tokenizer/tokenizer_config.json"} <= paths
    assert not any(p.startswith(".") or "/." in p for p in paths)  # no scratch tokenizer left in the model


@pytest.mark.parametrize(("make", "expected"), [
    (lambda d: d.mkdir() or d, "it has no model_index.json"),
    (lambda d: _layout(d, "{not json"), "its model_index.json is not JSON"),
    (lambda d: _layout(d, {"unet": ["diffusers", "UNet2DConditionModel"]}, ("unet",)), "has no _class_name"),
    (lambda d: _layout(d, {"_class_name": "StableDiffusionPipeline"}), "names no components"),
    (lambda d: _layout(d, {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                           "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None]}, ("unet",)),
     "names component folder(s) vae that are not there"),
])
def test_a_folder_that_is_not_a_diffusers_layout_is_refused_saying_what_was_expected(tmp_path, make, expected):
    folder = make(tmp_path / "ckpt")
    with pytest.raises(LocalModelError) as info:
        check({"mine": str(folder)}, "diffusers")
    message = str(info.value)
    assert f"--model mine={folder} is not a diffusers folder" in message and expected in message
    assert "model_index.json plus one folder per component" in message


def test_a_file_a_missing_path_or_a_bad_id_is_refused_for_the_diffusers_backend(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"weights")
    with pytest.raises(LocalModelError, match="is not a diffusers folder: it is a file"):
        check({"m": str(ckpt)}, "diffusers")
    with pytest.raises(LocalModelError, match=r"--model m=.*nowhere: no such file or folder"):
        check({"m": str(tmp_path / "nowhere")}, "diffusers")
    with pytest.raises(LocalModelError, match="--model bad id="):
        check({"bad id": str(ckpt)}, "diffusers")
    assert check({"m": str(ckpt)}, "comfyui")["m"].kind == "checkpoint"  # HTTP backends take checkpoint files


def test_hidden_files_of_a_downloaded_folder_stay_out_of_the_upload(tmp_path, tiny_folder):
    folder = tmp_path / "download"
    folder.mkdir()
    for f in tiny_folder.rglob("*"):
        if f.is_file():
            (folder / f.relative_to(tiny_folder)).parent.mkdir(parents=True, exist_ok=True)
            (folder / f.relative_to(tiny_folder)).write_bytes(f.read_bytes())
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "unet.lock").write_text("")
    model = check({"dl": str(folder)}, "diffusers")["dl"]
    view = upload_source(model, tmp_path / "staging")
    assert view != folder and not (view / ".cache").exists()
    assert (view / "unet" / "config.json").read_bytes() == (folder / "unet" / "config.json").read_bytes()
    assert "unet/config.json" in {f.file.path for f in plan("dl", "diffusers", [view]).files}


def test_the_platform_refuses_bad_input_before_it_starts_anything(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"backend 'diffuser': must be one of diffusers, test-pattern, comfyui, a1111"):
        LocalPlatform(LocalOptions(backend="diffuser", run_dir=run_dir))
    with pytest.raises(LocalModelError, match="is not a diffusers folder"):
        LocalPlatform(LocalOptions(backend="diffusers", models={"m": str(tmp_path)}, run_dir=run_dir))
    with pytest.raises(LocalModelError, match=r"diffusers\.device: 'gpu' is not one of cuda, cpu"):
        LocalPlatform(LocalOptions(backend="diffusers", diffusers={"device": "gpu"}, run_dir=run_dir))
    assert not run_dir.exists()  # nothing was created, let alone started


def test_the_command_line_says_what_is_wrong_and_exits_2_without_starting(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(LocalPlatform, "start", lambda self: pytest.fail("local mode started on bad input"))
    assert cli.main(["--backend", "stable-diffusion"]) == 2
    assert "backend 'stable-diffusion': must be one of diffusers, test-pattern" in capsys.readouterr().err
    assert cli.main(["--backend", "diffusers", "--model", f"sd={tmp_path}"]) == 2
    assert f"--model sd={tmp_path} is not a diffusers folder: it has no model_index.json" in capsys.readouterr().err


def test_the_command_line_options_of_the_diffusers_backend(tmp_path):
    options = cli.options_of(cli.parse_args(["--backend", "diffusers"]))
    assert (options.backend, options.models, options.max_job_seconds, options.metrics_sink) == (
        "diffusers", {}, 60, "stdout")
    named = cli.options_of(cli.parse_args(["--backend", "diffusers", "--model", f"sd={tmp_path}"]))
    assert named.models == {"sd": str(tmp_path)} and named.max_job_seconds == 1800  # real weights on a CPU: minutes
    assert cli.options_of(cli.parse_args([])).backend == "test-pattern"
    with pytest.raises(SystemExit):  # one backend at a time
        cli.parse_args(["--backend", "diffusers", "--comfyui-url", "http://127.0.0.1:8188"])


def test_each_agent_gets_its_share_of_the_cores_for_torch(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    platform = LocalPlatform(LocalOptions(backend="diffusers", workers=2, run_dir=tmp_path / "run"))
    assert platform.worker_env()["OMP_NUM_THREADS"] == "3"  # (8 cores - 1 for moto, the API ...) // 2 agents
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert platform.worker_env()["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in LocalPlatform(LocalOptions(run_dir=tmp_path / "r2")).worker_env()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own setting wins
    assert LocalPlatform(LocalOptions(backend="diffusers", run_dir=tmp_path / "r3")).worker_env()["OMP_NUM_THREADS"] \
        == "1"


def test_every_tiny_family_and_default_model_builds(tmp_path):
    assert {family for family, _ in TINY_MODELS.values()} == set(TINY_FAMILIES)
    for family in TINY_FAMILIES:
        assert diffusers_layout_problem(tiny(family, tmp_path / family)) is None
    with pytest.raises(ValueError, match="tiny pipeline family 'video': must be one of sd15, sdxl"):
        tiny("video", tmp_path / "v")
