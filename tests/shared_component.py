"""One real component (a podman service, a libvirtd ...) per test process, shared by the test
modules that use it and closed when the last of them is done.

A component that cannot be *installed* here makes its tests skip, with the exact reason; one that
is installed but does not start makes them fail (a broken set-up never hides behind a row of
skips). Used by tests/podman_fixture.py and tests/libvirt_fixture.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import pytest


class Component(Protocol):
    def start(self) -> Component: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Component)


class SharedComponent(Generic[C]):
    """``session()`` is the body of a session fixture; ``ensure`` installs the tools (raising
    ``unavailable`` when it cannot), ``make`` builds an unstarted component."""

    def __init__(
        self,
        name: str,
        broken: str,
        ensure: Callable[[], None],
        make: Callable[[], C],
        unavailable: type[Exception],
    ) -> None:
        self.name = name
        self.broken = broken  # "is installed but <broken>: <reason>"
        self.ensure = ensure
        self.make = make
        self.unavailable = unavailable
        self.shared: C | None = None
        self.error: str | None = None
        self.not_installable: str | None = None
        self.users = 0

    def session(self) -> Iterator[C]:
        if self.shared is None and self.error is None and self.not_installable is None:
            try:
                self.ensure()
            except self.unavailable as exc:
                self.not_installable = str(exc)
        if self.not_installable is not None:
            pytest.skip(f"{self.name} cannot be installed here: {self.not_installable}")
        if self.shared is None and self.error is None:
            candidate = self.make()
            try:
                candidate.start()
                self.shared = candidate
            except self.unavailable as exc:
                candidate.close()
                self.error = str(exc)
        if self.shared is None:
            pytest.fail(f"{self.name} is installed but {self.broken}: {self.error}")
        self.users += 1
        try:
            yield self.shared
        finally:
            self.users -= 1
            if self.users == 0 and self.shared is not None:
                self.shared.close()
                self.shared = None
