"""examples/requests_client.py works as its docstring says."""

from __future__ import annotations

import pytest

from examples import requests_client


@pytest.mark.slow
def test_example_opens_refuses_and_recovers(capsys: pytest.CaptureFixture[str]) -> None:
    """Three 503s open the circuit, two requests are refused unsent, and after the open time
    (held one second by the server's Retry-After) a successful trial closes it."""
    requests_client.main()
    out = capsys.readouterr().out
    assert out.count("HTTP 503") == 3
    assert out.count("refused, not sent") == 2
    assert "The upstream received 3 of the 5 requests." in out
    assert "trial request: HTTP 200" in out
    assert out.rstrip().endswith("Final state: closed")
