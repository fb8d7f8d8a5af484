"""ComfyUI contract, part 2: running prompts (main.py prompt_worker, execution.py PromptExecutor /
PromptQueue, server.py /interrupt /queue /history). Runs against the fake, or a real one with COMFYUI_URL."""

from __future__ import annotations

import json
import time

from tests.contract.comfy_client import new_id, types


def test_event_order_of_a_fresh_run(comfy):
    """execute_async + prompt_worker: execution_start, execution_cached, ``executing`` per node, ``executed``
    for the output node, execution_success; then (after the history entry) ``executing`` with node null.
    The socket is opened before POST /prompt, so no event of even a fast prompt is missed."""
    events = comfy.client.events()
    try:
        prompt_id = new_id("order")
        comfy.client.submit(comfy.workflow(), prompt_id, events.client_id)
        seen = events.finished(prompt_id)
    finally:
        events.close()
    kinds = types(seen)
    assert kinds[:2] == ["execution_start", "execution_cached"], kinds
    assert kinds[-2:] == ["execution_success", "executing"] and seen[-1]["data"]["node"] is None, kinds
    ran = [e["data"]["node"] for e in seen[2:-2] if e["type"] == "executing"]
    assert ran == ["1", "2", "3"], kinds
    executed = [e for e in seen if e["type"] == "executed"]
    assert [e["data"]["node"] for e in executed] == ["3"]
    assert executed[0]["data"]["output"]["images"][0]["type"] == "output"


def test_history_is_written_after_the_terminal_event_and_before_executing_null(comfy):
    """prompt_worker: ``task_done`` (the history entry) comes after execute() sent the terminal event and
    before ``executing`` null: at executing-null the entry is there, complete."""
    events = comfy.client.events()
    try:
        prompt_id = new_id("history")
        comfy.client.submit(comfy.workflow(), prompt_id, events.client_id)
        seen = events.finished(prompt_id)
        entry = comfy.client.history(prompt_id)
    finally:
        events.close()
    assert types(seen).index("execution_success") < len(seen) - 1
    assert entry is not None and entry["status"]["status_str"] == "success" and entry["status"]["completed"]
    messages = [m[0] for m in entry["status"]["messages"]]
    assert messages == ["execution_start", "execution_cached", "execution_success"]
    assert entry["prompt"][1] == prompt_id and entry["outputs"]["3"]["images"]


def test_identical_prompt_is_replayed_from_the_cache_with_the_earlier_file_names(comfy):
    """CacheKeySetInputSignature: same classes and inputs = same keys, whatever the prompt id. The rerun
    executes nothing (``execution_cached`` lists every node) and its history and ``executed`` event carry
    the FIRST run's file names: files an adapter deleted after the first run are gone for the second."""
    workflow = comfy.workflow(prefix=new_id("cache"))
    first, second = new_id("first"), new_id("second")
    comfy.client.submit(workflow, first)
    before = comfy.client.wait_history(first)["outputs"]["3"]["images"]
    events = comfy.client.events()
    try:
        comfy.client.submit(workflow, second, events.client_id)
        seen = events.finished(second)
    finally:
        events.close()
    cached = next(e for e in seen if e["type"] == "execution_cached")["data"]["nodes"]
    assert sorted(cached) == ["1", "2", "3"]
    assert not [e for e in seen if e["type"] == "executing" and e["data"]["node"] is not None]
    replay = next(e for e in seen if e["type"] == "executed")
    assert replay["data"]["output"]["images"] == before
    assert comfy.client.history(second)["outputs"]["3"]["images"] == before


def test_reused_prompt_id_keeps_the_old_history_entry_until_the_new_run_ends(comfy):
    """PromptQueue.task_done replaces ``history[prompt_id]`` only when the new run finishes: a reader that
    reuses an id (a retry under the job id) sees the previous run's result meanwhile."""
    prompt_id = new_id("reuse")
    comfy.client.submit(comfy.workflow(), prompt_id)
    old = comfy.client.wait_history(prompt_id)
    comfy.client.submit(comfy.slow_workflow(), prompt_id)
    comfy.client.wait_running(prompt_id)
    assert comfy.client.history(prompt_id) == old  # still the first run's entry while the second runs
    comfy.client.http.post("/interrupt", json={"prompt_id": prompt_id})
    new = comfy.client.wait_history(prompt_id, differs_from=old)
    assert new["status"]["messages"][-1][0] == "execution_interrupted"
    assert old["status"]["status_str"] == "success"


def test_history_entry_can_be_deleted(comfy):
    """POST /history ``{"delete": [id]}`` removes one entry (PromptQueue.delete_history_item)."""
    prompt_id = new_id("delete")
    comfy.client.submit(comfy.workflow(), prompt_id)
    comfy.client.wait_history(prompt_id)
    assert comfy.client.http.post("/history", json={"delete": [prompt_id]}).status_code == 200
    assert comfy.client.history(prompt_id) is None


def test_node_failure_is_an_execution_error(comfy):
    """An EmptyImage too large to allocate fails inside the node: ``execution_error`` (node id, class,
    exception type and message); history ``status_str`` error, ``completed`` false."""
    workflow = comfy.workflow()
    workflow["1"]["inputs"].update(width=16384, height=16384, batch_size=4096)
    events = comfy.client.events()
    try:
        prompt_id = new_id("fail")
        comfy.client.submit(workflow, prompt_id, events.client_id)
        seen = events.finished(prompt_id)
    finally:
        events.close()
    error = next(e for e in seen if e["type"] == "execution_error")["data"]
    assert (error["node_id"], error["node_type"]) == ("1", "EmptyImage") and error["exception_type"]
    assert "execution_success" not in types(seen)
    status = comfy.client.history(prompt_id)["status"]
    assert status["status_str"] == "error" and status["completed"] is False
    assert status["messages"][-1][0] == "execution_error"


