"""``GET /openapi.json`` describes every route the node serves, and a fuzzer driven by that document
(schemathesis, valid and invalid inputs, bounded in examples and time) finds no 500 on a real node."""

from __future__ import annotations

import re
import time
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ledger.node.api import QUERY_PARAMETERS, ROUTES
from ledger.node.openapi import document
from tests.test_http import LimitedNode
from tests.test_node import ROOT, cookie_header, make_home, request, signed

EXAMPLES_PER_OPERATION = 25
"""Per route and mode; 15 operations × 2 modes × 25 keeps the run near a minute."""

TIME_BUDGET = 240.0
"""Seconds the fuzzing may take at most; it stops early rather than run on."""


def test_the_document_lists_exactly_the_routes_served() -> None:
    documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item}
    assert documented == {(method, path) for method, path, _ in ROUTES}
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert {"200", "400", "403", "404", "405", "408", "431", "503"} <= codes, (method, path)
            if method == "post":
                assert {"413"} <= codes
    assert "401" in document()["paths"]["/forge"]["post"]["responses"]


def test_the_document_lists_the_query_parameters_each_route_reads() -> None:
    """The node refuses any other (400), so the document must name exactly these."""
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert names == set(QUERY_PARAMETERS.get(path, ()) if method == "get" else ()), (method, path)


def test_the_readme_names_only_statuses_the_node_answers() -> None:
    """The README said a chunked body gets 411; the node reads chunked bodies (tests/test_node.py)."""
    text = " ".join((ROOT / "README.md").read_text().split())
    listed = re.search(r"Errors are `\{\"error\": message, \"type\": ErrorClassName\}`: (.*?)\. ", text)
    assert listed is not None
    statuses = set(re.findall(r"\b([45]\d\d) ", listed.group(1)))
    answered = {code for item in document()["paths"].values() for op in item.values() for code in op["responses"]}
    assert statuses and statuses <= answered, statuses - answered


def test_the_node_serves_the_document(tmp_path: Path) -> None:
    setup = make_home(tmp_path)
    node = LimitedNode(setup.home).wait_ready()
    try:
        status, served = request(node.port, "GET", "/openapi.json")
        assert status == 200 and served == document()
    finally:
        node.kill()


def test_fuzzing_from_the_document_finds_no_server_error(tmp_path: Path) -> None:
    setup = make_home(tmp_path)
    node = LimitedNode(setup.home).wait_ready()
    try:
        alice, bob = setup.users[0], setup.users[1]
        assert request(node.port, "POST", "/txs", signed(alice, 0, "transfer", to=bob.address, amount=1).encode())[0] == 200
        schema = schemathesis.openapi.from_url(f"{node.url}/openapi.json")
        started = time.monotonic()
        failures: list[str] = []
        calls = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if time.monotonic() - started > TIME_BUDGET:
                    break

                @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    nonlocal calls
                    if time.monotonic() - started > TIME_BUDGET:
                        return
                    headers = dict(cookie_header(setup.home)) if operation.path == "/forge" and calls % 2 else {}
                    response = case.call(base_url=node.url, headers=headers, timeout=10)
                    calls += 1
                    if response.status_code >= 500 and response.status_code != 503:
                        failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")
                    if response.status_code >= 400:
                        body = response.json()
                        assert isinstance(body, dict) and body.get("error") and body.get("type"), response.text[:200]

                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # a route with no input has no invalid input
        assert failures == []
        assert calls > 100
        assert node.proc.poll() is None and request(node.port, "GET", "/status")[0] == 200
    finally:
        node.kill()
