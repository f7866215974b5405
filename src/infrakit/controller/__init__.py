"""Reconcile machinery (``clock``, ``queue``) and the group controller built on it (``group``).

This layer receives plugins through lookups and never imports ``infrakit.rpc``.
"""
