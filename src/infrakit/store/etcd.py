"""The etcd store: specs and update progress in etcd, shared by every manager.

Keys live under ``<prefix>/store/`` with JSON values. With a *fence* (the manager's
:class:`infrakit.leader.etcd.EtcdElector`), every write is a transaction that also compares the
leader key's create revision with the one the fence won: a manager that was deposed (its lease
expired while it was paused, partitioned ...) has its writes rejected by etcd itself and gets
:class:`~infrakit.errors.NotLeaderError`. An unreachable etcd is a
:class:`~infrakit.errors.StoreError`, never "empty".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlparse

import aetcd

from infrakit import errors
from infrakit.leader.etcd import EtcdElector, parse_endpoint

__all__ = ["EtcdStore"]

#: Per-call bound: a store that does not answer is an error, not a hang.
CALL_TIMEOUT = 5.0


class EtcdStore:
    """:class:`infrakit.store.Store` on etcd."""

    def __init__(
        self, endpoint: str, prefix: str = "/infrakit", *, fence: EtcdElector | None = None
    ) -> None:
        self.endpoint = endpoint
        self.host, self.port = parse_endpoint(endpoint)
        self.prefix = "/" + prefix.strip("/")
        self.fence = fence
        self._client: aetcd.Client | None = None

    @classmethod
    def from_url(cls, url: str, *, fence: Any = None) -> EtcdStore:
        parsed = urlparse(url)
        return cls(parsed.netloc, parsed.path or "/infrakit", fence=fence)

    @property
    def client(self) -> aetcd.Client:
        if self.fence is not None:
            return self.fence.client  # one connection per manager
        if self._client is None:
            self._client = aetcd.Client(host=self.host, port=self.port, timeout=int(CALL_TIMEOUT))
        return self._client

    def describe(self) -> str:
        return f"etcd://{self.host}:{self.port}{self.prefix}"

    def _key(self, key: str) -> bytes:
        return f"{self.prefix}/store/{key}".encode()

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, CALL_TIMEOUT)
        except errors.InfrakitError:
            raise
        except Exception as exc:
            raise errors.StoreError(
                f"store {self.describe()}: {what} failed ({type(exc).__name__}: {exc}); "
                f"check that etcd runs at {self.host}:{self.port}"
            ) from None

    async def check(self) -> None:
        """Fail now, with :class:`~infrakit.errors.StoreError`, if etcd does not answer: a manager
        calls this before it listens, so an unreachable store stops the start with one line."""
        await self._call("reading it", self.client.get(self._key("groups/")))

    async def get(self, key: str) -> Any | None:
        got = await self._call(f"get {key}", self.client.get(self._key(key)))
        return None if got is None else json.loads(got.value)

    async def list(self, prefix: str) -> dict[str, Any]:
        base = f"{self.prefix}/store/"
        found = await self._call(f"list {prefix}", self.client.get_prefix(self._key(prefix)))
        return {kv.key.decode()[len(base) :]: json.loads(kv.value) for kv in found}

    async def put(self, key: str, value: Any) -> None:
        data = json.dumps(value).encode()
        await self._write(f"put {key}", lambda t: t.put(self._key(key), data))

    async def delete(self, key: str) -> None:
        await self._write(f"delete {key}", lambda t: t.delete(self._key(key)))

    async def _write(self, what: str, op: Any) -> None:
        client = self.client
        t = client.transactions
        if self.fence is None:
            await self._call(what, client.transaction(compare=[], success=[op(t)], failure=[]))
            return
        revision = self.fence.create_revision
        if revision is None or not self.fence.is_leader:
            raise errors.NotLeaderError(
                f"store {self.describe()}: {what} refused: this manager does not lead"
            )
        ok, _ = await self._call(
            what,
            client.transaction(
                compare=[t.create(self.fence.key) == revision], success=[op(t)], failure=[]
            ),
        )
        if not ok:
            raise errors.NotLeaderError(
                f"store {self.describe()}: {what} rejected by etcd: this manager is no longer "
                f"the leader (its lease expired); another manager carries on"
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
