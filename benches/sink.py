#!/usr/bin/env python3
"""An HTTP/1.1 backend that reads every request body whole, then answers 200.

    benches/sink.py PORT

The upload part of benches/proxy.sh forwards large bodies to it, so that
the proxy streams the whole body before the answer (nginx's `return 200`
answers at once and discards the body). Keep-alive; bodies framed by
Content-Length or chunks. Standard library only; exits after LIFETIME
seconds (default 600).
"""
import asyncio
import os
import sys

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def body_by_length(reader, n):
    while n > 0:
        chunk = await reader.read(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("closed in a body")
        n -= len(chunk)


async def body_by_chunks(reader):
    while True:
        size = int((await reader.readline()).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return
        await body_by_length(reader, size + 2)


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
                await body_by_chunks(reader)
            else:
                await body_by_length(reader, int(headers.get(b"content-length", b"0")))
            writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, limit=1 << 16)
    async with server:
        await asyncio.sleep(float(os.environ.get("LIFETIME", "600")))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
