"""Counting a response body that fails after its headers arrived.

The circuit records the outcome when ``HTTPAdapter.send`` returns, at the headers; requests
reads the body afterwards (at once, or as you iterate with ``stream=True``). A body that
breaks off (a connection reset, a read timeout, a broken chunked encoding) is the upstream
failing too, so it is counted then, and the error still reaches you unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import requests
from requests.exceptions import ChunkedEncodingError, ContentDecodingError

from tnm.circuit import CircuitBreaker

__all__ = ["watch_body"]

logger = logging.getLogger("tnm.circuit")

BODY_FAILURES = (ChunkedEncodingError, ContentDecodingError, requests.ConnectionError)
"""What requests raises when the body breaks off (a read timeout while streaming is a
``requests.ConnectionError``)."""


def watch_body(response: requests.Response, breaker: CircuitBreaker, service: str) -> None:
    """Make a failure while reading ``response``'s body count on ``service``'s circuit."""
    iter_content = response.iter_content

    def watched(chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[Any]:
        return _counted(iter_content(chunk_size, decode_unicode), breaker, service)

    response.iter_content = watched  # type: ignore[method-assign]


def _counted(chunks: Iterator[Any], breaker: CircuitBreaker, service: str) -> Iterator[Any]:
    try:
        yield from chunks
    except BODY_FAILURES as exc:
        try:
            breaker.record_failure(service, f"{type(exc).__name__}: {exc}")
        except Exception:
            logger.exception("tnm-circuit could not record an outcome for %r", service)
        raise
