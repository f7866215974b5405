"""JSON-RPC envelopes of both InfraKit eras, without I/O (the client and server both use this).

HEAD (JSON-RPC 2.0, ``POST /``)::

    -> {"jsonrpc":"2.0","method":"Instance.Provision","params":{...},"id":<uint63>}
    <- {"jsonrpc":"2.0","result":{...},"id":<same>}                         HTTP 200
    <- {"jsonrpc":"2.0","error":{"code":-32000,"message":"..","data":..},"id":<same>}   HTTP 200

SEED (gorilla JSON-RPC 1.0-like, any other path, the Go client uses ``/rpc``)::

    -> {"method":"Group.CommitGroup","params":[{...}],"id":<uint63>}
    <- {"result":{...},"error":null,"id":<same>}                             HTTP 200
    <- {"result":null,"error":"<text>","id":<same>}                          HTTP 400

Error codes follow InfraKit HEAD, which answers ``-32000`` for every handler error and for unknown
methods, ``-32600`` for a bad ``jsonrpc`` member and ``-32700`` for unparsable bodies. infrakit
adds ``-32602`` for params of the wrong shape and puts the error class in ``data.kind`` (Go
clients read only ``message``), which :func:`raise_remote_error` turns back into the same class.

IDs are random unsigned 63-bit integers, as Go sends; they are kept as Python ints and must never
pass through a float.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infrakit import errors
from infrakit._utils.nesting import MAX_DEPTH
from infrakit.spi.types import Era

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "Call",
    "RequestError",
    "decode_response",
    "encode_request",
    "error_reply",
    "new_id",
    "ok_reply",
    "parse_request",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000

#: Largest request body a server reads (bigger ones get a JSON-RPC error, not a dropped connection).
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Levels the envelope adds around a spec at most: SEED's ``{"params": [{"Spec": ...}]}``.
ENVELOPE_DEPTH = 3
#: Deepest nesting a request body may have: a spec at the spec limit, inside its envelope.
MAX_BODY_DEPTH = MAX_DEPTH + ENVELOPE_DEPTH

_rng = random.SystemRandom()


def new_id() -> int:
    """A random non-negative 63-bit request id, as Go's ``rand.Int63`` makes them."""
    return _rng.getrandbits(63)


def encode_request(method: str, params: Any, request_id: Any, era: Era) -> dict[str, Any]:
    if era is Era.SEED:
        return {"method": method, "params": [params], "id": request_id}
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}


@dataclass(slots=True)
class Call:
    """One parsed incoming request."""

    method: str
    params: dict[str, Any]
    id: Any
    era: Era
    #: HEAD notifications (no ``id``) are executed but get an empty HTTP body, like Go.
    notification: bool = False


class RequestError(Exception):
    """An incoming request that cannot be dispatched; carries the reply to send."""

    def __init__(self, code: int, message: str, request_id: Any = None, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.id, self.data = code, message, request_id, data


def parse_request(doc: Any, era: Era) -> Call:
    """Validate an envelope decoded from JSON. Raises :class:`RequestError` with the reply."""
    if isinstance(doc, list):
        raise RequestError(
            INVALID_REQUEST,
            "invalid request: batch requests (a JSON array) are not supported; "
            "send one JSON-RPC object per request",
        )
    if not isinstance(doc, dict):
        raise RequestError(
            INVALID_REQUEST,
            f"invalid request: expected a JSON-RPC object "
            f'{{"jsonrpc":"2.0","method":...,"params":{{...}},"id":...}}, got {_json_kind(doc)}',
        )
    request_id = doc.get("id")
    method = doc.get("method")
    if era is Era.HEAD and doc.get("jsonrpc") != "2.0":
        echo = {"jsonrpc": doc.get("jsonrpc") or "", "method": method, "params": doc.get("params")}
        echo["id"] = request_id
        raise RequestError(INVALID_REQUEST, "jsonrpc must be 2.0", request_id, echo)
    if not isinstance(method, str) or "." not in method:
        raise RequestError(
            INVALID_REQUEST,
            f"invalid request: method must be a string like Instance.Provision, got {method!r}",
            request_id,
        )
    raw = doc.get("params")
    if era is Era.SEED and (not isinstance(raw, list) or len(raw) != 1):
        raise RequestError(
            INVALID_REQUEST, "rpc: method request ill-formed: missing params field", request_id
        )
    if isinstance(raw, list):
        # gorilla decodes a one-element array as the request object (both eras)
        if len(raw) != 1:
            raise RequestError(
                INVALID_PARAMS,
                f"{method}: params must be an object or a one-element array, "
                f"got an array of {len(raw)}",
                request_id,
            )
        raw = raw[0]
    if raw is None:
        params: dict[str, Any] = {}
    elif isinstance(raw, dict):
        params = raw
    else:
        raise RequestError(
            INVALID_PARAMS,
            f"{method}: params must be a JSON object, got {_json_kind(raw)}",
            request_id,
        )
    return Call(method, params, request_id, era, notification=era is Era.HEAD and "id" not in doc)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__


def ok_reply(call_id: Any, result: Any, era: Era) -> dict[str, Any]:
    if era is Era.SEED:
        return {"result": result, "error": None, "id": call_id}
    return {"jsonrpc": "2.0", "result": result, "id": call_id}


def error_reply(
    call_id: Any, code: int, message: str, era: Era, data: Any = None
) -> tuple[int, dict[str, Any]]:
    """Return ``(http_status, body)`` for an error in the given era."""
    if era is Era.SEED:
        return 400, {"result": None, "error": message, "id": call_id}
    return 200, {
        "jsonrpc": "2.0",
        "error": {"code": code, "message": message, "data": data},
        "id": call_id,
    }


def exception_to_error(exc: Exception) -> tuple[int, str, Any]:
    """Map any exception raised by a handler to ``(code, message, data)``: the message of
    :func:`infrakit.errors.as_reported` (what an in-process caller sees too) and the kind of the
    exception the plugin raised (:func:`infrakit.errors.wire_kind_of`)."""
    return SERVER_ERROR, str(errors.as_reported(exc)), {"kind": errors.wire_kind_of(exc)}


def decode_response(status: int, doc: Any, era: Era, what: Callable[[], str]) -> Any:
    """Return the ``result`` of a reply, or raise the error it carries.

    ``what()`` names the call for messages, e.g. ``plugin instance-file (Instance.Provision) at
    ~/.infrakit/plugins/instance-file``; it is only called on errors.
    """
    if not isinstance(doc, dict):
        raise errors.ProtocolError(f"{what()}: reply is not a JSON-RPC object (HTTP {status})")
    if era is Era.SEED:
        err = doc.get("error")
        if err is not None:
            raise errors.PluginError(err if isinstance(err, str) else str(err))
        if status != 200:
            raise errors.ProtocolError(f"{what()}: HTTP {status} without an error message")
        return doc.get("result")
    err = doc.get("error")
    if err is not None:
        if isinstance(err, dict):
            message = err.get("message")
            data = err.get("data")
            kind = data.get("kind") if isinstance(data, dict) else None
            raise errors.error_from_kind(kind, str(message) if message is not None else str(err))
        raise errors.PluginError(str(err))
    if "result" not in doc:
        raise errors.ProtocolError(f"{what()}: reply has neither result nor error")
    return doc["result"]


def looks_seed_reply(status: int, doc: Any) -> bool:
    """True for a SEED-era gorilla reply (``result`` and ``error`` members, no ``jsonrpc``)."""
    return (
        isinstance(doc, dict)
        and "jsonrpc" not in doc
        and "result" in doc
        and "error" in doc
        and status in (200, 400)
    )
