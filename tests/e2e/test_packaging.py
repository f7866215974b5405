"""The package as a user installs it: a wheel and an sdist built from this tree, the wheel
installed (not editable) into a fresh virtualenv, and `infrakit up` run from there."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_wheel_installs_and_runs_and_the_sdist_carries_docs_examples_and_license() -> None:
    out = Path(tempfile.mkdtemp(prefix="ikw", dir="/tmp"))
    try:
        subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        (wheel,) = out.glob("pyinfrakit-*.whl")
        (sdist,) = out.glob("pyinfrakit-*.tar.gz")
        with tarfile.open(sdist) as tar:
            names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        for needed in ("LICENSE", "README.md", "docs/cli.md", "examples/cattle.json"):
            assert needed in names, needed
        with zipfile.ZipFile(wheel) as zf:
            wheel_names = set(zf.namelist())
        assert "infrakit/py.typed" in wheel_names
        assert any(n.endswith("/licenses/LICENSE") for n in wheel_names)
        venv = out / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=300)
        infrakit = str(venv / "bin" / "infrakit")
        version = subprocess.run(
            [infrakit, "--version"], check=True, capture_output=True, text=True, timeout=60
        )
        assert "0." in version.stdout
        _up_converges(infrakit, out)
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=False)


def _up_converges(infrakit: str, out: Path) -> None:
    home = out / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["INFRAKIT_HOME"] = str(home)
    log = (out / "up.log").open("w")
    proc = subprocess.Popen(
        [infrakit, "up", str(ROOT / "examples" / "cattle.json")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    instances = home / "instances"
    try:
        wait_for(
            lambda: (
                proc.poll() is None
                and instances.is_dir()
                and len(list(instances.glob("instance-*"))) == 5
            ),
            timeout=60,
            what="the installed infrakit up to create 5 instances",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
