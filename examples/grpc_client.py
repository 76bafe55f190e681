"""gRPC with a circuit per target: a flaky inventory service through closed -> open -> half-open -> closed.

Run with:  uv run python examples/grpc_client.py
Takes about a second. The inventory service is a small grpc.server on 127.0.0.1 started by this
script (bytes in, bytes out, so no generated code is needed); in your app, intercept the channel
your generated stubs already use. For grpc.aio channels, pass
``interceptors=aio_interceptors(breaker, target=target)`` to ``grpc.aio.insecure_channel``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from tnm.circuit import CircuitBreaker, CircuitEvent, EventKind, ServicePolicy
from tnm.circuit_grpc import CircuitBreakerInterceptor, CircuitOpenRpcError

upstream = {"healthy": False, "received": 0}


def stock(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Stands in for the real inventory service: UNAVAILABLE until it is healthy again."""
    upstream["received"] += 1
    if not upstream["healthy"]:
        context.abort(grpc.StatusCode.UNAVAILABLE, "down for maintenance")
    return b'{"sku": "sku-1", "stock": 12}'


def start_server() -> tuple[grpc.Server, str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handlers = {"Stock": grpc.unary_unary_rpc_method_handler(stock)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("inventory.Inventory", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def attempt(get_stock: grpc.UnaryUnaryMultiCallable, label: str) -> None:
    try:
        reply = get_stock(b"sku-1", timeout=5)
    except CircuitOpenRpcError as exc:  # a grpc.RpcError with code() UNAVAILABLE too
        print(f"{label}: refused, not sent ({exc.retry_after:.2f}s until a trial)")
    except grpc.RpcError as exc:
        print(f"{label}: failed ({exc.code().name})")  # type: ignore[attr-defined]
    else:
        print(f"{label}: OK {reply.decode()}")


def show(event: CircuitEvent) -> None:
    if event.kind is EventKind.STATE_CHANGE:
        print(f"  ** {event.service}: {event.previous_state} -> {event.state}")


def main() -> None:
    server, target = start_server()
    breaker = CircuitBreaker(
        default_policy=ServicePolicy(window_seconds=60, max_failures=5),
        service_policies={target: ServicePolicy(window_seconds=10, max_failures=3, open_seconds=0.5)},
    )
    breaker.add_listener(show)
    interceptor = CircuitBreakerInterceptor(breaker, target=target)  # the circuit is named target
    try:
        with grpc.intercept_channel(grpc.insecure_channel(target), interceptor) as channel:
            get_stock = channel.unary_unary("/inventory.Inventory/Stock")
            print("The service answers UNAVAILABLE:")
            for i in range(5):
                attempt(get_stock, f"  call {i + 1}")
            print(f"The service received {upstream['received']} of the 5 calls.")
            print("Waiting out the open time...")
            time.sleep(breaker.state(target).retry_after or 0)
            upstream["healthy"] = True
            print("The service is back:")
            attempt(get_stock, "  trial call")
            attempt(get_stock, "  next call")
        print(f"Final state: {breaker.state(target).state}")
    finally:
        server.stop(grace=None).wait(10)


if __name__ == "__main__":
    main()
