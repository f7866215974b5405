"""JSON-RPC 2.0 (and SEED-era 1.0) over HTTP over UNIX sockets: InfraKit's wire protocol.

``envelope`` (sans-I/O message shapes), ``client`` (async and sync clients with the handshake),
``server`` (the aiohttp server with SSE events) and one module per SPI (``instance``, ``flavor``,
``group``) holding that SPI's service adapter and typed client side by side. Nothing is imported
here, so the CLI can load the sync client without aiohttp or msgspec.
"""
