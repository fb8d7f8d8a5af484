"""The agent's entry point refuses to start on a model cache folder another agent owns, with the message that
names the folder and the setting to change (issue 28), instead of ending on a traceback."""

from __future__ import annotations

import json
import logging

from runtime.model_cache import CacheOwned
from runtime.worker import __main__ as entry


def test_a_second_agent_on_one_cache_folder_stops_with_the_setting_to_change(tmp_path, monkeypatch, caplog):
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"stack": "s", "region": "us-east-1", "queue": {"kind": "sqs", "url": "https://q"},
                                  "job_table": "t", "outputs": {"bucket": "b", "cdn_base_url": "https://cdn"},
                                  "backend": "test-pattern"}))

    def owned(*args, **kwargs):
        raise CacheOwned("model cache folder /var/cache/genai-fleet/models is in use by another agent; give each "
                         "agent its own model_cache.cache_dir")

    monkeypatch.setattr(entry, "build", owned)
    with caplog.at_level(logging.ERROR):
        assert entry.run(str(config)) == 2
    assert "model_cache.cache_dir" in caplog.text and "cannot start" in caplog.text
