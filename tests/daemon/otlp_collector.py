"""An OTLP/HTTP endpoint on loopback for the exporter tests: a real socket, the real protobuf."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")


@contextmanager
def collector(parse: Callable[[bytes], T], path: str) -> Iterator[tuple[str, list[T]]]:
    """The endpoint's URL (ending in ``path``, e.g. ``/v1/traces``) and every request it got,
    decoded by ``parse`` (a protobuf message's ``FromString``)."""
    received: list[T] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(parse(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
