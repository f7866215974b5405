"""contrib/systemd: the unit systemd would load, checked by systemd's own tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "contrib" / "systemd" / "infrakit.service"


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    return tool


def _local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's infrakit (verify checks it exists)."""
    local = tmp_path / "infrakit.service"
    infrakit = Path(shutil.which("infrakit") or ROOT / ".venv" / "bin" / "infrakit")
    local.write_text(UNIT.read_text().replace("/opt/infrakit/bin/infrakit", str(infrakit)))
    return local


def test_the_unit_verifies_with_no_warning_at_all(tmp_path: Path) -> None:
    """systemd-analyze verify exits 0 even for unknown keys: the output must be empty."""
    proc = subprocess.run(
        [_analyze(), "verify", str(_local_unit(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == proc.stderr == "", proc.stdout + proc.stderr


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    proc = subprocess.run(
        [_analyze(), "security", "--offline=yes", str(_local_unit(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert level is not None, proc.stdout + proc.stderr
    assert float(level.group(1)) <= 2.5, proc.stdout[-2000:]


def test_the_unit_is_a_notify_service_of_a_dedicated_user() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "User=infrakit", "StateDirectory=infrakit", "WatchdogSec="):
        assert line in text, line
