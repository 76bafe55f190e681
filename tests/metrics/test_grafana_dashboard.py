"""docs/grafana/tnm-circuit.json queries only series, labels and values that PrometheusMetrics exports."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy
from tnm.circuit.metrics import PrometheusMetrics
from tnm.circuit.testing import ManualClock

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "tnm-circuit.json"

# PromQL words that are not metric names (functions, aggregations, keywords) and Grafana's variables.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "rate", "increase", "irate", "avg_over_time", "max_over_time", "sum_over_time", "and", "or", "unless",
    "offset", "bool", "label_values",
}  # fmt: skip
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")

Scrape = dict[str, dict[str, set[str]]]
"""Sample name -> label name -> values seen."""


def scrape_after_traffic() -> Scrape:
    """Drive a breaker through every outcome and state change, then scrape a real registry."""
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=2, open_seconds=5))
    registry = CollectorRegistry()
    PrometheusMetrics(breaker, registry=registry)

    def fail() -> None:
        raise ConnectionError("down")

    breaker.execute("payments", lambda: 1)
    with pytest.raises(KeyError):
        breaker.execute("payments", lambda: {}["x"], ignore_exceptions=[KeyError])
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.execute("payments", fail)
    with pytest.raises(CircuitOpenError):
        breaker.execute("payments", lambda: 1)
    assert breaker.execute("payments", lambda: 1, fallback=lambda: 0) == 0
    clock.advance(5)
    breaker.execute("payments", lambda: 1)  # half-open trial closes it
    breaker.force_open("ledger", "maintenance")

    seen: Scrape = defaultdict(lambda: defaultdict(set))
    add_samples(seen, registry)
    return seen


def add_samples(seen: Scrape, registry: CollectorRegistry) -> None:
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = seen[sample.name]
            for name, value in sample.labels.items():
                labels[name].add(value)


def scrape_fleet(redis_url: str) -> Scrape:
    """A Redis breaker isolated from its fleet (the series only a shared store has)."""
    policy = ServicePolicy(max_failures=2, min_failing_processes=2)
    sick, other = (
        CircuitBreaker("redis", redis_url=redis_url, namespace="grafana", default_policy=policy)
        for _ in range(2)
    )
    registry = CollectorRegistry()
    PrometheusMetrics(sick, registry=registry)
    seen: Scrape = defaultdict(lambda: defaultdict(set))
    try:
        other.execute("payments", lambda: 1)

        def fail() -> None:
            raise ConnectionError("down")

        for _ in range(2):
            with pytest.raises(ConnectionError):
                sick.execute("payments", fail)
        add_samples(seen, registry)
    finally:
        sick.close()
        other.close()
    return seen


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query


def metric_names(expr: str) -> set[str]:
    """Metric names in ``expr``: identifiers outside strings, matchers, groupings and ranges."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", " ", bare)
    bare = GROUPING.sub(" ", bare)
    bare = re.sub(r"label_values\s*\(([^,]*),[^)]*\)", r"\1", bare)
    words = set(re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
    return words - PROMQL_WORDS


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture
def scraped(redis_url: str) -> Scrape:
    seen = scrape_after_traffic()
    for name, labels in scrape_fleet(redis_url).items():
        for label, values in labels.items():
            seen[name][label] |= values
    return seen


class TestDashboardQueries:
    def test_every_metric_name_is_exported(self, dashboard: dict[str, Any], scraped: Scrape) -> None:
        """Each metric a panel or variable queries is one the exporter produced after traffic."""
        used: set[str] = set()
        for where, expr in queries(dashboard):
            names = metric_names(expr)
            assert names, f"{where}: no metric found in {expr!r}"
            assert names <= set(scraped), f"{where}: {sorted(names - set(scraped))} not exported"
            used |= names
        assert used == {
            "tnm_circuit_calls_total",
            "tnm_circuit_state",
            "tnm_circuit_transitions_total",
            "tnm_circuit_last_opened_timestamp_seconds",
            "tnm_circuit_storage_degraded",
            "tnm_circuit_storage_degradations_total",
            "tnm_circuit_failing_processes",
        }

    def test_every_label_and_value_is_exported(self, dashboard: dict[str, Any], scraped: Scrape) -> None:
        """Matchers name real labels of their metric, and literal values the exporter really writes."""
        for where, expr in queries(dashboard):
            for metric, matchers in SELECTOR.findall(expr):
                labels = scraped[metric]
                for label, op, value in MATCHER.findall(matchers):
                    assert label in labels, f"{where}: {metric} has no label {label!r}"
                    if op in ("=", "=~") and "$" not in value:
                        for alternative in value.split("|"):
                            assert alternative in labels[label], (
                                f"{where}: {metric}{{{label}={alternative!r}}}"
                            )
            for grouping in GROUPING.findall(expr):
                for label in filter(None, (name.strip() for name in grouping.split(","))):
                    assert any(label in scraped[m] for m in metric_names(expr)), f"{where}: by {label!r}"

    def test_variables_name_real_labels(self, dashboard: dict[str, Any], scraped: Scrape) -> None:
        """label_values(metric, label) in the variables names a label the metric carries."""
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            found = re.search(
                r"label_values\(\s*([a-zA-Z_:][\w:]*)[^,]*,\s*(\w+)\s*\)", variable["definition"]
            )
            assert found, variable["name"]
            assert found[2] in scraped[found[1]], variable["name"]


class TestDashboardShape:
    def test_importable(self, dashboard: dict[str, Any]) -> None:
        """A complete dashboard: no fixed id, unique panel ids, each panel placed and on the chosen source."""
        assert dashboard["id"] is None
        assert dashboard["uid"] == "tnm-circuit"
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for panel in dashboard["panels"]:
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["description"], panel["title"]

    def test_all_values_match_empty_namespaces(self, dashboard: dict[str, Any]) -> None:
        """'All' in the variables matches everything, including the local backend's empty namespace."""
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert (variable["includeAll"], variable["allValue"]) == (True, ".*"), variable["name"]
