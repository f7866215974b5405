"""JSON-RPC 2.0 (and SEED-era 1.0) over HTTP over UNIX sockets: InfraKit's wire protocol.

``envelope`` (sans-I/O message shapes), ``core`` (the clients' shared logic), ``client`` and
``sync`` (async and blocking clients), ``streams`` (the async client's HTTP/1.1 transport),
``http11`` (the HTTP/1.1 server under every listener), ``server`` (plugin objects served, with SSE
events) and one module per SPI (``instance``, ``flavor``, ``group`` ...) holding that SPI's service
adapter and typed client side by side. No third-party HTTP library; nothing is imported here, so
the CLI can load the sync client without asyncio or msgspec.
"""
