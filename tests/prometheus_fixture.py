"""A real Prometheus server for the metrics tests: Debian's ``prometheus`` (2.42), run as our child.

Each server gets its own temporary directory (config and TSDB) and a free port on 127.0.0.1; it
is stopped by PID (SIGTERM, then SIGKILL) and reaped. Facts this relies on (measured, see
``../shared/reference/operate.md`` §A): Prometheus 2.42 cannot scrape UNIX sockets, so targets are
TCP; the first sample appears about 6 s after start whatever the interval, so callers poll
:meth:`Prometheus.query` with a deadline; a bearer token is read from ``credentials_file``.

When the binary is missing (``scripts/system-deps`` could not install it) :func:`prometheus`
skips with that reason; an installed Prometheus that does not become ready is a failure.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.testing import short_tempdir
from infrakit.testing.processes import free_port


class Prometheus:
    """One running server: query its HTTP API."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def _get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Instant query: ``(labels, value)`` per series."""
        doc = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert doc["status"] == "success", doc
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def value(self, expr: str) -> float | None:
        """The value of a query with one series, None when it has none yet."""
        rows = self.query(expr)
        assert len(rows) <= 1, rows
        return rows[0][1] if rows else None

    def targets(self) -> list[dict[str, Any]]:
        """Active targets with their health and last error (why a scrape fails)."""
        return list(self._get("/api/v1/targets")["data"]["activeTargets"])

    def wait_for(self, expr: str, want: float, timeout: float = 30.0) -> None:
        """Poll until ``expr`` has the value ``want`` (the first scrape takes ~6 s)."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last == want:
                return
            time.sleep(0.1)
        raise AssertionError(
            f"{expr} is {last}, not {want}, after {timeout} s; targets: {self.targets()}"
        )


@contextlib.contextmanager
def prometheus(targets: list[str], *, token_file: Path | None = None) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (``host:port``) every 200 ms."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (scripts/system-deps could not install it)")
    work = short_tempdir("prom")
    auth = (
        f"    authorization: {{type: Bearer, credentials_file: {token_file}}}\n"
        if token_file
        else ""
    )
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 200ms, scrape_timeout: 200ms}\n"
        "scrape_configs:\n"
        "  - job_name: infrakit\n"
        f"{auth}"
        f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    )
    port = free_port()
    log = work / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(proc, port, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _wait_ready(server: Prometheus, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"prometheus exited ({server.proc.returncode}): {server.log.read_text()}")
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{server.port}/-/ready"
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        time.sleep(0.05)
    pytest.fail(f"prometheus not ready after {timeout} s: {server.log.read_text()}")
