"""Event topic matching (InfraKit's rule), kept free of heavy imports for the CLI."""

from __future__ import annotations

__all__ = ["topic_matches"]


def topic_matches(subscription: str, topic: str) -> bool:
    """``a/`` matches ``a`` and everything under it, ``a/b`` only itself, ``""`` or ``/`` all."""
    if subscription in ("", "/"):
        return True
    sub = subscription.strip("/")
    if subscription.endswith("/"):
        return topic == sub or topic.startswith(sub + "/")
    return topic == sub
