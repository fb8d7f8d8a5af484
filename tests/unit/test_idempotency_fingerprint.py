"""The Idempotency-Key fingerprint is of the job, not of its key order (issue 33, from the mutation run): a
client that retries with a workflow graph (or named images) serialized in another order must be answered with
the same job, not 422 idempotency-key-reused."""

from __future__ import annotations

from runtime.jobs.schema import fingerprint, validate_job


def test_a_workflow_in_another_key_order_has_the_same_fingerprint():
    nodes = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7}},
             "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}}}
    reordered = {"4": {"inputs": {"ckpt_name": "m.safetensors"}, "class_type": "CheckpointLoaderSimple"},
                 "3": {"inputs": {"cfg": 7, "steps": 20, "seed": 1}, "class_type": "KSampler"}}
    first = validate_job({"model": "m", "task": "comfyui-workflow", "inputs": {"workflow": nodes}})
    again = validate_job({"task": "comfyui-workflow", "inputs": {"workflow": reordered}, "model": "m"})
    assert fingerprint(first) == fingerprint(again)
    other = {**nodes, "3": {"class_type": "KSampler", "inputs": {"seed": 2, "steps": 20, "cfg": 7}}}
    assert fingerprint(first) != fingerprint(
        validate_job({"model": "m", "task": "comfyui-workflow", "inputs": {"workflow": other}}))
