"""An in-memory store: for tests and for embedding infrakit without persistence."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes = 0

    async def get(self, key: str) -> Any | None:
        return copy.deepcopy(self.data.get(key))

    async def put(self, key: str, value: Any) -> None:
        self.writes += 1
        self.data[key] = copy.deepcopy(value)

    async def delete(self, key: str) -> None:
        self.writes += 1
        self.data.pop(key, None)

    async def list(self, prefix: str) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.data.items() if k.startswith(prefix)}

    def describe(self) -> str:
        return "memory"
