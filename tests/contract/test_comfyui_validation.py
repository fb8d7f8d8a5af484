"""ComfyUI contract, part 1: POST /prompt answers, /view and /upload/image (server.py, execution.py
``validate_prompt`` / ``validate_inputs``). Runs against the fake, or a real server with COMFYUI_URL."""

from __future__ import annotations

from tests.contract.comfy_client import new_id


def test_client_prompt_id_is_used(comfy):
    """server.py post_prompt: ``prompt_id`` from the body (else a uuid4); answer ``prompt_id``, ``number``,
    ``node_errors`` (empty for a valid prompt)."""
    prompt_id = new_id("id")
    answer = comfy.client.submit(comfy.workflow(), prompt_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["prompt_id"] == prompt_id and body["node_errors"] == {} and isinstance(body["number"], int | float)
    comfy.client.wait_history(prompt_id)


def test_unknown_node_class_names_the_node_only_in_error_details(comfy):
    """validate_prompt: an unknown class_type is ``invalid_prompt`` with EMPTY ``node_errors``; the node id
    is only in ``error.details`` ("Node ID '#7'") — an adapter that drops details loses it."""
    workflow = {**comfy.workflow(), "7": {"class_type": "NoSuchNodeClass", "inputs": {}}}
    answer = comfy.client.submit(workflow, new_id("unknown"))
    assert answer.status_code == 400
    body = answer.json()
    assert body["node_errors"] == {}
    assert body["error"]["type"] == "invalid_prompt"
    assert "NoSuchNodeClass" in body["error"]["message"] and "#7" in body["error"]["details"]


def test_missing_required_input_is_a_node_error(comfy):
    """validate_inputs: ``required_input_missing`` on the node that lacks it; no valid output left ->
    400 ``prompt_outputs_failed_validation``. Its ``error.details`` holds only the OUTPUT nodes' own errors
    (here none: SaveImage is invalid through its input), so the problem is named in ``node_errors`` only."""
    workflow = comfy.workflow()
    del workflow["2"]["inputs"]["image"]
    answer = comfy.client.submit(workflow, new_id("missing"))
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    node = body["node_errors"]["2"]
    assert node["class_type"] == "ImageInvert" and node["dependent_outputs"] == ["3"]
    assert [(e["type"], e["details"]) for e in node["errors"]] == [("required_input_missing", "image")]
    assert body["error"]["details"] == ""
    workflow = comfy.workflow()
    del workflow["3"]["inputs"]["images"]  # now the output node's own error: it is in the details too
    body = comfy.client.submit(workflow, new_id("missing-out")).json()
    assert body["error"]["details"] == "Required input is missing: images"


def test_prompt_without_output_node_is_refused(comfy):
    """validate_prompt: no OUTPUT_NODE class in the graph -> 400 ``prompt_no_outputs``."""
    workflow = comfy.workflow()
    del workflow["3"]
    answer = comfy.client.submit(workflow, new_id("no-output"))
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "prompt_no_outputs"


def test_body_without_prompt_is_refused(comfy):
    """post_prompt: no ``prompt`` key -> 400 ``no_prompt``."""
    answer = comfy.client.http.post("/prompt", json={"client_id": "x"})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "no_prompt"


def test_load_image_of_a_missing_file_fails_custom_validation(comfy):
    """LoadImage.VALIDATE_INPUTS replaces the list check: ``custom_validation_failed``, "Invalid image file"."""
    workflow = comfy.workflow()
    workflow["1"] = {"class_type": "LoadImage", "inputs": {"image": "no-such-file-here.png"}}
    answer = comfy.client.submit(workflow, new_id("loadimage"))
    assert answer.status_code == 400
    errors = answer.json()["node_errors"]["1"]["errors"]
    assert errors[0]["type"] == "custom_validation_failed" and "Invalid image file" in errors[0]["details"]


def test_uploaded_image_is_accepted_by_load_image(comfy):
    """/upload/image stores into the input folder and answers ``name``, ``subfolder``, ``type: input``;
    LoadImage then validates with that name."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="PNG")
    name = f"{new_id('upload')}.png"
    answer = comfy.client.http.post("/upload/image", files={"image": (name, buf.getvalue(), "image/png")},
                                    data={"overwrite": "true"})
    assert answer.status_code == 200 and answer.json() == {"name": name, "subfolder": "", "type": "input"}
    workflow = comfy.workflow()
    workflow["1"] = {"class_type": "LoadImage", "inputs": {"image": name}}
    prompt_id = new_id("loaded")
    assert comfy.client.submit(workflow, prompt_id).status_code == 200
    assert comfy.client.wait_history(prompt_id)["status"]["status_str"] == "success"


def test_view_serves_the_files_content_type_and_guards_paths(comfy):
    """server.py view_image: content type from the file name (mimetypes), 404 when missing, 400 for
    ``..`` in the name, 403 for a subfolder outside the folder."""
    prompt_id = new_id("view")
    comfy.client.submit(comfy.workflow(prefix=prompt_id), prompt_id)
    image = comfy.client.wait_history(prompt_id)["outputs"]["3"]["images"][0]
    view = comfy.client.http.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"],
                                                  "type": "output"})
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert view.content.startswith(b"\x89PNG")
    http = comfy.client.http
    assert http.get("/view", params={"filename": "nope-" + prompt_id + ".png", "type": "output"}).status_code == 404
    assert http.get("/view", params={"filename": "../secret.png", "type": "output"}).status_code == 400
    assert http.get("/view", params={"filename": "x.png", "subfolder": "../..", "type": "output"}).status_code == 403
