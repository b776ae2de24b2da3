"""router/upstream/connection.py (the pass-through's HTTP/1.1 client) against raw loopback servers
that answer in each framing and misbehave on purpose: keep-alive, stale connections, chunked,
close-delimited and compressed bodies, 1xx, big answers, flow control, bad input."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable

import pytest

from router.upstream import passthrough as pt

OK = {"id": "c1", "object": "chat.completion", "choices": [
    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}]}
BODY = {"model": "m", "messages": [{"role": "user", "content": "x"}]}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


class RawServer:
    """One asyncio TCP server; `handler(reader, writer, request_head)` answers each request and
    returns whether to keep the connection open. Counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.handler(reader, writer, head):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        await pt.close_default_client()


def response(body: bytes, *, status: str = "200 OK", headers: str = "",
             ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"{headers}\r\n").encode() + body


def chunked(parts: list[bytes], ctype: str = "text/event-stream") -> bytes:
    out = [f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
           .encode()]
    out += [b"%x\r\n%s\r\n" % (len(p), p) for p in parts]
    return b"".join(out) + b"0\r\n\r\n"


def sse(obj: dict | str) -> bytes:
    return b"data: " + (obj if isinstance(obj, str) else json.dumps(obj)).encode() + b"\n\n"


STREAM = [sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": "hel"}}]}),
          sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"},
                                        "finish_reason": "stop"}]}),
          sse("[DONE]")]


async def test_keep_alive_and_a_stale_connection_is_retried_once() -> None:
    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(response(json.dumps(OK).encode()))
        await writer.drain()
        return True

    async with RawServer(answer) as srv:
        client = pt.default_client()
        for _ in range(3):
            assert (await pt.chat_completion(srv.base, "k", BODY, 5))["id"] == "c1"
        assert srv.connections == 1 and client.connections_opened == 1
        # the server drops its idle connection: the next call still succeeds, on a new one
        for w in srv.writers:
            w.transport.abort()  # type: ignore[attr-defined]
        assert (await pt.chat_completion(srv.base, "k", BODY, 5))["id"] == "c1"
        assert srv.connections == 2 and client.connections_in_use == 0
        head = srv.requests[0]
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"Authorization: Bearer k\r\n" in head and b"Host: 127.0.0.1:" in head


async def test_connection_close_is_not_reused() -> None:
    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(response(json.dumps(OK).encode(), headers="Connection: close\r\n"))
        await writer.drain()
        return False

    async with RawServer(answer) as srv:
        for _ in range(3):
            assert (await pt.chat_completion(srv.base, None, BODY, 5))["id"] == "c1"
        assert srv.connections == 3


async def test_close_delimited_gzip_and_interim_answers() -> None:
    raw = json.dumps(OK).encode()

    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        # a 100 Continue first, then a gzip body whose end is the connection's end
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Encoding: gzip\r\n\r\n" + gzip.compress(raw))
        await writer.drain()
        return False

    async with RawServer(answer) as srv:
        assert await pt.chat_completion(srv.base, None, BODY, 5) == OK


async def test_a_big_answer_is_read_whole() -> None:
    big = {**OK, "pad": "x" * (3 * 1024 * 1024)}  # past the stream flow-control mark

    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(response(json.dumps(big).encode()))
        await writer.drain()
        return True

    async with RawServer(answer) as srv:
        assert (await pt.chat_completion(srv.base, None, BODY, 10))["pad"] == big["pad"]


async def test_stream_chunked_split_anywhere_and_flow_control() -> None:
    filler = [sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": "y" * 4000}}]})
              ] * 600  # ~2.4 MB: more than is buffered before reading pauses
    events = filler + STREAM
    blob = b"".join(events)

    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(blob), 7777):  # chunk borders fall inside events
            part = blob[i:i + 7777]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with RawServer(answer) as srv:
        stream = await pt.open_chat_stream(srv.base, None, BODY, 5)
        await asyncio.sleep(0.3)  # let the upstream fill our buffers while nobody reads
        got = [e async for e in stream]
        assert got == events and stream.done
        # read whole: the connection went back to the pool and serves the next stream
        again = await pt.open_chat_stream(srv.base, None, BODY, 5)
        assert [e async for e in again] == events
        assert srv.connections == 1 and pt.default_client().connections_in_use == 0


