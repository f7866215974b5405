"""etcd leader election: managers on several hosts, exactly one leads, fenced by a lease.

How it works (etcd 3.4, client ``aetcd``):

* Each member holds a lease of ``ttl`` seconds (etcd's minimum is 2 s) and keeps it alive every
  ``ttl/3``.
* Campaigning is one transaction: *if the leader key was never created* (create revision 0), put
  ``{"ID", "Location"}`` there bound to my lease. The winner remembers the key's create revision:
  :class:`infrakit.store.etcd.EtcdStore` compares it in every write, so a deposed leader's writes
  are rejected by etcd itself, not only by its own belief.
* A member that lost the transaction **watches** the leader key from the revision its
  transaction saw (so no deletion in between is missed) and campaigns again the moment the key is
  deleted - when the leader's lease expires (failover ~ ttl) or it steps down and revokes it
  (hand-over in milliseconds). The watch is re-established every ``ttl/3``, after the member
  renewed its own lease, and after an etcd restart (from the revision of a fresh transaction).
* **Fencing:** a leader that has not renewed its lease for ``2/3 ttl`` steps down *before* the
  lease can expire, so two members never act at once. A leader also watches its own key and steps
  down at once if it is deleted (``etcdctl del``). etcd down or restarted: the same rules, then the
  campaign starts again with backoff on a fresh lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import aetcd

from infrakit import errors
from infrakit._utils.aio import cancel_and_wait
from infrakit._utils.clock import Clock, SystemClock
from infrakit.leader import LeaderInfo, Leadership

__all__ = ["START_TIMEOUT", "EtcdElector", "parse_endpoint"]

log = logging.getLogger(__name__)

#: How long :meth:`EtcdElector.check` waits for etcd to answer when a manager starts.
START_TIMEOUT = 5.0


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (a scheme is tolerated) -> (host, port)."""
    text = endpoint.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise errors.SpecError(
            f"etcd endpoint {endpoint!r}: expected HOST:PORT, e.g. 127.0.0.1:2379"
        )
    return host.strip("[]"), int(port)


