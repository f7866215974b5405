"""The proof-of-token decisions (:mod:`infrakit.rpc.auth`) as tables: which proofs a client
accepts, which signed requests a server takes, and which token files are refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from infrakit import errors
from infrakit.rpc import auth

TOKEN = "t0ken"
HERE = "127.0.0.1:24864"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock | None = None) -> tuple[auth.ServerAuth, auth.Session]:
    server = auth.ServerAuth(TOKEN, [HERE], clock=clock or Clock())
    client = auth.ClientAuth(TOKEN)
    answer = server.challenge(client.challenge(), "10.0.0.5:24864")
    return server, client.accept(200, answer, [HERE])


def test_the_server_proves_itself_for_each_of_its_addresses() -> None:
    server = auth.ServerAuth(TOKEN, [HERE])
    for dialled in ([HERE], ["10.0.0.5:24864"], ["nowhere:1", "10.0.0.5:24864"]):
        client = auth.ClientAuth(TOKEN)
        answer = server.challenge(client.challenge(), "10.0.0.5:24864")
        assert [p["Address"] for p in answer["Proofs"]] == [HERE, "10.0.0.5:24864"]
        assert isinstance(client.accept(200, answer, dialled), auth.Session)


@pytest.mark.parametrize(
    ("status", "answer", "dialled", "why"),
    [
        (404, None, [HERE], "it does not answer the challenge (HTTP 404)"),
        (200, {"Nope": 1}, [HERE], "it does not answer the challenge (no Proofs)"),
        (200, {"Proofs": []}, [HERE], "it serves without a token"),
        ("real", None, ["127.0.0.1:9999"], "it answers for 127.0.0.1:24864, not for the address"),
        ("other-token", None, [HERE], "its proof does not match: it holds another token"),
        ("no-nonce", None, [HERE], "its ServerNonce is malformed"),
    ],
)
def test_what_a_client_refuses(status: Any, answer: Any, dialled: list[str], why: str) -> None:
    client = auth.ClientAuth(TOKEN)
    if status == "real":  # a relay: the real server's answer, checked at the relay's address
        status, answer = 200, auth.ServerAuth(TOKEN, [HERE]).challenge(client.challenge(), None)
    elif status == "other-token":
        status, answer = 200, auth.ServerAuth("other", [HERE]).challenge(client.challenge(), None)
    elif status == "no-nonce":
        answer = auth.ServerAuth(TOKEN, [HERE]).challenge(client.challenge(), None)
        status, answer = 200, {**answer, "ServerNonce": "zz"}
    with pytest.raises(auth.PeerNotProven) as caught:
        client.accept(status, answer, dialled)
    assert str(caught.value).startswith(why)


def test_a_signed_request_is_taken_once_and_only_as_signed() -> None:
    server, session = opened()
    header = session.authorization("POST", "/", b"{}").split(" ", 1)[1]
    assert server.verify(header, "POST", "/", b"{}") == ""
    assert server.verify(header, "POST", "/", b"{}").startswith("replayed request")
    second = session.authorization("POST", "/", b"{}").split(" ", 1)[1]
    for method, path, body in [("GET", "/", b"{}"), ("POST", "/rpc", b"{}"), ("POST", "/", b"[]")]:
        assert server.verify(second, method, path, body).startswith("signature wrong")
    assert server.verify(second, "POST", "/", b"{}") == ""
    assert server.verify("nonce=zz, seq=1", "POST", "/", b"").startswith("malformed")


def test_requests_may_arrive_out_of_order_within_the_window() -> None:
    server, session = opened()
    headers = [session.authorization("POST", "/", b"").split(" ", 1)[1] for _ in range(5)]
    for header in reversed(headers):
        assert server.verify(header, "POST", "/", b"") == ""
    for header in headers:
        assert server.verify(header, "POST", "/", b"").startswith("replayed")


def test_sessions_of_another_server_or_opened_too_late_are_stale() -> None:
    clock = Clock()
    server, session = opened(clock)
    restarted = auth.ServerAuth(TOKEN, [HERE], clock=clock)  # a new secret
    header = session.authorization("POST", "/", b"").split(" ", 1)[1]
    assert restarted.verify(header, "POST", "/", b"") == auth.STALE_SESSION
    clock.now += auth.OPEN_WITHIN + 1  # never used: too old to open now
    assert server.verify(header, "POST", "/", b"") == auth.STALE_SESSION

    clock = Clock()
    server, session = opened(clock)
    assert (
        server.verify(session.authorization("GET", "/x", b"").split(" ", 1)[1], "GET", "/x", b"")
        == ""
    )
    clock.now += 3600  # opened in time: stays usable
    assert (
        server.verify(session.authorization("GET", "/x", b"").split(" ", 1)[1], "GET", "/x", b"")
        == ""
    )


def test_a_malformed_challenge_is_refused() -> None:
    server = auth.ServerAuth(TOKEN, [HERE])
    for doc in (None, {}, {"ClientNonce": "ab"}, {"ClientNonce": "zz" * 32}):
        with pytest.raises(errors.SpecError, match="ClientNonce"):
            server.challenge(doc, None)


# --- token files --------------------------------------------------------------------------------


def token_file(tmp: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp / "token"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_private_token_file_is_read(tmp_path: Path) -> None:
    assert auth.read_token_file(token_file(tmp_path, "  s3cret\n")) == "s3cret"
    assert auth.read_token_file(token_file(tmp_path, "s3cret", 0o400)) == "s3cret"


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        ("s3cret", 0o644, "group or others may read it (mode 0644); chmod 600"),
        ("s3cret", 0o640, "group or others may read it (mode 0640)"),
        ("", 0o600, "expected one token"),
        ("two words", 0o600, "expected one token"),
    ],
)
def test_a_token_file_others_can_read_or_without_a_token_is_refused(
    tmp_path: Path, text: str, mode: int, expected: str
) -> None:
    path = token_file(tmp_path, text, mode)
    with pytest.raises(errors.SpecError) as caught:
        auth.read_token_file(path)
    assert str(caught.value).startswith(f"--token-file {path}: ")
    assert expected in str(caught.value)


def test_a_missing_token_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(errors.SpecError, match=r"--token-file .*/nope: cannot read it"):
        auth.read_token_file(tmp_path / "nope")


def test_which_token_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = token_file(tmp_path, "from-file")
    assert auth.resolve_token(None, None) is None
    monkeypatch.setenv("INFRAKIT_TOKEN", "from-env")
    assert auth.resolve_token(None, None) == "from-env"
    monkeypatch.setenv("INFRAKIT_TOKEN_FILE", str(path))
    assert auth.resolve_token(None, None) == "from-file"  # the file variable first
    assert auth.resolve_token("given", None) == "given"
    assert auth.resolve_token(None, str(path)) == "from-file"
    with pytest.raises(errors.SpecError, match="--token and --token-file both given"):
        auth.resolve_token("given", str(path))
