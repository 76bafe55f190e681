"""Fixtures for the aiohttp middleware tests: two real upstreams and a refused port."""

from __future__ import annotations

from ..upstream_fixtures import _upstreams, other_upstream, refused_url, upstream

__all__ = ["_upstreams", "other_upstream", "refused_url", "upstream"]
