"""A minimal Alpaca market-data server on loopback for the feed tests (the fake exchange issue
builds the full one). It speaks the real protocol through the real codecs: ``connected``, auth,
``authenticated``, subscription acks with the full current set; after the handshake each
connection runs the next scripted behaviour (send frames, send an error, close, hang)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from tickd.codecs.alpaca import (
    AlpacaEncoder,
    AuthRequest,
    Encoding,
    SubscribeRequest,
    decode_client_message,
)
from tickd.codecs.schema import ChannelSets, StreamError, Subscription, Success

Behaviour = Callable[["Connection"], Awaitable[None]]


class Connection:
    def __init__(self, server: MiniAlpaca, websocket: ServerConnection) -> None:
        self.server = server
        self.websocket = websocket

    async def send(self, messages: list[Any]) -> None:
        await self.send_raw(self.server.encoder.encode(messages))

    async def send_raw(self, frame: bytes) -> None:
        await self.websocket.send(frame.decode() if self.server.encoding == "json" else frame)

    async def receive(self) -> Any:
        message = decode_client_message(await self.websocket.recv(), self.server.encoding)
        self.server.received.append(message)
        return message


class MiniAlpaca:
    def __init__(self, encoding: Encoding = "msgpack", behaviours: list[Behaviour] | None = None):
        self.encoding: Encoding = encoding
        self.encoder = AlpacaEncoder("stocks", encoding)
        self.behaviours = list(behaviours or [])
        self.received: list[Any] = []
        self.connections = 0
        self.http_status: list[int] = []  # refuse the next upgrades with these statuses
        self.greet = True  # send "connected" (False: say nothing, to test the step deadline)
        self.ack: Subscription | None = None  # acknowledge this instead of what was asked
        self.hang_up_after_greeting = 0  # connections to close right after "connected"
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MiniAlpaca]:
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._refuse) as server:
            port = server.sockets[0].getsockname()[1]  # type: ignore[index]
            self.url = f"ws://127.0.0.1:{port}/v2/test"
            yield self

    def _refuse(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.http_status:
            status = self.http_status.pop(0)
            return connection.respond(status, f"HTTP {status}\n")
        return None

    async def _handler(self, websocket: ServerConnection) -> None:
        self.connections += 1
        connection = Connection(self, websocket)
        if not self.greet:
            await websocket.wait_closed()
            return
        await connection.send([Success(msg="connected")])
        if self.hang_up_after_greeting:
            self.hang_up_after_greeting -= 1
            await websocket.close(1011)
            return
        auth = await connection.receive()
        if not isinstance(auth, AuthRequest) or (auth.key, auth.secret) != ("key", "secret"):
            await connection.send([StreamError(code=402, msg="auth failed")])
            await websocket.close()
            return
        await connection.send([Success(msg="authenticated")])
        request = await connection.receive()
        assert isinstance(request, SubscribeRequest)
        fields = {name: getattr(request, name) for name in ChannelSets.__struct_fields__}
        ack = self.ack or Subscription(**{k: v for k, v in fields.items() if v})
        await connection.send([ack])
        if self.behaviours:
            await self.behaviours.pop(0)(connection)
        else:
            await websocket.wait_closed()
