"""examples/grpc_client.py works as its docstring says."""

from __future__ import annotations

import pytest

from examples import grpc_client


@pytest.mark.slow
def test_example_opens_refuses_and_recovers(capsys: pytest.CaptureFixture[str]) -> None:
    """Three UNAVAILABLE calls open the circuit, two calls are refused unsent, and after the open
    time a successful trial closes it."""
    grpc_client.main()
    out = capsys.readouterr().out
    assert out.count("failed (UNAVAILABLE)") == 3
    assert out.count("refused, not sent") == 2
    assert "The service received 3 of the 5 calls." in out
    assert "trial call: OK" in out
    assert out.rstrip().endswith("Final state: closed")
