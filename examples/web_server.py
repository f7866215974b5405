#!/usr/bin/env python3
"""A tiny web server for the web-tier example: answers its version on 127.0.0.1:$PORT.

    GET /           -> 200 "<VERSION> <INFRAKIT_INSTANCE_ID>\\n"
    GET /health     -> 200 "ok\\n"  (the load balancer's health check)
    GET /slow?s=1.5 -> the same as /, after 1.5 seconds (to watch a drain wait for it)

The version is the first argument (``web_server.py v2``), else $VERSION, else ``v1``. The process
plugin gives each instance its port (``"Port": "auto"`` exports ``PORT``). Standard library only.
"""

from __future__ import annotations

import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

VERSION = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("VERSION", "v1")
INSTANCE = os.environ.get("INFRAKIT_INSTANCE_ID", "-")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            body = b"ok\n"
        else:
            if url.path == "/slow":
                # A stand-alone server, a thread per request: a real sleep is what /slow is.
                time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))  # noqa: TID251
            body = f"{VERSION} {INSTANCE}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request (and per health check) is noise


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks close with a reset; that is not an error


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    Server(("127.0.0.1", port), Handler).serve_forever()
