"""Proof of the shared token on TCP, both ways, without the token ever travelling.

The TCP listeners of plugins and managers are guarded by a shared token. Plain
``Authorization: Bearer <token>`` stays accepted for tools (curl, Prometheus), but infrakit's own
clients never send the token: whoever controls the address they dial (a rewritten leader record or
``.listen`` file, a process that grabbed a port) would receive it. Instead:

1. **Challenge** - the client posts ``{"ClientNonce": N}`` (32 random bytes, hex) to
   ``POST /_infrakit/auth``. Only this route is open without the token.
2. **Server proof** - the server answers ``{"Proofs": [{"Address": A, "Proof": P}, ...],
   "ServerNonce": S}`` with ``P = HMAC(token, "server-proof" | N | A)`` for each address ``A`` it
   knows as its own: the one it advertises (``.listen``, ``--listen``) and the one the connection
   arrived at. The client accepts only a proof over the address *it* dialled (or the IP and port
   its socket is connected to). A relay - a rogue listener that forwards the challenge to the real
   server - gets proofs over the real server's addresses, which the client rejects: a relay cannot
   turn them into a proof over its own address without the token.
3. **Signed requests** - from then on every request carries
   ``Authorization: Infrakit-HMAC nonce=N, session=S, seq=Q, mac=M`` with
   ``M = HMAC(K, Q | METHOD | PATH | sha256(BODY))`` and the session key
   ``K = HMAC(token, "session" | N | S)``. The server checks that it issued ``S`` (S carries a tag
   under a secret drawn at start, so issuing costs no memory), the MAC, and that ``Q`` was not
   used before in that session (replays are refused).

Why signed requests rather than "prove, then send the bearer token on that connection": the token
itself never leaves the process, so it cannot leak to a peer at all - not to an unverified one,
not to a passive listener on a plain-TCP network, not through a connection pool that reconnects
to whoever holds the port now. Only a holder of the token can produce or check a MAC. What this
does not give is confidentiality or authenticated *replies* on plain TCP: across hosts, serve TLS
as well (``--tls-cert`` / ``--tls-key``, clients ``--tls-ca``). See docs/security.md.

This module is pure (no sockets, no aiohttp): :class:`ServerAuth` is what a listener keeps,
:class:`ClientAuth` / :class:`Session` what a client keeps; :func:`read_token_file` reads
``--token-file``. ``hashlib`` and ``hmac`` are imported on the first proof, not with the module
(every CLI command loads the RPC client, few talk to a TCP listener with a token); random bytes
are ``os.urandom``, what ``secrets.token_bytes`` returns.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrakit import errors

__all__ = [
    "AUTH_PATH",
    "SCHEME",
    "STALE_SESSION",
    "ClientAuth",
    "PeerNotProven",
    "ServerAuth",
    "Session",
    "client_credentials",
    "format_address",
    "read_token_file",
    "resolve_token",
]

#: The one route a TCP listener with a token answers without credentials.
AUTH_PATH = "/_infrakit/auth"
#: ``Authorization`` scheme of signed requests.
SCHEME = "Infrakit-HMAC"
#: A server nonce must be used within this many seconds of being issued to open a session.
OPEN_WITHIN = 60.0
#: Sessions a server remembers (opened only by token holders); the oldest is forgotten first.
MAX_SESSIONS = 4096
#: Sequence numbers this far below the highest seen in a session are refused outright.
REPLAY_WINDOW = 4096

_SERVER_PROOF = b"infrakit-auth-v1 server-proof\0"
_SESSION_KEY = b"infrakit-auth-v1 session\0"
_NONCE_BYTES = 32


def format_address(host: str, port: int) -> str:
    """``host:port`` as proofs name it (IPv6 in brackets, like URLs)."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mac(key: bytes, *parts: bytes) -> bytes:
    import hashlib
    import hmac

    return hmac.new(key, b"\0".join(parts), hashlib.sha256).digest()


def _same(a: bytes | str, b: bytes | str) -> bool:
    """Constant-time comparison (:func:`hmac.compare_digest`)."""
    import hmac

    return hmac.compare_digest(a, b)  # type: ignore[arg-type]


def server_proof(token: str, client_nonce: bytes, address: str) -> bytes:
    """What a holder of ``token`` answers to ``client_nonce`` as the server at ``address``."""
    return _mac(token.encode(), _SERVER_PROOF, client_nonce, address.encode())


