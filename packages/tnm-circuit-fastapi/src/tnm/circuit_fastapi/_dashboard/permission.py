"""Whether a request passes the user's ``authorize`` dependency, asked without refusing it.

The page shows its operator forms only to a request that ``authorize`` lets through: a
visitor it would refuse sees the read-only page rather than buttons that answer 401. To ask
without failing the page, ``softened`` rebuilds the dependency with the same parameters (so
FastAPI resolves its sub-dependencies, security schemes included, exactly as for the
operator routes), each sub-dependency softened too: an ``HTTPException`` anywhere in the
tree makes the answer "no" instead of an error response.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, params
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["allowed_by", "dependency_of", "softened"]

_REFUSED = (HTTPException, StarletteHTTPException)


class _Denied:
    """What a softened dependency returns for a request its original would refuse."""


DENIED = _Denied()


def dependency_of(authorize: Any) -> Callable[..., Any]:
    """The callable behind ``authorize`` (given bare, or as ``Depends(...)``)."""
    call = authorize.dependency if isinstance(authorize, params.Depends) else authorize
    if not callable(call):
        raise TypeError(f"not a dependency: {authorize!r}")
    return call


def _soft_marker(marker: params.Depends) -> params.Depends:
    if marker.dependency is None:  # Depends() on a class-typed parameter: leave it to FastAPI
        return marker
    soft = softened(marker.dependency)
    if dataclasses.is_dataclass(marker):  # FastAPI's newer markers
        return dataclasses.replace(marker, dependency=soft)
    marker = copy.copy(marker)
    marker.dependency = soft
    return marker


def _signature(call: Callable[..., Any]) -> inspect.Signature:
    """``call``'s signature with its annotations evaluated, as FastAPI reads it."""
    try:
        return inspect.signature(call, eval_str=True)
    except NameError:  # names only known to a type checker: FastAPI keeps them as written too
        return inspect.signature(call)


def _soft_parameter(param: inspect.Parameter) -> inspect.Parameter:
    annotation = param.annotation
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        extras = [_soft_marker(e) if isinstance(e, params.Depends) else e for e in extras]
        arguments = (base, *extras)
        annotation = Annotated[arguments]
    default = param.default
    if isinstance(default, params.Depends):
        default = _soft_marker(default)
    return param.replace(annotation=annotation, default=default)


def softened(call: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``call`` as a dependency that returns ``DENIED`` where ``call`` (or a sub-dependency)
    raises an ``HTTPException``; otherwise what ``call`` returns.

    A generator dependency is used as it is (its clean-up needs FastAPI's own handling).
    """
    if inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call):
        return call
    signature = _signature(call)
    is_async = inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004
    )

    async def soft(**kwargs: Any) -> Any:
        if any(value is DENIED for value in kwargs.values()):
            return DENIED
        try:
            if is_async:
                return await call(**kwargs)
            return await run_in_threadpool(call, **kwargs)
        except _REFUSED:
            return DENIED

    soft.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[_soft_parameter(p) for p in signature.parameters.values()],
        return_annotation=Any,
    )
    return soft


def allowed_by(authorize: Any) -> Callable[..., Awaitable[bool]]:
    """A dependency answering whether the request passes ``authorize`` (never refusing it)."""
    soft = softened(dependency_of(authorize))

    async def allowed(result: Any = Depends(soft)) -> bool:  # noqa: B008 - FastAPI's idiom
        return result is not DENIED

    return allowed
