"""The systemd unit and the compose file for the panel: valid, and wired the way the panel needs."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_parses_and_is_wired_for_a_jetson() -> None:
    data = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    svc = data["services"]["zoe-panel"]
    assert svc["network_mode"] == "host" and svc["restart"] == "unless-stopped"
    vols = svc["volumes"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in vols and "/run/jtop.sock:/run/jtop.sock" in vols
    assert "/var/lib/zoe-panel:/var/lib/zoe-panel" in vols  # same path inside and out: the daemon resolves it
    assert svc["environment"]["ZOE_HOME"] == "/var/lib/zoe-panel"
    assert "ZOE_PASSWORD_HASH" in svc["environment"] and "0.0.0.0" in svc["command"]
    assert (ROOT / "deploy" / svc["build"]["dockerfile"].split("/")[-1]).is_file()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "deploy/zoe-panel.service").read_text()
    assert "KillMode=process" in unit  # restarting the panel must not kill the engine
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # point the unit at this checkout so the paths it checks exist here
    python = ROOT / ".venv/bin/python"
    local = unit.replace("/opt/zoe-panel/.venv/bin/python", str(python)).replace("/opt/zoe-panel", str(ROOT))
    local = local.replace("User=zoe", "User=root").replace("Group=zoe", "Group=root")
    local = local.replace("SupplementaryGroups=docker jtop", "")
    path = tmp_path / "zoe-panel.service"
    path.write_text(local)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    problems = [line for line in done.stderr.splitlines() if "zoe-panel.service" in line]
    assert done.returncode == 0 and not problems, done.stderr
