"""examples/fastapi_app.py works as its docstring says."""

from __future__ import annotations

from fastapi.testclient import TestClient

from examples.fastapi_app import app, breaker


def test_example_app_opens_and_answers_503() -> None:
    """During a simulated outage, three failed searches open the circuit; then 503."""
    breaker.reset("elasticsearch")
    with TestClient(app) as client:
        assert client.get("/search", params={"q": "x"}).json() == {"hits": ["x"]}
        client.post("/simulate/outage", params={"down": True})
        statuses = [client.get("/search", params={"q": "x"}).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 503, 503]  # failures are answered as degraded results
        client.post("/simulate/outage", params={"down": False})
        assert client.post("/sync-update", json={"a": 1}).json() == {"updated": {"a": 1}}
        circuits = {c["service"]: c["state"] for c in client.get("/health/circuits").json()}
        assert circuits["elasticsearch"] == "open"
