"""A real gRPC server for the interceptor tests: ``grpc.server`` on a free loopback port, with a tiny
service defined without protoc (bytes in, bytes out).

``/echo.Echo/Unary`` answers ``b"ok"`` with ``b"ok"``; ``b"code:NAME"`` fails with that status
code; ``b"stall"`` never answers (until the client gives up). ``/echo.Echo/Stream`` (unary-stream)
sends ``b"0"``, ``b"1"``... as many messages as the request's number, then fails with UNAVAILABLE
if the request ends with ``b",fail"``. ``/echo.Echo/Collect`` (stream-unary) joins the messages,
failing with UNAVAILABLE on a ``b"fail"`` message; ``/echo.Echo/Chat`` (stream-stream) echoes
each message, failing likewise. Every call is counted by method as it arrives.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc

SERVICE = "echo.Echo"
WAIT = 20.0  # the most a stalled call waits


class EchoServer:
    def __init__(self) -> None:
        self._hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Stream": grpc.unary_stream_rpc_method_handler(self._stream),
            "Collect": grpc.stream_unary_rpc_method_handler(self._collect),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._stop.set()
        self._server.stop(grace=None).wait(10)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def hits(self, method: str | None = None) -> int:
        with self._lock:
            return self._hits[method] if method else sum(self._hits.values())

    def _hit(self, method: str) -> None:
        with self._lock:
            self._hits[method] += 1

    # -- the service, on the server's threads ------------------------------------------------

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._hit("Unary")
        if request.startswith(b"code:"):
            context.abort(grpc.StatusCode[request[5:].decode()], "asked to fail")
        if request == b"stall":  # until the client gives up (bounded)
            for _ in range(int(WAIT / 0.05)):
                if not context.is_active() or self._stop.wait(0.05):
                    break
        return request

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._hit("Stream")
        count, _, fail = request.partition(b",")
        for n in range(int(count)):
            yield str(n).encode()
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "stream broke")

    def _collect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._hit("Collect")
        seen = []
        for message in requests:
            if message == b"fail":
                context.abort(grpc.StatusCode.UNAVAILABLE, "collect broke")
            seen.append(message)
        return b",".join(seen)

    def _chat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._hit("Chat")
        for message in requests:
            if message == b"fail":
                context.abort(grpc.StatusCode.UNAVAILABLE, "chat broke")
            yield message
