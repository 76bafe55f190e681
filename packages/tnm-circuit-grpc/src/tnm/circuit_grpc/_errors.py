"""The one error the interceptors add::

    grpc.aio.AioRpcError (a grpc.RpcError)        tnm.circuit.CircuitOpenError
                        \\                                /
                         CircuitOpenRpcError        the call failed with UNAVAILABLE, never sent

Everything else reaching the caller (responses, gRPC's own errors) is gRPC's, unchanged.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from grpc.aio import AioRpcError, Metadata

from tnm.circuit import CircuitOpenError

__all__ = ["CircuitOpenRpcError"]


class CircuitOpenRpcError(AioRpcError, grpc.Call, grpc.Future, CircuitOpenError):  # type: ignore[misc,type-arg]
    """The target's circuit is open: the call failed without touching the network.

    It is a ``grpc.RpcError`` whose ``code()`` is ``grpc.StatusCode.UNAVAILABLE`` and whose
    ``details()`` is the circuit's message, so code that already handles an unavailable
    server (``except grpc.RpcError as e: if e.code() == grpc.StatusCode.UNAVAILABLE``,
    retry policies) handles it too; on a ``grpc.aio`` channel it is the ``AioRpcError`` the
    call raises. It is also a ``tnm.circuit.CircuitOpenError`` with ``.service``,
    ``.retry_after`` (seconds until a trial call may go, ``None`` while an operator holds
    the circuit open) and ``.last_failure``. On a sync channel it stands for the refused call
    as gRPC's own failed calls do (a ``grpc.Call`` and ``grpc.Future`` whose ``result()``
    raises it; iterating a refused stream raises it).
    """

    def __init__(self, service: str, /, *fields: Any) -> None:
        """``service`` and ``fields`` are CircuitOpenError's, positional (``retry_after``, ...)."""
        fields = (service, *fields)
        self.args = fields  # CircuitOpenError reads its fields here: the message below needs them
        AioRpcError.__init__(
            self, grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(), CircuitOpenError.__str__(self)
        )
        self.args = fields  # (and pickles them)

    __str__ = CircuitOpenError.__str__

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args)

    @classmethod
    def from_open_error(cls, error: CircuitOpenError) -> CircuitOpenRpcError:
        """The refusal carrying ``error``'s circuit fields (``error`` is its ``__cause__``)."""
        refusal = cls(*error.args)
        refusal.__cause__ = error
        return refusal

    # -- grpc.Call and grpc.Future, as gRPC's own failed calls (sync channels) ----------------

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> NoReturn:
        raise self

    def exception(self, timeout: float | None = None) -> CircuitOpenRpcError:
        return self

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        return self.__traceback__

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def __iter__(self) -> CircuitOpenRpcError:
        return self

    def __next__(self) -> NoReturn:
        raise self

    def next(self) -> NoReturn:
        raise self