def test_interrupt_of_the_running_prompt(comfy):
    """POST /interrupt with the running prompt's id: ``execution_interrupted`` (before the next node starts),
    history ``status_str`` error with that message; no SaveImage output."""
    events = comfy.client.events()
    try:
        prompt_id = new_id("interrupt")
        comfy.client.submit(comfy.slow_workflow(), prompt_id, events.client_id)
        comfy.client.wait_running(prompt_id)
        assert comfy.client.http.post("/interrupt", json={"prompt_id": prompt_id}).status_code == 200
        seen = events.finished(prompt_id)
    finally:
        events.close()
    assert "execution_interrupted" in types(seen) and "execution_success" not in types(seen)
    entry = comfy.client.history(prompt_id)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted" and "3" not in entry["outputs"]


def test_a_node_that_ignores_interrupts_holds_the_server_until_it_returns(comfy):
    """Issue 34, recorded on a real ComfyUI with a custom node that sleeps without polling the interrupt flag:
    POST /interrupt answers 200 but the prompt stays in ``queue_running`` and a prompt sent after it stays
    pending; when the node returns, the flag (still set) ends the prompt before its next node
    (``execution_interrupted``, no output), and the pending prompt runs."""
    hang_seconds = 8.0  # long beside the 1 s look, so a loaded machine still looks while it sleeps
    stuck, behind = new_id("hung"), new_id("behind")
    comfy.client.submit(comfy.hanging_workflow(hang_seconds), stuck)
    comfy.client.wait_running(stuck)
    comfy.client.submit(comfy.workflow(), behind)
    assert comfy.client.http.post("/interrupt", json={"prompt_id": stuck}).status_code == 200
    time.sleep(1.0)  # well within the node's sleep: the interrupt had every chance to act, and did not
    queue = comfy.client.queue()
    assert [i[1] for i in queue["queue_running"]] == [stuck]
    assert behind in [i[1] for i in queue["queue_pending"]]
    assert comfy.client.history(stuck) is None
    entry = comfy.client.wait_history(stuck)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted" and "3" not in entry["outputs"]
    assert comfy.client.wait_history(behind)["status"]["status_str"] == "success"


def test_interrupt_naming_another_prompt_is_ignored(comfy):
    """server.py post_interrupt: a ``prompt_id`` that is not the running prompt interrupts nothing."""
    prompt_id = new_id("spared")
    comfy.client.submit(comfy.slow_workflow(), prompt_id)
    comfy.client.wait_running(prompt_id)
    comfy.client.http.post("/interrupt", json={"prompt_id": new_id("not-running")})
    assert comfy.client.wait_history(prompt_id)["status"]["status_str"] == "success"


def test_queue_shows_running_and_pending_and_delete_drops_a_pending_prompt(comfy):
    """GET /queue items are ``[number, prompt_id, prompt, extra_data, outputs]``; POST /queue ``delete``
    removes a pending prompt, which then never runs (no history)."""
    running, pending = new_id("running"), new_id("pending")
    comfy.client.submit(comfy.slow_workflow(), running)
    comfy.client.wait_running(running)
    comfy.client.submit(comfy.workflow(), pending, client_id="someone")
    queue = comfy.client.queue()
    assert [i[1] for i in queue["queue_running"]] == [running]
    item = next(i for i in queue["queue_pending"] if i[1] == pending)
    assert item[3]["client_id"] == "someone" and item[4] == ["3"]
    comfy.client.http.post("/queue", json={"delete": [pending]})
    comfy.client.http.post("/interrupt", json={"prompt_id": running})
    comfy.client.wait_history(running)
    assert pending not in [i[1] for i in comfy.client.queue()["queue_pending"]]
    assert comfy.client.history(pending) is None


def test_preview_only_workflow_runs_but_saves_temporary_files_only(comfy):
    """PreviewImage is an output node (so the prompt is valid) whose images are ``type: temp``: there is
    no result to deliver, which the adapter must report as an input error rather than retry."""
    prompt_id = new_id("preview")
    assert comfy.client.submit(comfy.workflow(output="PreviewImage"), prompt_id).status_code == 200
    images = comfy.client.wait_history(prompt_id)["outputs"]["3"]["images"]
    assert images and {i["type"] for i in images} == {"temp"}


def test_interrupt_with_nothing_running_does_not_touch_the_next_prompt(comfy):
    """nodes.interrupt_processing sets a global flag that execute_async clears when the next prompt
    starts: a late interrupt (its prompt already ended) cannot kill whatever runs next."""
    assert comfy.client.queue()["queue_running"] == []
    comfy.client.http.post("/interrupt", json={})
    prompt_id = new_id("after-interrupt")
    comfy.client.submit(comfy.workflow(), prompt_id)
    assert comfy.client.wait_history(prompt_id)["status"]["status_str"] == "success"


def test_websocket_greets_with_status_and_the_session_id(comfy):
    """server.py websocket_handler: the first message is ``status`` with the queue and ``sid`` (the
    ``clientId`` asked for); events of prompts submitted with that client id go to this socket only."""
    events = comfy.client.events()
    try:
        first = json.loads(events.ws.recv_text(timeout=10) or "{}")
    finally:
        events.close()
    assert first["type"] == "status" and first["data"]["sid"] == events.client_id
    assert "queue_remaining" in first["data"]["status"]["exec_info"]
