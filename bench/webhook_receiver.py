"""A webhook receiver for bench/handoff_notify.py: it verifies every Standard Webhooks
signature and records when each POST arrived, answering 200 at once.

    BENCH_WEBHOOK_SECRET=whsec_... python bench/webhook_receiver.py --port 8300

An asyncio protocol on uvloop (HTTP/1.1, keep-alive, Content-Length bodies), so that a
request costs it a few tens of microseconds and it is never what a benchmark measures.

* ``POST /hook``: a Nectar webhook. The signature is checked here, independently of Nectar's
  code, per standardwebhooks.com: ``webhook-signature`` holds space-separated ``v1,<base64>``
  entries, one of which must be the HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``
  keyed with the base64-decoded part of the ``whsec_`` secret, and the timestamp must be
  within five minutes. A valid one is recorded as (``data.id`` of the JSON body, i.e. the
  handoff id; ``webhook-id``; arrival time); an invalid one is counted and answered 401.
* ``POST /floor``: a bare job of bench/floor_worker.py; recorded by the body's ``key``.
* ``GET /arrivals?from=N``: the records from the N-th on, as JSON
  ``{"arrivals": [[kind, key, webhook_id, t_ns], ...], "stats": {...}}``. ``t_ns`` is
  ``CLOCK_MONOTONIC`` in nanoseconds, the clock ``time.perf_counter`` reads on Linux, so
  other processes on the machine can compare it with their own send times.
* ``GET /healthz``: 200.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import uvloop

TOLERANCE_SECONDS = 5 * 60
MAX_BODY = 1 << 20


def _response(status: str, body: bytes, content_type: str = "text/plain") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


OK = _response("200 OK", b"ok")
UNAUTHORIZED = _response("401 Unauthorized", b"bad signature")
BAD_REQUEST = _response("400 Bad Request", b"bad request")
NOT_FOUND = _response("404 Not Found", b"not found")


class Store:
    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        self.arrivals: list[tuple[str, str, str, int]] = []
        self.stats = {
            "hook_ok": 0,
            "floor_ok": 0,
            "bad_signature": 0,
            "stale_timestamp": 0,
            "unparsed": 0,
            "duplicate_webhook_id": 0,
            "hook_body_bytes": 0,
        }
        self.seen_ids: set[str] = set()

    def verify(self, headers: dict[str, str], body: bytes) -> str | None:
        """None if the request is signed as the spec says, else why not."""
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        signature = headers.get("webhook-signature", "")
        if not (msg_id and stamp.isdigit() and signature):
            return "bad_signature"
        if abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
            return "stale_timestamp"
        expected = hmac.new(
            self.key, msg_id.encode() + b"." + stamp.encode() + b"." + body, hashlib.sha256
        ).digest()
        for entry in signature.split():
            version, _, value = entry.partition(",")
            if version != "v1":
                continue
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            if hmac.compare_digest(given, expected):
                return None
        return "bad_signature"

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        arrived = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        url = urlsplit(target)
        if method == "POST" and url.path == "/hook":
            problem = self.verify(headers, body)
            if problem:
                self.stats[problem] += 1
                return UNAUTHORIZED
            try:
                handoff_id = str(json.loads(body)["data"]["id"])
            except (ValueError, KeyError, TypeError):
                self.stats["unparsed"] += 1
                return BAD_REQUEST
            msg_id = headers["webhook-id"]
            if msg_id in self.seen_ids:
                self.stats["duplicate_webhook_id"] += 1
            self.seen_ids.add(msg_id)
            self.stats["hook_ok"] += 1
            self.stats["hook_body_bytes"] = len(body)  # the latest, for the floor's size
            self.arrivals.append(("hook", handoff_id, msg_id, arrived))
            return OK
        if method == "POST" and url.path == "/floor":
            try:
                key = str(json.loads(body)["key"])
            except (ValueError, KeyError, TypeError):
                self.stats["unparsed"] += 1
                return BAD_REQUEST
            self.stats["floor_ok"] += 1
            self.arrivals.append(("floor", key, "", arrived))
            return OK
        if method == "GET" and url.path == "/arrivals":
            start = int(parse_qs(url.query).get("from", ["0"])[0])
            payload = {"arrivals": self.arrivals[start:], "stats": self.stats}
            return _response("200 OK", json.dumps(payload).encode(), "application/json")
        if method == "GET" and url.path == "/healthz":
            return OK
        return NOT_FOUND


class ReceiverProtocol(asyncio.Protocol):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length > MAX_BODY or "chunked" in headers.get("transfer-encoding", ""):
                self._reply(BAD_REQUEST)
                if self.transport is not None:
                    self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self._reply(self.store.handle(method, target, headers, body))

    def _reply(self, response: bytes) -> None:
        if self.transport is not None:
            self.transport.write(response)


async def serve(host: str, port: int, secret: str) -> None:
    store = Store(secret)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ReceiverProtocol(store), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    args: Any = parser.parse_args()
    # From the environment rather than the command line, which any user can read in ps.
    uvloop.run(serve(args.host, args.port, os.environ["BENCH_WEBHOOK_SECRET"]))


if __name__ == "__main__":
    main()
