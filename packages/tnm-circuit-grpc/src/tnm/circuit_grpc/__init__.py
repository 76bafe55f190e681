"""tnm.circuit_grpc: a circuit per target for every gRPC channel, as client interceptors.

channel = grpc.intercept_channel(grpc.insecure_channel(target),
                                 CircuitBreakerInterceptor(breaker, target=target))
channel = grpc.aio.insecure_channel(target, interceptors=aio_interceptors(breaker, target=target))

Each target gets its own circuit (or each method, with ``per_method=True``). While it is
open, calls fail at once with ``CircuitOpenRpcError`` (a ``grpc.RpcError`` with status
UNAVAILABLE and a ``tnm.circuit.CircuitOpenError``) without being sent.
"""

from ._aio import aio_interceptors
from ._errors import CircuitOpenRpcError
from ._interceptor import CircuitBreakerInterceptor
from ._options import DEFAULT_FAILURE_CODES

CircuitBreakerInterceptor.__module__ = __name__
CircuitOpenRpcError.__module__ = __name__
aio_interceptors.__module__ = __name__

__all__ = [
    "DEFAULT_FAILURE_CODES",
    "CircuitBreakerInterceptor",
    "CircuitOpenRpcError",
    "aio_interceptors",
]
