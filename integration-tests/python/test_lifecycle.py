"""The binary's signal handling: SIGHUP reloads the configuration file (a bad file is
refused and the old configuration stays), SIGTERM stops it cleanly."""

import os
import signal
import time

import requests

from support import base_config, start_secondpass

TOKEN = "lifecycle-token"


def status(admin):
    r = requests.get(f"http://{admin}/admin/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
    r.raise_for_status()
    return r.json()


def reloads(admin, result):
    text = requests.get(f"http://{admin}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'secondpass_config_reloads_total{{result="{result}"}}'):
            return int(float(line.split()[-1]))
    return 0


def wait_for(predicate, what, timeout=20):
    """Polls until predicate() holds (signals are handled asynchronously)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sighup_reloads_and_sigterm_stops(tmp_path):
    cfg = tmp_path / "secondpass.toml"
    cfg.write_text(base_config() + "[collections.docs]\nenabled = false\n")
    os.environ["SECONDPASS_ADMIN_TOKEN"] = TOKEN
    try:
        proc, addrs = start_secondpass(cfg)
    finally:
        del os.environ["SECONDPASS_ADMIN_TOKEN"]
    admin = addrs["admin"]
    try:
        assert status(admin)["collections"]["docs"]["enabled"] is False

        cfg.write_text(base_config() + "[collections.docs]\nenabled = true\npool = 42\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reloads(admin, "ok") == 1, "a good reload")
        docs = status(admin)["collections"]["docs"]
        assert docs["enabled"] is True and docs["pool"] == 42

        cfg.write_text(base_config() + "[collections.docs]\nenabled = true\npool = 0\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reloads(admin, "invalid") == 1, "a refused reload")
        assert status(admin)["collections"]["docs"]["pool"] == 42, "the old configuration stays"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