class EtcdElector:
    """Lease-based election on ``<prefix>/leader``."""

    def __init__(
        self,
        endpoint: str = "127.0.0.1:2379",
        prefix: str = "/infrakit",
        *,
        id: str,
        location: str = "",
        ttl: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        self.endpoint = endpoint
        #: Time for renewal schedules, backoff and waits. (Calls to etcd itself stay bounded in
        #: real time: etcd's leases expire in real time, whatever clock the caller runs on.)
        self.clock: Clock = clock or SystemClock()
        self.host, self.port = parse_endpoint(endpoint)
        self.prefix = "/" + prefix.strip("/")
        self.key = f"{self.prefix}/leader".encode()
        #: Each member's own key, on its lease: the member list of ``manager status``.
        self.members_prefix = f"{self.prefix}/members/".encode()
        self.id = id
        self.location = location
        self.ttl = max(2.0, ttl)
        self._grant = max(2, math.ceil(self.ttl))
        self._leadership = Leadership()
        #: Create revision of our leader key while we lead (the store's fence).
        self.create_revision: int | None = None
        self._lease: Any = None
        self._client: aetcd.Client | None = None
        self._task: asyncio.Task[None] | None = None

    # --- Elector --------------------------------------------------------------------------------

    @property
    def client(self) -> aetcd.Client:
        if self._client is None:
            self._client = aetcd.Client(host=self.host, port=self.port, timeout=max(1, self._grant))
        return self._client

    async def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name=f"etcd election {self.key!r}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        lease, self._lease = self._lease, None
        self._step_down("stopping")
        if lease is not None:  # revoking deletes our key at once: the next member leads now
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lease.revoke(), 1.0)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    async def check(self, timeout: float = START_TIMEOUT) -> None:
        """Wait up to ``timeout`` seconds for etcd to answer (it may be starting too); raise
        :class:`~infrakit.errors.NotLeaderError` naming the endpoint if it never does.

        A manager calls this once before it listens, so ``up --leader etcd`` with etcd down stops
        with one line instead of campaigning forever. Once running, an etcd outage is not an
        error: the campaign steps down and retries (see the module docstring).
        """
        deadline = self.clock.now() + timeout
        while True:
            left = deadline - self.clock.now()
            try:
                await asyncio.wait_for(self.client.get(self.key), max(0.1, min(self.ttl, left)))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            left = deadline - self.clock.now()
            if left <= 0:
                break
            await self.clock.sleep(min(0.25, left))
        reason = " ".join(reason.split())  # one line, whatever the gRPC message looks like
        raise errors.NotLeaderError(
            f"leader etcd: no answer from etcd at {self.endpoint} within {timeout:g}s ({reason}); "
            "check that etcd runs there, or give its address (an etcd:// store, the manager "
            "option etcd, or INFRAKIT_ETCD_ENDPOINT)"
        )

    @property
    def is_leader(self) -> bool:
        return self._leadership.leading

    def changes(self) -> AsyncIterator[bool]:
        return self._leadership.changes()

    async def leader(self) -> LeaderInfo | None:
        got = await self._read("leader", self.client.get(self.key))
        return None if got is None else _member_info(got.value)

    async def members(self) -> list[LeaderInfo]:
        found = await self._read("members", self.client.get_prefix(self.members_prefix))
        members = [info for kv in found if (info := _member_info(kv.value)) is not None]
        return sorted(members, key=lambda m: m.id)

    async def _read(self, what: str, request: Any) -> Any:
        """One etcd read within the TTL; unreachable etcd is a one-line NotLeaderError."""
        try:
            return await asyncio.wait_for(request, self.ttl)
        except Exception as exc:
            raise errors.NotLeaderError(
                f"no {what} known: etcd at {self.endpoint} is unreachable ({exc}); "
                f"check that etcd runs"
            ) from None

    def describe(self) -> str:
        return f"etcd://{self.host}:{self.port}{self.prefix} (ttl {self.ttl:g}s)"

    # --- campaign -------------------------------------------------------------------------------

    async def _campaign(self) -> None:
        backoff = 0.25
        while True:
            try:
                await self._run_once()
                backoff = 0.25
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "etcd election at %s: %s; retrying in %.2fs", self.endpoint, exc, backoff
                )
            self._step_down("lost the etcd lease")
            self._lease = None
            await self.clock.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _run_once(self) -> None:
        """Grant a lease, campaign until we lead, then renew until we cannot prove we lead."""
        client = self.client
        lease = await asyncio.wait_for(client.lease(self._grant), self.ttl)
        self._lease = lease
        last_renewed = self.clock.now()
        value = json.dumps({"ID": self.id, "Location": self.location}).encode()
        # Register as a member: the key lives as long as our lease (a dead member drops out).
        await asyncio.wait_for(
            client.put(self.members_prefix + self.id.encode(), value, lease=lease), self.ttl
        )
        t = client.transactions
        ours = 0  # the create revision of our key once we lead
        while not self.is_leader:
            won, responses = await asyncio.wait_for(
                client.transaction(
                    compare=[t.create(self.key) == 0],
                    success=[t.put(self.key, value, lease=lease)],
                    failure=[t.get(self.key)],
                ),
                self.ttl / 2,
            )
            if won:
                ours = self.create_revision = int(responses[0].response_put.header.revision)
                self._leadership.set(True)
                log.info("%s leads (etcd %s, ttl %gs)", self.id, self.endpoint, self.ttl)
                break
            # Someone leads: wait for its key to go, but renew our own lease every ttl/3.
            seen = _revision_seen(responses)
            if seen:  # (0: the key vanished since the transaction - campaign again at once)
                wait = max(0.0, last_renewed + self.ttl / 3 - self.clock.now())
                await self._wait_for_delete(seen + 1, wait)
            if self.clock.now() - last_renewed >= self.ttl / 3:
                await self._renew(lease)
                last_renewed = self.clock.now()
        # Leading: renew every ttl/3; give up at 2/3 ttl without a renewal (before expiry), or at
        # once when our key is deleted.
        while True:
            deadline = last_renewed + self.ttl * 2 / 3
            now = self.clock.now()
            # Until the next renewal is due (at least ttl/8 between failed attempts), but never
            # past the deadline.
            wait = min(max(self.ttl / 8, last_renewed + self.ttl / 3 - now), deadline - now)
            if wait > 0 and await self._wait_for_delete(ours + 1, wait):
                raise errors.NotLeaderError("the leader key was deleted")
            try:
                await asyncio.wait_for(self._renew(lease), max(0.05, deadline - self.clock.now()))
                last_renewed = self.clock.now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.clock.now() >= deadline:
                    raise errors.NotLeaderError(f"cannot renew the lease: {exc}") from None

    async def _wait_for_delete(self, start_revision: int, seconds: float) -> bool:
        """Watch the leader key from ``start_revision`` for up to ``seconds``; True if deleted.

        A watch that cannot be set up or breaks (etcd restarting) is not a deletion: for a
        follower it means "try the transaction again", for the leader the lease renewal that
        follows decides. Either way the next watch starts from a fresh transaction's revision.
        The watch runs as its own task bounded by ``asyncio.wait``, which never swallows a
        cancellation of this one (``asyncio.timeout`` can, on Python 3.11).
        """
        if seconds <= 0:
            return False
        watcher = asyncio.ensure_future(self._first_delete(start_revision))
        try:
            done, _ = await asyncio.wait({watcher}, timeout=seconds)
        finally:
            if not watcher.done():
                await cancel_and_wait(watcher)
        if not done:
            return False
        if watcher.exception() is not None:
            log.debug("etcd watch on %r ended: %s", self.key, watcher.exception())
            await self.clock.sleep(min(seconds, self.ttl / 8))  # no busy loop while etcd is away
            return False
        return watcher.result()

    async def _first_delete(self, start_revision: int) -> bool:
        watch = await self.client.watch(self.key, start_revision=start_revision)
        try:
            async for event in watch:
                if event.kind == "DELETE":
                    return True
            return False
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), 1.0)

    async def _renew(self, lease: Any) -> None:
        reply = await lease.refresh()
        if reply is None or getattr(reply, "TTL", 1) <= 0:
            raise errors.NotLeaderError("the lease expired")

    def _step_down(self, why: str) -> None:
        if self.is_leader:
            log.warning("%s stops leading: %s", self.id, why)
        self.create_revision = None
        self._leadership.set(False)


def _member_info(value: bytes) -> LeaderInfo | None:
    """A member's (or the leader's) ``{"ID", "Location"}`` value; None if unreadable."""
    try:
        doc = json.loads(value)
        return LeaderInfo(str(doc["ID"]), str(doc.get("Location") or ""))
    except (ValueError, KeyError, TypeError):
        return None


def _revision_seen(responses: Any) -> int:
    """The store revision a failed campaign transaction observed (its ``get`` of the key)."""
    try:
        return int(responses[0][0][1].header.revision)
    except (IndexError, TypeError, AttributeError):
        return 0  # the key vanished in between
