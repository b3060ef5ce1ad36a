"""Requests that a sleeping namespace holds, for benches/proxy.sh.

    hold.py h1 PORT REQUESTS BODY          one HTTP/1.1 request per connection
    hold.py h2 PORT REQUESTS STREAMS BODY  HTTP/2 by prior knowledge, STREAMS per connection

Request k goes to host held{k % 10}.bench.test. With BODY > 0, an HTTP/1.1
request says `Content-Length: BODY` and writes the whole body at once (what
the kernel does not take stays queued here); an HTTP/2 stream says
`content-length: BODY` and sends DATA as far as the proxy's flow-control
windows allow, up to BODY bytes, never END_STREAM. Prints `sent` once every
request is out, then keeps every connection open; at SIGTERM (or after
LIFETIME seconds, default 300) prints what was sent and what was answered,
and exits. Only ever connects to 127.0.0.1.
"""
import asyncio
import os
import signal
import struct
import sys

HOST = "127.0.0.1"
LIFETIME = float(os.environ.get("LIFETIME", "300"))
tasks = []  # every reader, kept referenced while it waits
stats = {"connections": 0, "requests": 0, "body_bytes": 0, "answered": 0, "closed": 0, "refused_streams": 0}


def host(k):
    return f"held{k % 10}.bench.test"


async def open_all(port, n, start):
    """`n` connections, paced (500 then a pause) so the accept queue keeps up;
    `start(i, reader, writer)` sends on each as it opens."""
    conns = []
    for i in range(n):
        reader, writer = await asyncio.open_connection(HOST, port)
        stats["connections"] += 1
        conns.append(writer)
        await start(i, reader, writer)
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    return conns


# HTTP/1.1

async def h1_answer(reader):
    line = await reader.readline()
    stats["answered" if line else "closed"] += 1


async def h1(port, requests, body):
    """Returns a function giving the body bytes the kernel took so far."""
    async def start(k, reader, writer):
        head = f"{'POST' if body else 'GET'} /held HTTP/1.1\r\nHost: {host(k)}\r\nAccept: */*\r\n"
        if body:
            head += f"Content-Length: {body}\r\n"
        writer.write(head.encode() + b"\r\n" + b"x" * body)
        stats["requests"] += 1
        tasks.append(asyncio.ensure_future(h1_answer(reader)))

    conns = await open_all(port, requests, start)
    return lambda: sum(body - w.transport.get_write_buffer_size() for w in conns) if body else 0


# HTTP/2: just enough of RFC 9113 to open streams and keep them open.

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix, first=0):
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def hpack_literal(index, value):
    """A literal without indexing, its name from the static table."""
    v = value.encode()
    return hpack_int(index, 4) + hpack_int(len(v), 7) + v


def request_block(k, body):
    block = bytes([0x83 if body else 0x82, 0x86])  # :method POST|GET, :scheme http
    block += hpack_literal(4, "/held") + hpack_literal(1, host(k))  # :path, :authority
    if body:
        block += hpack_literal(28, str(body))  # content-length
    return block


class H2:
    """One connection: its streams, the send windows and what each may still send."""

    def __init__(self, reader, writer, body):
        self.reader, self.writer, self.body = reader, writer, body
        self.conn_window, self.stream_initial, self.max_frame = 65535, 65535, 16384
        self.windows, self.unsent = {}, {}

    async def handshake(self):
        self.writer.write(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 2, 0)))  # no push
        while True:
            kind, flags, stream, payload = await self.read_frame()
            if kind == SETTINGS and not flags & ACK:
                self.settings(payload)
                return

    def settings(self, payload):
        for i in range(0, len(payload), 6):
            key, value = struct.unpack(">HI", payload[i:i + 6])
            if key == 4:  # INITIAL_WINDOW_SIZE
                for s in self.windows:
                    self.windows[s] += value - self.stream_initial
                self.stream_initial = value
            elif key == 5:  # MAX_FRAME_SIZE
                self.max_frame = value
        self.writer.write(frame(SETTINGS, ACK, 0))
        self.pump()

    async def read_frame(self):
        head = await self.reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, await self.reader.readexactly(length)

    def open(self, ks):
        for n, k in enumerate(ks):
            stream = 2 * n + 1
            flags = END_HEADERS | (0 if self.body else END_STREAM)
            self.writer.write(frame(HEADERS, flags, stream, request_block(k, self.body)))
            self.windows[stream], self.unsent[stream] = self.stream_initial, self.body
            stats["requests"] += 1
        self.pump()

    def pump(self):
        """Send DATA on every stream, in turn, as far as the windows allow."""
        for stream, left in self.unsent.items():
            while left and self.conn_window > 0 and self.windows[stream] > 0:
                n = min(left, self.conn_window, self.windows[stream], self.max_frame)
                self.writer.write(frame(DATA, 0, stream, b"x" * n))
                left, self.conn_window, self.windows[stream] = left - n, self.conn_window - n, self.windows[stream] - n
                stats["body_bytes"] += n
            self.unsent[stream] = left

    async def serve(self):
        """Answer what the peer needs answered until it closes; count answers."""
        try:
            while True:
                kind, flags, stream, payload = await self.read_frame()
                if kind == SETTINGS and not flags & ACK:
                    self.settings(payload)
                elif kind == PING and not flags & ACK:
                    self.writer.write(frame(PING, ACK, 0, payload))
                elif kind == WINDOW_UPDATE:
                    inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
                    if stream == 0:
                        self.conn_window += inc
                    elif stream in self.windows:
                        self.windows[stream] += inc
                    self.pump()
                elif kind == HEADERS:
                    stats["answered"] += 1
                    self.unsent.pop(stream, None)
                elif kind == RST_STREAM:
                    stats["refused_streams"] += 1
                    self.unsent.pop(stream, None)
                elif kind == GOAWAY:
                    stats["closed"] += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            stats["closed"] += 1


async def h2(port, requests, streams, body):
    async def start(i, reader, writer):
        c = H2(reader, writer, body)
        await c.handshake()
        c.open(range(i * streams, min(requests, (i + 1) * streams)))
        tasks.append(asyncio.ensure_future(c.serve()))

    await open_all(port, -(-requests // streams), start)
    return lambda: stats["body_bytes"]


async def main(mode, port, requests, *rest):
    sent = await (h1 if mode == "h1" else h2)(port, requests, *rest)
    print("sent", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), LIFETIME)
    except asyncio.TimeoutError:
        pass
    stats["body_bytes"] = sent()
    print(" ".join(f"{k}={v}" for k, v in stats.items()), flush=True)
    os._exit(0)  # without closing 10,000 connections one by one


asyncio.run(main(sys.argv[1], *map(int, sys.argv[2:])))
