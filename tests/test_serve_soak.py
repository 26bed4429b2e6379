"""The short soak: scripts/soak.py for ~60 s (the real daemon, mosquitto restarted once, HTTP pollers, an event
stream, POST /v1/infer, a slowloris client). RSS, fds and threads must stay flat after the warm-up, nothing may be
lost over MQTT, and the daemon must exit 0. The 10-minute run is the same script with its default duration.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from serve_env import MOSQUITTO, ROOT, need_binary


def test_short_soak_is_flat_and_loses_nothing(tmp_path, cpm_bundle):
    need_binary(MOSQUITTO)
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--bundle", str(cpm_bundle.path),
                          "--duration", "60", "--interval", "3", "--warmup", "15", "--broker-restart-every", "30",
                          "--json", str(out), "--workdir", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["verdict"]["flat"] is True, report["verdict"]
    assert report["exit_status"] == 0 and report["mqtt_lost"] == 0
    assert report["results"] > 100 and report["http_failures"] == 0 and report["sse_events"] > 100
    assert len(report["samples"]) >= 15
    assert "verdict: FLAT" in run.stdout and "rss_mb" in run.stdout
