"""An OpenAI-compatible upstream on loopback that misbehaves on purpose, at the TCP level.

Raw asyncio HTTP/1.1 (not a framework) so it can do what real networks do: reset connections
(RST via SO_LINGER 0), hang forever, trickle bytes, send garbage. The behaviour is chosen by the
model name (litellm sends "openai/<mode>" as "<mode>"); `hits[mode]` counts requests.

    ok        answers at once (JSON, or SSE in 3 chunks + a usage chunk when stream is true)
    slow      answers after 0.5 s         slow3   after 3 s
    hang      reads the request and never answers
    reset     resets the connection instead of answering
    midreset  streams 2 chunks, then resets (non-stream: resets after the status line)
    garbage   200 with a body that is not JSON (SSE: broken data lines)
    e500 / e503 / e429   that HTTP status with an OpenAI-style error body
    trickle   streams one chunk per second, forever
    longline  streams one chunk, then a data line of 40 MB with no end, then hangs
    rolereset / rolehang   streams the role-only chunk and an SSE comment, then resets / hangs
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from typing import Any


class BadUpstream:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.open_connections = 0
        self.hanging = 0  # "hang" calls whose caller has not closed its end yet
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="bad-upstream")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> BadUpstream:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop)
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def count(self, mode: str) -> int:
        with self._lock:
            return self.hits[mode]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                body = request
                mode = str(body.get("model", "ok"))
                with self._lock:
                    self.hits[mode] += 1
                keep = await self._answer(mode, body, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_connections -= 1
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, mode: str, body: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        stream = bool(body.get("stream"))
        if mode in ("slow", "slow3"):
            await asyncio.sleep(0.5 if mode == "slow" else 3.0)
        if mode == "hang":
            # never answers, but reads on: the caller closing its end (EOF) ends the handler, so
            # open_connections shows whether the proxy let go of a call it no longer needs
            self.hanging += 1
            try:
                await asyncio.wait_for(reader.read(), 3600)
            finally:
                self.hanging -= 1
            return False
        if mode == "reset":
            _reset(writer)
            return False
        if mode in ("e500", "e503", "e429"):
            status = int(mode[1:])
            err = json.dumps({"error": {"message": f"upstream says {status}",
                                        "type": "server_error", "param": None,
                                        "code": None}}).encode()
            await _send(writer, status, "application/json", err)
            return True
        if mode == "garbage" and not stream:
            await _send(writer, 200, "application/json", b"<html>definitely not json")
            return True
        if not stream:
            if mode == "midreset":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 500\r\n\r\n{\"id\": \"x\", ")
                await writer.drain()
                _reset(writer)
                return False
            await _send(writer, 200, "application/json", json.dumps(_response(mode)).encode())
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"cache-control: no-cache\r\nconnection: close\r\n\r\n")
        if mode == "garbage":
            writer.write(b"data: {not json at all\n\ndata: ]]]\n\n")
            await writer.drain()
            return False
        if mode in ("rolereset", "rolehang"):
            role = _chunk(mode, "")
            writer.write(_sse(role) + b": keep-alive\n\n")
            await writer.drain()
            if mode == "rolereset":
                await asyncio.sleep(0.05)
                _reset(writer)
                return False
            await asyncio.sleep(3600)
        if mode == "longline":
            writer.write(_sse(_chunk(mode, "hello")) + b"data: {\"x\": \"")
            for _ in range(40):
                writer.write(b"x" * (1024 * 1024))
                await writer.drain()
            await asyncio.sleep(3600)
        words = ["hello", " there", " friend"]
        for i, word in enumerate(words if mode != "trickle" else iter(int, 1)):
            writer.write(_sse(_chunk(mode, word if mode != "trickle" else f" t{i}")))
            await writer.drain()
            if mode == "midreset" and i == 1:
                _reset(writer)
                return False
            if mode == "trickle":
                await asyncio.sleep(1.0)
        writer.write(_sse(_chunk(mode, None, "stop")))
        writer.write(_sse({**_chunk(mode, None), "choices": [], "usage": _USAGE}))
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        return False


_USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def _response(mode: str) -> dict[str, Any]:
    return {"id": "chatcmpl-bad", "object": "chat.completion", "created": int(time.time()),
            "model": mode, "choices": [{"index": 0, "message": {
                "role": "assistant", "content": f"[{mode}] hello there friend"},
                "finish_reason": "stop"}], "usage": _USAGE}


def _chunk(mode: str, text: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {"role": "assistant", "content": text} if text is not None else {}
    return {"id": "chatcmpl-bad", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": mode, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _send(writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes) -> None:
    writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}"
                 f"\r\n\r\n".encode() + body)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    raw = await reader.readexactly(length) if length else b"{}"
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}
