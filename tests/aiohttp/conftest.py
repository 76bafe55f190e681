"""Fixtures for the aiohttp middleware tests: the real uvicorn upstreams of the requests tests."""

from __future__ import annotations

from ..requests.conftest import _upstreams, other_upstream, refused_url, upstream

__all__ = ["_upstreams", "other_upstream", "refused_url", "upstream"]
