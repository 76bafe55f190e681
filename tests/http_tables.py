"""Tables the HTTP client adapters' option tests share: the same options and URLs mean the same
thing to the httpx, requests and aiohttp adapters (each test file adds its client's own rows)."""

from __future__ import annotations

# Options every HTTP adapter refuses at construction, and the field its InvalidConfigError names.
BAD_OPTIONS: list[tuple[dict[str, object], str]] = [
    ({"service": 42}, "service"),
    ({"service": ""}, "service"),
    ({"failure_statuses": "500"}, "failure_statuses"),
    ({"failure_statuses": [500, "502"]}, "failure_statuses"),
    ({"failure_statuses": [700]}, "failure_statuses"),
]

# A URL and the service name (host:port, the scheme's port filled in) every HTTP adapter gives it.
AUTHORITIES: list[tuple[str, str]] = [
    ("https://api.example.com/v1/orders?x=1", "api.example.com:443"),
    ("http://api.example.com/", "api.example.com:80"),
    ("https://api.example.com:8443/", "api.example.com:8443"),
    ("http://API.Example.COM:80/", "api.example.com:80"),
    ("http://[::1]:8080/", "[::1]:8080"),
]
