"""The pipeline benchmark's Alpaca stocks endpoint, run as its own process (``python -m
bench._alpaca_server``; it prints ``PORT <n>``) so that the client under test has its core.

It speaks the real handshake with tickd's codecs (``connected``, auth, subscription ack, msgpack)
and then writes a trial's frames of 10 trades straight onto the transport as pre-built websocket
frames: the sender must be much faster than any client measured. The trial comes in the query
string: ``?rate=<msg/s>&frames=<n>&stamp=<0|1>``. ``rate=0`` writes as fast as the client's TCP
window takes them; ``stamp=1`` sets every trade's ``t`` to the wall-clock time of the write, so
the client can measure wire-to-handler latency.
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

from bench.decode import make_trades
from tickd.codecs.alpaca import AlpacaEncoder, SubscribeRequest, decode_client_message
from tickd.codecs.schema import Subscription, Success
from tickd.codecs.timestamps import ns_to_msgpack_ext

TEMPLATES = 2000  # distinct frames, cycled
_HIGH_WATER = 1 << 20  # bytes buffered in the transport before the sender waits


def _websocket_frame(payload: bytes) -> bytes:
    """One unmasked binary frame (server to client)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x82, size))
    elif size < 1 << 16:
        head = bytes((0x82, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x82, 127)) + size.to_bytes(8, "big")
    return head + payload


class Frames:
    """Template frames and, per frame, where each trade's 8-byte timestamp sits."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        encoder = AlpacaEncoder("stocks", "msgpack")
        self.frames: list[bytearray] = []
        self.offsets: list[list[int]] = []
        for _ in range(TEMPLATES):
            trades = make_trades(rng)
            frame = bytearray(_websocket_frame(encoder.encode(trades)))
            spots = []
            for trade in trades:
                stamp = b"\xd7\xff" + ns_to_msgpack_ext(trade.ts_event)
                spots.append(frame.index(stamp) + 2)
            self.frames.append(frame)
            self.offsets.append(spots)

    def stamped(self, i: int, now_ns: int) -> bytes:
        # An odd nanosecond count is never whole seconds: always the 8-byte form.
        frame, payload = self.frames[i % TEMPLATES], ns_to_msgpack_ext(now_ns | 1)
        for spot in self.offsets[i % TEMPLATES]:
            frame[spot : spot + 8] = payload
        return bytes(frame)


async def _trial(websocket: ServerConnection, frames: Frames, rate: float, count: int, stamp: bool):
    transport = websocket.transport
    interval = 10 / rate if rate else 0.0
    start = time.perf_counter()
    sent = 0
    while sent < count:
        due = count if not rate else min(count, int((time.perf_counter() - start) / interval) + 1)
        if stamp:
            chunk = b"".join(frames.stamped(i, time.time_ns()) for i in range(sent, due))
        else:
            chunk = b"".join(
                frames.frames[i % TEMPLATES] for i in range(sent, min(due, sent + 512))
            )
            due = min(due, sent + 512)
        transport.write(chunk)
        sent = due
        while transport.get_write_buffer_size() > _HIGH_WATER:
            await asyncio.sleep(0.0002)
        if rate and sent < count:
            await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
        elif not rate:
            await asyncio.sleep(0)


async def _handler(websocket: ServerConnection, frames: Frames) -> None:
    query = parse_qs(urlsplit(websocket.request.path).query)
    rate = float(query.get("rate", ["0"])[0])
    count = int(query.get("frames", ["0"])[0])
    stamp = query.get("stamp", ["0"])[0] == "1"
    encoder = AlpacaEncoder("stocks", "msgpack")
    await websocket.send(encoder.encode([Success(msg="connected")]))
    await websocket.recv()  # auth: any key will do
    await websocket.send(encoder.encode([Success(msg="authenticated")]))
    request = decode_client_message(await websocket.recv(), "msgpack")
    if not isinstance(request, SubscribeRequest):
        raise ValueError(f"expected a subscription, got {request!r}")
    await websocket.send(encoder.encode([Subscription(trades=request.trades or ())]))
    await asyncio.sleep(0.05)  # the client's handlers are in place
    await _trial(websocket, frames, rate, count, stamp)
    await websocket.wait_closed()


async def main() -> None:
    frames = Frames()
    async with serve(
        lambda ws: _handler(ws, frames),
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,
        max_size=2**20,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
