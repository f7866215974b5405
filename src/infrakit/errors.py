"""The one exception tree of infrakit.

Every error a user or a plugin author can meet is one of these. They are raised by the library and
by plugins, and they are mapped to JSON-RPC error objects **only** at the RPC boundary
(``infrakit.rpc.envelope``): the message travels as the JSON-RPC ``message`` (which is all a Go
InfraKit client reads), and the class name travels as ``data.kind`` so that an infrakit client can
raise the same class again on its side.

    InfrakitError                      base; never raised directly
    ├── SpecError                      user input is wrong (bad JSON, wrong type, invalid spec)
    ├── NotFoundError                  a named thing does not exist
    │   ├── PluginNotFoundError        no plugin of that name in the plugin directory
    │   └── GroupNotFoundError         no committed group of that ID
    ├── ConflictError                  the operation collides with existing state (name taken)
    ├── PluginError                    a plugin answered with an error (its message is kept)
    ├── TransportError                 the plugin could not be reached or answered garbage
    │   ├── PluginUnreachableError     socket missing, connection refused (plugin not running)
    │   ├── PluginTimeoutError         connect or call exceeded its timeout
    │   └── ProtocolError              the reply was not the protocol we speak
    ├── VersionMismatchError           handshake: interface missing or of another version
    ├── StoreError                     the spec store cannot be read or written (never wiped)
    └── NotLeaderError                 this manager does not lead and cannot forward

**Temporary vs permanent.** ``err.temporary`` is true for errors that say nothing about the
request - the plugin is not running or is restarting (:class:`PluginUnreachableError`) - and false
for answers (a rejected Provision, a timeout that may have done the work). The group controller
backs off from both but counts only permanent ones toward its crash-loop breaker: restarting a
plugin never degrades a group.

Messages follow one rule: name the thing, say what was expected, and say what to do next, in one
line. The CLI prints ``str(error)`` as is.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConflictError",
    "GroupNotFoundError",
    "InfrakitError",
    "NotFoundError",
    "NotLeaderError",
    "PeerNotVerifiedError",
    "PluginError",
    "PluginNotFoundError",
    "PluginTimeoutError",
    "PluginUnreachableError",
    "ProtocolError",
    "SpecError",
    "StoreError",
    "TransportError",
    "VersionMismatchError",
    "as_reported",
    "error_from_kind",
    "wire_kind_of",
]


class InfrakitError(Exception):
    """Base of every infrakit error. ``str(err)`` is the one-line message shown to users."""

    #: The name sent as ``data.kind`` on the wire; subclasses keep their class name.
    kind: str = "InfrakitError"
    #: True when the error says nothing about the request: retry later, do not count it.
    temporary: bool = False
    #: The kind the wire reports for the exception this one was made from (set by
    #: :func:`as_reported`; None: this error's own kind).
    wire_kind: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = cls.__name__


class SpecError(InfrakitError, ValueError):
    """The user's input is wrong: malformed JSON, wrong types, a spec that fails validation."""


class NotFoundError(InfrakitError, LookupError):
    """A named object (plugin, group, instance) does not exist."""


class PluginNotFoundError(NotFoundError):
    """No plugin of that name is listening in the plugin directory."""


class GroupNotFoundError(NotFoundError):
    """No group of that ID is committed (InfraKit: ``Group '<id>' is not being watched``)."""


class ConflictError(InfrakitError):
    """The request collides with existing state, e.g. a plugin name already served."""


class PluginError(InfrakitError):
    """A plugin received the request and answered with an error.

    ``remote_kind`` is the error class the plugin reported (``data.kind``), when it is an infrakit
    plugin; Go plugins report none.
    """

    def __init__(self, message: str, *, remote_kind: str | None = None) -> None:
        super().__init__(message)
        self.remote_kind = remote_kind


class TransportError(InfrakitError):
    """The plugin could not be reached, or its reply could not be understood."""


class PluginUnreachableError(TransportError):
    """Nothing accepts connections at the plugin's address: it is not running (or crashed)."""

    temporary = True


class PluginTimeoutError(TransportError, TimeoutError):
    """Connecting to the plugin, or waiting for its answer, took longer than allowed."""


class ProtocolError(TransportError):
    """The peer answered, but not in a protocol infrakit speaks (garbage, wrong envelope)."""


class PeerNotVerifiedError(TransportError):
    """The peer at a TCP address could not prove it holds the shared token; nothing was sent."""


class VersionMismatchError(InfrakitError):
    """The handshake showed the plugin lacks the interface, or has another version of it."""


class StoreError(InfrakitError):
    """The spec store is unreadable or unwritable; infrakit refuses to guess (it never wipes it)."""


class NotLeaderError(InfrakitError):
    """This manager is not the leader and could not forward the request to one."""


_KINDS: dict[str, type[InfrakitError]] = {
    cls.__name__: cls
    for cls in (
        InfrakitError,
        SpecError,
        NotFoundError,
        PluginNotFoundError,
        GroupNotFoundError,
        ConflictError,
        PluginError,
        TransportError,
        PluginUnreachableError,
        PluginTimeoutError,
        ProtocolError,
        VersionMismatchError,
        StoreError,
        NotLeaderError,
    )
}


def error_from_kind(kind: str | None, message: str) -> InfrakitError:
    """Rebuild the error a remote infrakit plugin reported as ``data.kind``.

    Errors whose kind is unknown (or absent, as from Go plugins) become :class:`PluginError`, so a
    caller can always tell "the plugin said no" from "the plugin could not be reached".
    """
    cls = _KINDS.get(kind or "")
    if cls is None or issubclass(cls, TransportError) or cls is InfrakitError:
        return PluginError(message, remote_kind=kind)
    if cls is PluginError:
        return PluginError(message, remote_kind=kind)
    return cls(message)


def as_reported(exc: Exception) -> InfrakitError:
    """The error a caller sees for ``exc`` raised by a plugin's code: what the wire makes of it.

    A plugin behaves the same in-process and over a socket: an infrakit error keeps its class
    (a transport error of the plugin's own becomes :class:`PluginError`: the plugin itself was
    reached), ``NotImplementedError`` and any other exception (a plugin bug) become
    :class:`PluginError` - the latter named by its class, ``KeyError: 'x'``. A new error made
    here remembers in ``wire_kind`` the kind the wire reports for ``exc``, so mapping it again
    (the RPC server after the adapter) sends what ``exc`` itself would have sent.
    """
    wire = wire_kind_of(exc)
    rebuilt = error_from_kind(wire, _message_of(exc))
    same_remote = not isinstance(exc, PluginError) or (
        isinstance(rebuilt, PluginError) and rebuilt.remote_kind == exc.remote_kind
    )
    if isinstance(exc, InfrakitError) and type(rebuilt) is type(exc) and same_remote:
        return exc  # the wire would rebuild it as it is: keep the object
    rebuilt.wire_kind = wire
    return rebuilt


def wire_kind_of(exc: BaseException) -> str:
    """``data.kind`` of ``exc`` on the wire: an infrakit error's own kind, else PluginError."""
    if isinstance(exc, InfrakitError):
        return exc.wire_kind or exc.kind
    return PluginError.kind


def _message_of(exc: BaseException) -> str:
    """The one line the wire carries for ``exc`` (a plugin bug is named by its class)."""
    if isinstance(exc, InfrakitError):
        return str(exc)
    if isinstance(exc, NotImplementedError):
        return str(exc) or "not implemented"
    return f"{type(exc).__name__}: {str(exc) or type(exc).__name__}"
