"""/openapi.json: a valid OpenAPI 3.1 document, every route described, and real responses of
every JSON route (with a device, decisions, a checkpoint and memory rows present) validate
against their schemas."""
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from becomingone.http.api import ROUTES
from shared import protocol as P
from tests.http_helpers import Host, witness
from tests.test_coordinator import tel, wait


def _validator(doc, name):
    return Draft202012Validator({"$ref": "#/components/schemas/" + name,
                                 "components": doc["components"]})


def test_every_route_is_described_and_real_responses_validate(tmp_path):
    h = Host(tmp_path)
    try:
        doc = h.get("/openapi.json")
        validate(doc)                                     # raises on an invalid document
        described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        routes = {(r.method, r.path) for r in ROUTES}
        assert routes <= described, routes - described
        assert described - routes == {("GET", "/")}       # the dashboard page
        for r in ROUTES:
            op = doc["paths"][r.path][r.method.lower()]
            assert op["summary"] and "200" in op["responses"], r.path
            for name in re.findall(r"\{(\w+)\}", r.path):
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"])

        # data for every route: a device with telemetry, decisions, a checkpoint, memory rows
        dev = h.device(17, beats=30)
        dev.send(P.WITNESS, witness(1, P.DECISION_ALERT))
        dev.recv(P.ACK)
        beat = [30]

        def more():
            for _ in range(20):
                beat[0] += 1
                dev.send(P.TELEMETRY, tel(beat[0]))
            # a snapshot's rows and its signature may land in two commits: wait for both
            return all(h.get("/api/memory/tables/%s?device=17&limit=1" % t)["rows"]
                       for t in ("snapshots", "signatures"))
        assert wait(more, 15)
        h.c.call(h.c.ledger.checkpoint)
        urls = {
            "/api/devices/{device}": "/api/devices/17",
            "/api/devices/{device}/windows": "/api/devices/17/windows",
            "/api/devices/{device}/config": "/api/devices/17/config",
            "/api/ledger/entries/{index}": "/api/ledger/entries/1",
            "/api/memory/tables/{table}": "/api/memory/tables/coherence?limit=3",
            "/api/memory/reconstruct": "/api/memory/reconstruct?device=17",
            "/api/memory/similar": "/api/memory/similar?device=17",
        }
        bodies = {"/api/devices/{device}/config": {"changes": {"telemetry_every": 2}},
                  "/api/devices/{device}/goto": {"version": 0},
                  "/api/devices/{device}/pow": {"bits": 12},
                  "/api/model": {"w": 0.2, "b": 0.0}}
        order = ["/api/devices/{device}/config", "/api/devices/{device}/undo",
                 "/api/devices/{device}/redo", "/api/devices/{device}/goto"]
        checked = set()
        posts = sorted((r for r in ROUTES if r.method == "POST"),
                       key=lambda r: order.index(r.path) if r.path in order else -1)
        for r in [r for r in ROUTES if r.method == "GET"] + posts:
            if r.response is None:
                continue
            url = urls.get(r.path, r.path).replace("{device}", "17")
            if r.method == "GET":
                status, body, _ = h.request(url)
            else:
                status, body, _ = h.request(url, method="POST", body=bodies.get(r.path, {}))
            assert status == 200, (r.method, url, body)
            errors = sorted(_validator(doc, r.response).iter_errors(body), key=str)
            assert not errors, (r.method, r.path, [e.message for e in errors[:3]])
            if r.body is not None and r.path in bodies:
                assert not list(_validator(doc, r.body).iter_errors(bodies[r.path]))
            checked.add((r.method, r.path))
        assert checked == {(r.method, r.path) for r in ROUTES if r.response is not None}
        # an error response has the documented shape too
        status, body, _ = h.request("/api/devices/99")
        assert status == 404 and not list(_validator(doc, "Error").iter_errors(body))
        # and a schema catches a wrong response (the check can fail)
        bad = h.get("/api/devices")
        bad["devices"][0]["telemetry"]["decision"] = "PANIC"
        assert list(_validator(doc, "DeviceList").iter_errors(bad))
    finally:
        h.stop()


@pytest.mark.parametrize("name", ["Snapshot", "Status", "DeviceDetail"])
def test_schema_names_exist(name):
    from becomingone.http.openapi import SCHEMAS
    assert name in SCHEMAS
