"""Generic helpers with no knowledge of infrakit's domain: async adapters, pub/sub, durations, logs.

This is the lowest layer; it imports nothing else from infrakit.
"""
