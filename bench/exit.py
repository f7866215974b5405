"""How long a stopped daemon outlives its last log line (systemd and scripts wait on the PID).

Each trial starts a fresh ``infrakit up`` with the tutorial's cattle group converged, a client
holding an idle and a half-sent connection on every socket, then stops it (SIGTERM, or ``infrakit
plugin stop --all``) and records the wall-clock time from the daemon's last log line (its
``asctime``) to the moment its PID is gone (polled every 5 ms), and from the signal to that
moment. A third figure does the same for an SDK plugin (``infrakit.serve``) whose sync Provision
never returns. Run::

    .venv/bin/python -m bench.exit [--trials 3]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench.report import REPO, Metric, bench_main, load_now
from infrakit.testing.processes import Daemon, bin_path, isolated_env

UP_SOCKETS = ["instance-file", "flavor-vanilla", "flavor-combo", "group"]
STUCK = textwrap.dedent(
    """
    import logging, sys, time, infrakit
    class Stuck:
        def validate(self, properties): return None
        def provision(self, spec):
            logging.getLogger("stuck").info("provisioning")
            time.sleep(120)
        def destroy(self, instance, context): pass
        def describe_instances(self, tags, properties=False): return []
    infrakit.serve(Stuck(), name="stuck")
    """
)


@contextlib.contextmanager
def fresh_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="ikx", dir="/tmp"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.02)


def stop_and_time(daemon: Daemon, env: dict[str, str], how: str) -> tuple[float, float]:
    """(last log line -> gone, stop asked -> gone) in seconds."""
    asked = time.time()
    if how == "stop":
        subprocess.run(
            [bin_path("infrakit"), "plugin", "stop", "--all"],
            env=env,
            capture_output=True,
            check=True,
        )
    else:
        daemon.signal(signal.SIGTERM)
    gone = daemon.wait_gone(30.0)
    last = daemon.last_log_time()
    assert last is not None
    return gone - last, gone - asked


def up_trial(how: str) -> tuple[float, float]:
    with fresh_home() as home:
        env = isolated_env(home)
        up = Daemon(
            ["infrakit", "up", str(REPO / "examples" / "cattle.json")], env, sockets=UP_SOCKETS
        ).start()
        held = []
        try:
            wait_until(lambda: "converged" in up.output())
            for name in UP_SOCKETS:
                for data in (b"", b"POST / HTTP/1.1\r\nHost: x\r\n"):
                    sock = socket.socket(socket.AF_UNIX)
                    sock.connect(str(home / "plugins" / name))
                    sock.sendall(data)
                    held.append(sock)
            return stop_and_time(up, env, how)
        finally:
            for sock in held:
                sock.close()
            up.stop()


def stuck_trial() -> tuple[float, float]:
    with fresh_home() as home:
        env = isolated_env(home)
        script = home / "stuck.py"
        script.write_text(STUCK)
        daemon = Daemon([sys.executable, str(script)], env, sockets=["stuck"]).start()
        caller = subprocess.Popen(
            [bin_path("infrakit"), "instance", "--name", "stuck", "provision", "-"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert caller.stdin is not None
            caller.stdin.write(b'{"Tags": {}}')
            caller.stdin.close()
            wait_until(lambda: "provisioning" in daemon.output())
            return stop_and_time(daemon, env, "SIGTERM")
        finally:
            daemon.stop()
            caller.kill()
            caller.wait()


def measure(trials: int) -> list[Metric]:
    metrics = []
    for key, label, trial in (
        ("exit_up_sigterm", "up: last log line -> exit (SIGTERM)", lambda: up_trial("SIGTERM")),
        ("exit_up_stop_all", "up: last log line -> exit (stop --all)", lambda: up_trial("stop")),
        ("exit_stuck_call", "plugin with a stuck call: last line -> exit", stuck_trial),
    ):
        lag = Metric(key, label, "s", target=0.5, load=load_now())
        total = Metric(key + "_total", label.split(":")[0] + ": stop asked -> exit", "s")
        for _ in range(trials):
            after_line, after_ask = trial()
            lag.samples.append(after_line)
            total.samples.append(after_ask)
            print(f"  {label}: {after_line:.3f} s (asked -> exit {after_ask:.3f} s)", flush=True)
        lag.load += load_now()
        metrics += [lag, total]
    return metrics


def run(args: argparse.Namespace) -> list[Metric]:
    return measure(args.trials)


def main(argv: Sequence[str] | None = None) -> list[Metric]:
    return bench_main("exit", __doc__ or "", run, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