def session_key(token: str, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return _mac(token.encode(), _SESSION_KEY, client_nonce, server_nonce)


def request_mac(key: bytes, seq: int, method: str, path: str, body: bytes) -> bytes:
    return _mac(
        key,
        str(seq).encode(),
        method.upper().encode(),
        path.encode(),
        _sha256(body),
    )


def _sha256(body: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(body).digest()


# --- server -------------------------------------------------------------------------------------


@dataclass
class _SessionState:
    high: int = -1
    seen: set[int] = field(default_factory=set)

    def use(self, seq: int) -> bool:
        """Record ``seq``; False if it was used before or fell out of the window (a replay)."""
        if seq in self.seen or seq <= self.high - REPLAY_WINDOW:
            return False
        self.seen.add(seq)
        if seq > self.high:
            self.high = seq
            floor = seq - REPLAY_WINDOW
            if len(self.seen) > 2 * REPLAY_WINDOW:
                self.seen = {s for s in self.seen if s > floor}
        return True


#: Why a signed request was refused: the client may open a new session and retry.
STALE_SESSION = "session-expired"


class ServerAuth:
    """A TCP listener's side: answer challenges, check signed requests."""

    def __init__(self, token: str, addresses: list[str], *, clock: Any = time.time) -> None:
        self.token = token
        #: The addresses this server advertises (``host:port``); the connection's own is added
        #: per challenge.
        self.addresses = list(addresses)
        self._secret = os.urandom(32)
        self._clock = clock
        self._sessions: OrderedDict[bytes, _SessionState] = OrderedDict()

    def challenge(self, doc: Any, arrived_at: str | None) -> dict[str, Any]:
        """The answer to ``POST /_infrakit/auth``; raises SpecError for a malformed challenge."""
        nonce = _hex_field(doc, "ClientNonce")
        addresses = list(dict.fromkeys([*self.addresses, *([arrived_at] if arrived_at else [])]))
        issued = struct.pack(">Q", int(self._clock())) + os.urandom(16)
        server_nonce = issued + _mac(self._secret, issued, nonce)[:16]
        return {
            "Proofs": [
                {"Address": a, "Proof": server_proof(self.token, nonce, a).hex()} for a in addresses
            ],
            "ServerNonce": server_nonce.hex(),
        }

    def verify(self, credentials: str, method: str, path: str, body: bytes) -> str:
        """Check a signed request's credentials (after the scheme); "" if good, else why not
        (:data:`STALE_SESSION` when the client should open a new session)."""
        fields = _parse_credentials(credentials)
        try:
            nonce = bytes.fromhex(fields["nonce"])
            server_nonce = bytes.fromhex(fields["session"])
            seq = int(fields["seq"])
            mac = bytes.fromhex(fields["mac"])
        except (KeyError, ValueError):
            return "malformed Infrakit-HMAC credentials"
        if len(server_nonce) != 40 or seq < 0:
            return "malformed Infrakit-HMAC credentials"
        issued, tag = server_nonce[:24], server_nonce[24:]
        if not _same(tag, _mac(self._secret, issued, nonce)[:16]):
            return STALE_SESSION  # not issued by this server (it restarted, or a forgery)
        key = session_key(self.token, nonce, server_nonce)
        if not _same(mac, request_mac(key, seq, method, path, body)):
            return "signature wrong (another token, or the request was altered)"
        state = self._sessions.get(server_nonce)
        if state is None:
            (issued_at,) = struct.unpack(">Q", issued[:8])
            if abs(self._clock() - issued_at) > OPEN_WITHIN:
                return STALE_SESSION
            state = self._sessions[server_nonce] = _SessionState()
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(server_nonce)
        if not state.use(seq):
            return "replayed request (sequence number used before)"
        return ""


def _hex_field(doc: Any, name: str) -> bytes:
    value = doc.get(name) if isinstance(doc, dict) else None
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != _NONCE_BYTES:
        raise errors.SpecError(
            f'{AUTH_PATH}: expected {{"{name}": "<{_NONCE_BYTES} random bytes as hex>"}}'
        )
    return raw


def _parse_credentials(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


# --- client -------------------------------------------------------------------------------------


class PeerNotProven(Exception):
    """The peer did not prove it holds the token; ``str()`` says how it failed."""


@dataclass
class Session:
    """A verified peer: signs each request; the token itself is never sent."""

    client_nonce: bytes
    server_nonce: bytes
    key: bytes
    _seq: int = 0

    def authorization(self, method: str, path: str, body: bytes) -> str:
        seq = self._seq
        self._seq += 1
        mac = request_mac(self.key, seq, method, path, body)
        return (
            f"{SCHEME} nonce={self.client_nonce.hex()}, session={self.server_nonce.hex()}, "
            f"seq={seq}, mac={mac.hex()}"
        )


class ClientAuth:
    """A client's side of one challenge."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.nonce = os.urandom(_NONCE_BYTES)

    def challenge(self) -> dict[str, str]:
        return {"ClientNonce": self.nonce.hex()}

    def accept(self, status: int, doc: Any, dialled: list[str]) -> Session:
        """Check the server's answer against the addresses this client reached (the one it
        dialled, and its socket's peer); raise :class:`PeerNotProven` unless one is proven."""
        if status != 200 or not isinstance(doc, dict):
            raise PeerNotProven(f"it does not answer the challenge (HTTP {status})")
        proofs = doc.get("Proofs")
        if not isinstance(proofs, list):
            raise PeerNotProven("it does not answer the challenge (no Proofs)")
        if not proofs:
            raise PeerNotProven("it serves without a token")
        claimed: list[str] = []
        for entry in proofs:
            if not isinstance(entry, dict):
                continue
            address, proof = str(entry.get("Address", "")), str(entry.get("Proof", ""))
            claimed.append(address)
            expected = server_proof(self.token, self.nonce, address).hex()
            if address in dialled and _same(proof, expected):
                return self._session(doc)
        if not any(a in dialled for a in claimed):
            raise PeerNotProven(
                f"it answers for {', '.join(claimed) or 'no address'}, not for the address "
                "dialled - a relay, or a server behind NAT (serve TLS there)"
            )
        raise PeerNotProven("its proof does not match: it holds another token")

    def _session(self, doc: dict[str, Any]) -> Session:
        try:
            server_nonce = bytes.fromhex(str(doc.get("ServerNonce", "")))
        except ValueError:
            server_nonce = b""
        if len(server_nonce) != 40:
            raise PeerNotProven("its ServerNonce is malformed")
        return Session(self.nonce, server_nonce, session_key(self.token, self.nonce, server_nonce))


# --- tokens -------------------------------------------------------------------------------------


def read_token_file(path: str | Path, what: str = "--token-file") -> str:
    """The token in ``path`` (surrounding whitespace stripped): the file must belong to this user
    and be readable by nobody else, and hold a non-empty token. Raises SpecError (one line)."""
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise errors.SpecError(
            f"{what} {path}: cannot read it ({exc.strerror or exc}); give a file that holds the "
            "shared token"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise errors.SpecError(f"{what} {path}: not a regular file; give the token's file")
        if st.st_mode & 0o077:
            raise errors.SpecError(
                f"{what} {path}: group or others may read it (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 {path}"
            )
        if st.st_uid != os.geteuid():
            raise errors.SpecError(
                f"{what} {path}: owned by uid {st.st_uid}, not by uid {os.geteuid()} that runs "
                f"this; chown it or use your own copy"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(65536)
    finally:
        os.close(fd)
    try:
        token = raw.decode().strip()
    except UnicodeDecodeError:
        token = ""
    if not token or any(c.isspace() for c in token):
        raise errors.SpecError(
            f"{what} {path}: expected one token (UTF-8, no spaces inside) in the file; "
            "write it with e.g. `openssl rand -hex 32 > FILE`"
        )
    return token


def resolve_token(token: str | None, token_file: str | None, what: str = "--token") -> str | None:
    """``--token`` or ``--token-file`` (not both), else ``$INFRAKIT_TOKEN_FILE`` /
    ``$INFRAKIT_TOKEN``; None when none is given."""
    if token and token_file:
        raise errors.SpecError(
            f"{what} and {what}-file both given; pass one (prefer {what}-file: a token on the "
            "command line shows in ps)"
        )
    if token_file:
        return read_token_file(token_file, f"{what}-file")
    if token:
        return token
    env_file = os.environ.get("INFRAKIT_TOKEN_FILE")
    if env_file:
        return read_token_file(env_file, "INFRAKIT_TOKEN_FILE")
    return os.environ.get("INFRAKIT_TOKEN") or None


def client_credentials(
    address: Any, name: str, token: str | None, ssl: Any
) -> tuple[str | None, Any]:
    """A client's token and TLS context for ``address`` (an :class:`infrakit.rpc.core.Address`):
    the token given, else ``$INFRAKIT_TOKEN_FILE`` / ``$INFRAKIT_TOKEN`` for TCP targets (never
    for a UNIX socket); for ``https://`` without a context, one verifying against
    ``$INFRAKIT_TLS_CA`` (refused with one line without it)."""
    tcp = address.path is None
    if token is None and tcp:
        token = resolve_token(None, None)
    if ssl is None and address.tls:
        from infrakit.rpc.tls import tls_client_context

        ssl = tls_client_context(None, f"plugin {name} at {address}")
    return token, ssl
