"""A minimal Alpaca trading stream (``trade_updates``) on loopback for the feed tests. It speaks
the real protocol through the real codecs: auth -> ``authorization``, ``listen`` -> ``listening``;
after the handshake each connection runs the next scripted behaviour. Frames go out binary, as
the paper endpoint sends them even in JSON mode (``text_frames`` sends text instead); in msgpack
mode the codecs' JSON is transcoded, both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from tickd.codecs.alpaca import Encoding
from tickd.codecs.alpaca_trading import (
    ListenRequest,
    TradingAuthRequest,
    decode_client_message,
    encode_control,
    encode_trade_update,
)
from tickd.codecs.schema import Authorization, Listening, OrderUpdate, StreamError

Behaviour = Callable[["Connection"], Awaitable[None]]
ServerMessage = OrderUpdate | Authorization | Listening | StreamError


class Connection:
    def __init__(self, server: MiniTradingStream, websocket: ServerConnection) -> None:
        self.server = server
        self.websocket = websocket

    async def send(self, messages: Sequence[ServerMessage]) -> None:
        for message in messages:
            if isinstance(message, OrderUpdate):
                await self.send_raw(encode_trade_update(message))
            else:
                await self.send_raw(encode_control(message))

    async def send_raw(self, frame: bytes) -> None:
        """Send a JSON frame as this server's encoding and framing say."""
        if self.server.encoding == "msgpack":
            frame = msgspec.msgpack.encode(msgspec.json.decode(frame))
        await self.websocket.send(frame.decode() if self.server.text_frames else frame)

    async def receive(self) -> Any:
        frame = await self.websocket.recv()
        if self.server.encoding == "msgpack":
            assert isinstance(frame, bytes)
            frame = msgspec.json.encode(msgspec.msgpack.decode(frame))
        message = decode_client_message(frame)
        self.server.received.append(message)
        return message


class MiniTradingStream:
    def __init__(self, encoding: Encoding = "json", behaviours: list[Behaviour] | None = None):
        self.encoding: Encoding = encoding
        self.behaviours = list(behaviours or [])
        self.text_frames = False
        self.received: list[Any] = []
        self.connections = 0
        self.refused = 0
        self.http_status: list[int] = []  # refuse the next upgrades with these statuses
        self.answer_auth = True  # False: never answer the auth (to test the step deadline)
        self.ack: tuple[str, ...] | None = None  # acknowledge these streams instead
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MiniTradingStream]:
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._refuse) as server:
            port = server.sockets[0].getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/stream"
            yield self

    def _refuse(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.http_status:
            self.refused += 1
            status = self.http_status.pop(0)
            return connection.respond(status, f"HTTP {status}\n")
        return None

    async def _handler(self, websocket: ServerConnection) -> None:
        self.connections += 1
        connection = Connection(self, websocket)
        auth = await connection.receive()
        if not self.answer_auth:
            await websocket.wait_closed()
            return
        if not isinstance(auth, TradingAuthRequest) or (auth.key, auth.secret) != ("key", "secret"):
            refusal = Authorization(
                status="unauthorized",
                action="authenticate",
                message="access key verification failed",
            )
            await connection.send([refusal])
            await websocket.close()
            return
        await connection.send([Authorization(status="authorized", action="authenticate")])
        listen = await connection.receive()
        assert isinstance(listen, ListenRequest)
        await connection.send([Listening(streams=listen.streams if self.ack is None else self.ack)])
        if self.behaviours:
            await self.behaviours.pop(0)(connection)
        else:
            await websocket.wait_closed()