async def test_stream_chunks_keep_the_upstream_bytes() -> None:
    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(chunked([b"".join(STREAM)]))
        await writer.drain()
        return True

    async with RawServer(answer) as srv:
        stream = await pt.open_chat_stream(srv.base, None, BODY, 5)
        batches = [b async for b in stream.chunk_batches()]
        assert len(batches) == 1 and [c.raw for c in batches[0]] == STREAM[:2]  # type: ignore
        assert batches[0] == [json.loads(e[6:]) for e in STREAM[:2]]


async def test_stream_event_that_is_not_json_is_refused() -> None:
    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(chunked([STREAM[0], b"data: {\"id\": broken\n\n", STREAM[2]]))
        await writer.drain()
        return True

    async with RawServer(answer) as srv:
        stream = await pt.open_chat_stream(srv.base, None, BODY, 5)
        with pytest.raises(pt.StreamInterrupted) as info:
            async for _ in stream.chunks():
                pass
        assert info.value.reason == "bad_chunk"


async def test_server_closing_mid_answer_is_a_connection_error() -> None:
    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\":")
        await writer.drain()
        return False

    async with RawServer(answer) as srv:
        with pytest.raises(pt.UpstreamConnectionError) as info:
            await pt.chat_completion(srv.base, None, BODY, 5)
        assert pt.classify(info.value) == (True, 502, "connection_error")


async def test_garbage_that_is_not_http_is_a_bad_response() -> None:
    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        return False

    async with RawServer(answer) as srv:
        with pytest.raises(pt.BadResponseError):
            await pt.chat_completion(srv.base, None, BODY, 5)


async def test_bad_urls_and_headers_are_refused_before_sending() -> None:
    with pytest.raises(pt.UpstreamConnectionError) as info:
        await pt.chat_completion("ftp://example.invalid/v1", None, BODY, 5)
    assert info.value.reason == "invalid_url"
    with pytest.raises(pt.UpstreamConnectionError) as info:
        await pt.chat_completion("http://127.0.0.1:9/v1", "sk-1\r\nX-Evil: 1", BODY, 5)
    assert info.value.reason == "invalid_header" and "sk-1" not in str(info.value)
    await pt.close_default_client()


async def test_pool_limit_waits_for_a_free_connection() -> None:
    gate = asyncio.Event()

    async def answer(reader, writer, head):  # type: ignore[no-untyped-def]
        await gate.wait()
        writer.write(response(json.dumps(OK).encode()))
        await writer.drain()
        return True

    async with RawServer(answer) as srv:
        client = pt.PassthroughClient(limit=2)
        try:
            calls = [asyncio.ensure_future(client.chat_completion(srv.base, None, BODY, 5))
                     for _ in range(5)]
            await asyncio.sleep(0.2)
            assert srv.connections == 2  # the other three wait for one of these
            gate.set()
            results = await asyncio.gather(*calls)
            assert all(r["id"] == "c1" for r in results) and srv.connections == 2
        finally:
            await client.aclose()


async def test_tls_verifies_the_certificate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """https upstreams: the system's trust store (SSL_CERT_FILE here) decides; a certificate it
    does not trust is a connection error, never a silent plaintext or unverified call."""
    import os
    import ssl
    import subprocess
    import sys

    from conftest import require_binary

    openssl = require_binary("openssl")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response(json.dumps(OK).encode()))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    script = ("import asyncio, sys\nfrom router.upstream import passthrough as pt\n"
              "async def main():\n"
              f"    try:\n        r = await pt.chat_completion('https://localhost:{port}/v1', "
              "'k', {'messages': []}, 5)\n        print('OK', r['id'])\n"
              "    except pt.PassthroughError as e:\n        print('ERR', e.reason, e)\n"
              "asyncio.run(main())\n")

    async def run(env: dict[str, str]) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return out.decode() + err.decode()

    try:
        refused = await run({})
        trusted = await run({"SSL_CERT_FILE": str(cert)})
    finally:
        server.close()
    assert refused.startswith("ERR connection_error") and "CERTIFICATE_VERIFY_FAILED" in refused
    assert trusted.startswith("OK c1"), trusted
