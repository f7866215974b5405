"""JSON log lines and systemd's notify protocol, against a real datagram socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket

import pytest

from infrakit._utils import systemd
from infrakit._utils.logs import JsonFormatter, resolve_format


def test_a_json_line_carries_time_level_logger_message_and_the_structured_fields() -> None:
    record = logging.LogRecord("infrakit.x", logging.WARNING, __file__, 1, "hello %s", ("w",), None)
    record.group = "cattle"
    record.instance = "instance-1"
    record.plugin = ""  # empty fields are left out
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "WARNING" and doc["logger"] == "infrakit.x"
    assert doc["message"] == "hello w" and doc["group"] == "cattle"
    assert doc["instance"] == "instance-1" and "plugin" not in doc
    assert doc["time"].endswith("Z") and doc["time"][10] == "T"


def test_an_exception_is_one_json_line_too() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exception"]


def test_the_log_format_comes_from_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INFRAKIT_LOG_FORMAT", raising=False)
    assert resolve_format(None) == "text"
    monkeypatch.setenv("INFRAKIT_LOG_FORMAT", "json")
    assert resolve_format(None) == "json" and resolve_format("text") == "text"
    with pytest.raises(ValueError, match="log format 'xml': expected one of auto, text, json"):
        resolve_format("xml")


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    name = f"infrakit-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


def test_notify_sends_one_datagram_of_fields(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=serving 3 plugins")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=serving 3 plugins"


def test_without_systemd_notify_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval() is None


async def test_the_watchdog_pings_every_half_period_for_this_process_only(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None  # for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 0.1
    task = asyncio.create_task(systemd.watchdog())
    try:
        loop = asyncio.get_running_loop()
        first = await loop.sock_recv(_nonblocking(notify_socket), 64)
        second = await loop.sock_recv(notify_socket, 64)
        assert first == second == b"WATCHDOG=1"
    finally:
        task.cancel()


def _nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    return sock
