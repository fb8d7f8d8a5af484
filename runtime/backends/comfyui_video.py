"""ComfyUI's default txt2video / img2video graph, on core nodes of the pinned ComfyUI, for a Wan 2.2 TI2V model.

The model (one id in the model store) is a folder of three ComfyUI model kinds, each linked into the folder of
ComfyUI's ``models/`` that its loader reads (``VideoModel.link``)::

    <model>/diffusion_models/<x>.safetensors   UNETLoader        (Wan 2.2 TI2V 5B, fp16 or fp8)
    <model>/text_encoders/<y>.safetensors      CLIPLoader wan    (umt5-xxl)
    <model>/vae/<z>.safetensors                VAELoader         (the Wan 2.2 VAE)

so the companion files (text encoder, VAE) reach the worker with the model, through the same model store sync and
cache as a checkpoint; nothing is fetched at run time.

Graph (``video_workflow``): UNETLoader -> ModelSamplingSD3 (shift 8) -> KSampler (seed, steps, cfg = guidance,
uni_pc / simple) on the latent of Wan22ImageToVideoLatent (width, height, length; img2video: start_image from the
uploaded LoadImage) -> VAEDecode -> ImageFromBatch (the request's ``frames``: Wan makes 4k+1 frames, so ``length`` is
the next 4k+1 and the extra frames are cut) -> the writer of ``output_format``: CreateVideo (fps) + SaveVideo (mp4,
H.264), SaveWEBM (VP9, fps) or SaveAnimatedWEBP (fps). No core node writes GIF: a gif request is an input error.
Every node and input is checked against the recorded ``/object_info`` in the tests
(tests/fixtures/comfyui/object_info_video.json).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.backends import _http
from runtime.backends.base import JobInputError, OutputEncodingError
from runtime.jobs.models import Img2VideoInputs, Txt2VideoInputs
from runtime.model_store.video_kinds import COMFYUI_VIDEO_PARTS

# ComfyUI models/ subfolders of a video model's parts (model store kind ``video``, checked at upload)
KINDS = COMFYUI_VIDEO_PARTS
WRITERS = {"mp4": "SaveVideo", "webm": "SaveWEBM", "webp": "SaveAnimatedWEBP"}
SIZE_STEP = 32  # Wan22ImageToVideoLatent: width / height step 32 (the latent is 1/16, the VAE patch 2)
MODEL_SHIFT = 8.0


@dataclass(frozen=True)
class VideoModel:
    """The file names ComfyUI's loaders know a linked video model's three parts by."""

    unet: str
    text_encoder: str
    vae: str

    @staticmethod
    def is_bundle(path: Path) -> bool:
        return path.is_dir() and (path / "diffusion_models").is_dir()

    @classmethod
    def link(cls, path: Path, models_root: Path) -> VideoModel:
        """Link each part of the model folder ``path`` into ``models_root/<kind>/``."""
        names = {}
        for kind in KINDS:
            files = sorted(p for p in (path / kind).glob("*") if p.suffix in (".safetensors", ".ckpt", ".pt", ".pth"))
            if len(files) != 1:
                raise JobInputError(f"video model folder {path} must hold exactly one file in {kind}/ "
                                    f"(found {len(files)}); see docs/worker.md (ComfyUI video models)")
            names[kind] = _http.link_model(files[0], models_root / kind)
        return cls(names["diffusion_models"], names["text_encoders"], names["vae"])


def video_workflow(inputs: Txt2VideoInputs, seed: int, model: VideoModel, image_name: str | None) -> dict[str, Any]:
    """The graph of one txt2video (img2video when ``image_name``, the uploaded start image, is given) job."""
    for field in ("width", "height"):
        value = getattr(inputs, field)
        if value % SIZE_STEP:
            raise JobInputError(f"inputs.{field} must be a multiple of {SIZE_STEP} for ComfyUI's Wan video graph "
                                f"(got {value}); ask for {value - value % SIZE_STEP or SIZE_STEP}")
    writer = WRITERS.get(inputs.output_format)
    if writer is None:
        raise JobInputError(f"inputs.output_format {inputs.output_format!r} is not written by ComfyUI's core nodes; "
                            f"use one of {', '.join(WRITERS)}")
    length = inputs.frames + (-(inputs.frames - 1)) % 4  # the next 4k+1
    wf: dict[str, Any] = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": model.unet, "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": model.text_encoder, "type": "wan"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": model.vae}},
        "4": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": MODEL_SHIFT}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": inputs.prompt, "clip": ["2", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": inputs.negative_prompt, "clip": ["2", 0]}},
        "7": {"class_type": "Wan22ImageToVideoLatent", "inputs": {
            "vae": ["3", 0], "width": inputs.width, "height": inputs.height, "length": length, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": inputs.steps, "cfg": inputs.guidance, "sampler_name": inputs.scheduler or "uni_pc",
            "scheduler": "simple", "denoise": 1.0, "model": ["4", 0], "positive": ["5", 0], "negative": ["6", 0],
            "latent_image": ["7", 0]}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
        "10": {"class_type": "ImageFromBatch",
               "inputs": {"image": ["9", 0], "batch_index": 0, "length": inputs.frames}},
    }
    if isinstance(inputs, Img2VideoInputs) and image_name:
        wf["11"] = {"class_type": "LoadImage", "inputs": {"image": image_name}}
        wf["7"]["inputs"]["start_image"] = ["11", 0]
    fps = float(inputs.fps)
    if writer == "SaveVideo":
        wf["12"] = {"class_type": "CreateVideo", "inputs": {"images": ["10", 0], "fps": fps}}
        wf["13"] = {"class_type": "SaveVideo", "inputs": {"video": ["12", 0], "filename_prefix": "genai",
                                                          "format": "mp4", "codec": "h264"}}
    elif writer == "SaveWEBM":
        wf["13"] = {"class_type": "SaveWEBM", "inputs": {"images": ["10", 0], "filename_prefix": "genai",
                                                         "codec": "vp9", "fps": fps, "crf": 32.0}}
    else:
        wf["13"] = {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["10", 0], "filename_prefix": "genai",
                                                                 "fps": fps, "lossless": False, "quality": 80,
                                                                 "method": "default"}}
    return wf


def video_info(data: bytes, inputs: Txt2VideoInputs) -> dict[str, Any]:
    """What the job record says about the video ComfyUI wrote (``OutputFile.video``), read by decoding it; a file
    whose frame count or size is not the request's is an encoding error (the job fails with the figures)."""
    import av  # PyAV: only where a video is read

    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            count = sum(1 for _ in container.decode(stream))
            width, height = stream.codec_context.width, stream.codec_context.height
    except (av.error.FFmpegError, IndexError) as exc:
        raise OutputEncodingError(f"ComfyUI's video could not be decoded: {exc}") from exc
    if (count, width, height) != (inputs.frames, inputs.width, inputs.height):
        raise OutputEncodingError(f"ComfyUI wrote {count} frames of {width}x{height}; the job asks for "
                                  f"{inputs.frames} of {inputs.width}x{inputs.height}")
    return {"format": inputs.output_format, "frames": count, "fps": inputs.fps,
            "duration_s": round(count / inputs.fps, 3), "width": width, "height": height, "bytes": len(data)}
