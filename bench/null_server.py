"""A server that does nothing, for measuring a load generator's own ceiling.

It answers every request (GET, no body, keep-alive, pipelining allowed) with the same small
200 response straight from an asyncio protocol on uvloop, so at a few microseconds a request
it is far cheaper than any generator that drives it.

    python bench/null_server.py --port 8200
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import uvloop

BODY = b'{"status":"ok"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class NullProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        complete = self.buffer.count(b"\r\n\r\n")
        if complete and self.transport is not None:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * complete)


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(NullProtocol, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
