"""A scripted HTTP server on loopback for the REST feed tests: a real socket, a real HTTP parser
(``http.server.ThreadingHTTPServer`` in a thread, port 0), bodies made by the real encoders.

Each GET is recorded (path, query, headers) and answered by ``respond`` (default: the next of
``replies``, or 404 when they run out)."""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_url: str


class HttpServer:
    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies = list(replies or [])
        self.respond: Callable[[Received], Reply] = self._next_reply
        self.received: list[Received] = []
        self.url = ""

    def _next_reply(self, request: Received) -> Reply:
        return self.replies.pop(0) if self.replies else Reply(404, b'{"message":"no reply"}')

    @contextmanager
    def running(self) -> Iterator[HttpServer]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _handler(owner: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            request = Received(
                path=parts.path,
                query=dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                raw_url=self.path,
            )
            owner.received.append(request)
            reply = owner.respond(request)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            # The client under test may stop reading (a body over its size cap).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def free_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with HttpServer().running() as server:
        return server.url
