"""docs/rest-api.yaml stays in step with the routes the server serves (ryu_apps.rest.ROUTES) and documents,
for every operation, a success and the errors docs/rest-api.md lists for it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "rest-api.yaml"
SPEC = yaml.safe_load(DOC.read_text())

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ERROR_SCHEMA = "#/components/schemas/Error"

# From docs/rest-api.md: the routes that take a JSON body.
BODY_ROUTES = {
    ("POST", "/nlb/clusters"),
    ("PUT", "/nlb/clusters/{name}"),
    ("PUT", "/nlb/registry"),
    ("POST", "/nlb/clusters/{name}/members"),
    ("PATCH", "/nlb/clusters/{name}/members/{ip}"),
    ("PUT", "/nlb/switches/{dpid}"),
}
# The routes that wait for the switches (a change's barriers, flow-stats): 504 when one does not answer in time.
SWITCH_ROUTES = {
    ("POST", "/nlb/clusters"),
    ("PUT", "/nlb/clusters/{name}"),
    ("PUT", "/nlb/registry"),
    ("DELETE", "/nlb/clusters/{name}"),
    ("POST", "/nlb/clusters/{name}/members"),
    ("PATCH", "/nlb/clusters/{name}/members/{ip}"),
    ("DELETE", "/nlb/clusters/{name}/members/{ip}"),
    ("GET", "/nlb/flows"),
    ("POST", "/nlb/flows/reconcile"),
    ("PUT", "/nlb/switches/{dpid}"),
    ("DELETE", "/nlb/switches/{dpid}"),
}


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    """(METHOD, path template) -> operation object, for every operation under `paths`."""
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


OPERATIONS = operations(SPEC)
ROUTE_IDS = [f"{method} {path}" for method, path in OPERATIONS]


def resolve(node: dict) -> dict:
    """Follow a local $ref ("#/components/...") to the object it names."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used, got {ref}"
        node = SPEC
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def expected_errors(method: str, path: str) -> set[str]:
    """The error statuses docs/rest-api.md lists for a route (404 and 405 for unknown paths and methods
    apply to no documented operation; 500 to every one, 504 to those that wait for the switches)."""
    errors = {"401", "500"}
    if (method, path) in SWITCH_ROUTES:
        errors.add("504")
    if "{" in path:
        errors.add("404")
    if (method, path) in BODY_ROUTES:
        errors |= {"400", "413", "415"}
    if method in ("POST", "PUT", "PATCH") and path.startswith(("/nlb/clusters", "/nlb/registry", "/nlb/switches")):
        errors.add("409")
    if "{dpid}" in path:
        errors.add("400")  # a malformed dpid
    return errors


def test_doc_is_openapi_3():
    assert str(SPEC.get("openapi", "")).startswith("3."), f"{DOC.name} is not OpenAPI 3.x: {SPEC.get('openapi')!r}"
    assert SPEC["info"]["title"]
    assert SPEC["info"]["version"]


def test_documented_routes_are_the_served_routes():
    from ryu_apps import rest

    served = set(rest.ROUTES)
    assert len(served) == len(rest.ROUTES), f"ryu_apps.rest.ROUTES has duplicates: {rest.ROUTES}"
    documented = set(OPERATIONS)
    only_doc = sorted(documented - served)
    only_server = sorted(served - documented)
    assert not only_doc and not only_server, (
        f"{DOC.name} and ryu_apps.rest.ROUTES disagree\n"
        f"  only in the doc:    {only_doc}\n"
        f"  only in the server: {only_server}"
    )


@pytest.mark.parametrize(("method", "path"), list(OPERATIONS), ids=ROUTE_IDS)
def test_operation_documents_success_and_errors(method: str, path: str):
    operation = OPERATIONS[method, path]
    statuses = {str(status) for status in operation.get("responses", {})}
    assert any(re.fullmatch(r"2\d\d", status) for status in statuses), f"{method} {path}: no 2xx response"
    missing = expected_errors(method, path) - statuses
    assert not missing, f"{method} {path}: error responses not documented: {sorted(missing)}"


@pytest.mark.parametrize(("method", "path"), list(OPERATIONS), ids=ROUTE_IDS)
def test_request_body_only_where_the_prose_has_one(method: str, path: str):
    operation = OPERATIONS[method, path]
    has_body = "requestBody" in operation
    assert has_body == ((method, path) in BODY_ROUTES), f"{method} {path}: requestBody documented: {has_body}"
    if has_body:
        body = resolve(operation["requestBody"])
        assert body.get("required") is True, f"{method} {path}: the body is required"
        assert "application/json" in body["content"]


@pytest.mark.parametrize(("method", "path"), list(OPERATIONS), ids=ROUTE_IDS)
def test_path_parameters_are_declared(method: str, path: str):
    declared = [
        resolve(parameter)
        for parameter in SPEC["paths"][path].get("parameters", []) + OPERATIONS[method, path].get("parameters", [])
    ]
    in_path = {parameter["name"] for parameter in declared if parameter["in"] == "path"}
    assert in_path == set(re.findall(r"{(\w+)}", path)), f"{method} {path}: path parameters declared: {in_path}"


def test_error_responses_have_the_error_body():
    responses = [
        (f"{method} {path} {status}", response)
        for (method, path), operation in OPERATIONS.items()
        for status, response in operation["responses"].items()
        if str(status).startswith(("4", "5"))
    ]
    components = SPEC["components"]["responses"]
    responses += [(f"components.responses.{name}", response) for name, response in components.items()]
    for where, response in responses:
        schema = resolve(response)["content"]["application/json"]["schema"]
        assert schema == {"$ref": ERROR_SCHEMA}, f"{where}: body is not the Error schema"
    error = resolve({"$ref": ERROR_SCHEMA})
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["type"] == "string"
    assert {
        "BadRequest",
        "Unauthorized",
        "NotFound",
        "MethodNotAllowed",
        "Conflict",
        "InternalServerError",
        "GatewayTimeout",
        "Forbidden",
        "RequestTimeout",
        "LengthRequired",
        "PayloadTooLarge",
        "UriTooLong",
        "UnsupportedMediaType",
        "MisdirectedRequest",
        "RequestHeaderFieldsTooLarge",
        "ServiceUnavailable",
        "HttpVersionNotSupported",
    } <= set(components)


def input_mac_patterns() -> dict[str, str]:
    """The pattern of every MAC a request may carry, by where it is in the doc."""
    schemas = SPEC["components"]["schemas"]
    return {
        "ClusterCreate.cluster_mac": schemas["ClusterCreate"]["properties"]["cluster_mac"]["pattern"],
        "MemberCreate.mac": schemas["MemberCreate"]["properties"]["mac"]["pattern"],
        "MemberPatch.mac": schemas["MemberPatch"]["properties"]["mac"]["pattern"],
        "ClusterPut.cluster_mac": schemas["ClusterPut"]["properties"]["cluster_mac"]["pattern"],
        "ClusterEntry.cluster_mac": schemas["ClusterEntry"]["properties"]["cluster_mac"]["pattern"],
    }


MAC_CANDIDATES = [
    "02:de:0a:00:00:0b",
    "02-DE-0A-00-00-0B",
    "02:De:0a:00:00:0B",
    "02:de-0a:00:00:0b",  # mixed separators
    "02-de-0a-00-00:0b",
    "02de0a00000b",
    "02:de:0a:00:00",
    "02:de:0a:00:00:0b:0c",
    "02:de:0a:00:00:0g",
    "2:de:0a:00:00:0b",
    " 02:de:0a:00:00:0b",
    "02:de:0a:00:00:0b ",
    "02:de:0a:00:00:0b\n",
    "02.de.0a.00.00.0b",
    "",
]


@pytest.mark.parametrize("text", MAC_CANDIDATES)
def test_the_mac_pattern_accepts_exactly_what_the_server_accepts(text: str):
    """fullmatch with the anchors in the pattern behaves as an ECMA-262 (OpenAPI) pattern test: `$` cannot
    accept a trailing newline there."""
    from flows.addresses import AddressError, parse_mac

    try:
        parse_mac(text)
        accepted = True
    except AddressError:
        accepted = False
    for where, pattern in input_mac_patterns().items():
        assert bool(re.fullmatch(pattern, text)) == accepted, f"{where} and the server disagree on {text!r}"


def test_bearer_auth_applies_to_every_operation():
    schemes = SPEC["components"]["securitySchemes"].items()
    bearer = [name for name, scheme in schemes if scheme.get("type") == "http" and scheme.get("scheme") == "bearer"]
    assert bearer, "no http bearer security scheme"
    assert any(set(requirement) & set(bearer) for requirement in SPEC.get("security", [])), "bearer auth not global"
    for (method, path), operation in OPERATIONS.items():
        assert operation.get("security", SPEC["security"]) == SPEC["security"], f"{method} {path} overrides security"


def mismatches(value: object, schema: dict, where: str = "") -> list[str]:
    """Where value leaves what schema allows: types, required and unknown properties, items; enough of
    JSON Schema to hold the documented shapes to the served ones."""
    schema = resolve(schema)
    if value is None:
        return [] if schema.get("nullable") or not schema.get("type") else [f"{where}: null"]
    for part in schema.get("allOf", []):
        return mismatches(value, part, where)
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        properties = schema.get("properties", {})
        found = [f"{where}.{name}: required, missing" for name in schema.get("required", []) if name not in value]
        if schema.get("additionalProperties") is False:
            found += [f"{where}.{name}: not documented" for name in value if name not in properties]
        for name, item in value.items():
            if name in properties:
                found += mismatches(item, properties[name], f"{where}.{name}")
        return found
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        return [
            problem for i, item in enumerate(value) for problem in mismatches(item, schema["items"], f"{where}[{i}]")
        ]
    python_types = {"string": str, "integer": int, "boolean": bool, "number": (int, float)}
    if kind in python_types and not isinstance(value, python_types[kind]):
        return [f"{where}: not a {kind}: {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    return []


def test_the_bulk_answers_are_what_the_doc_says(tmp_path):
    """GET and PUT /nlb/registry (dry run and real) and PUT /nlb/clusters/{name}, as served, against the doc."""
    from tests.unit.test_rest import StandInController, call
    from tests.unit.test_rest_bulk import WANTED

    controller = StandInController(str(tmp_path / "state.yaml"))
    served = [
        ("GET", "/nlb/registry", None, "200"),
        ("PUT", "/nlb/registry?dry_run=1", WANTED, "200"),
        ("PUT", "/nlb/registry", WANTED, "200"),
        ("PUT", "/nlb/clusters/web", {"cluster_ip": "10.0.0.100", "members": [{"ip": "10.0.0.14"}]}, "200"),
        ("PUT", "/nlb/clusters/more", {"cluster_ip": "10.0.5.100", "members": [{"ip": "10.0.5.14"}]}, "201"),
        ("PUT", "/nlb/registry", {"clusters": [{"name": "x"}]}, "400"),
    ]
    for method, path, body, status in served:
        got_status, answer = call(controller, method, path, body)
        assert str(got_status) == status, (path, answer)
        template = "/nlb/clusters/{name}" if path.startswith("/nlb/clusters/") else path.split("?")[0]
        response = resolve(OPERATIONS[method, template]["responses"][status])
        problems = mismatches(answer, response["content"]["application/json"]["schema"])
        assert not problems, f"{method} {path}: {problems}"
    assert mismatches({"added": [], "extra": 1}, {"$ref": "#/components/schemas/Diff"}), "the check can fail"


def test_the_switch_answers_are_what_the_doc_says(tmp_path):
    """GET /nlb/switches, GET, PUT and DELETE /nlb/switches/{dpid}, as served, against the doc."""
    from tests.unit.test_rest import StandInController, call

    controller = StandInController(str(tmp_path / "state.db"))
    served = [
        ("GET", "/nlb/switches", None, "200"),
        ("GET", "/nlb/switches/0000000000000001", None, "200"),
        ("PUT", "/nlb/switches/2", {"name": "hv2", "uplinks": [1, "patch-hv1"]}, "200"),
        ("PUT", "/nlb/switches/2", {"uplinks": [1, 1]}, "400"),
        ("PUT", "/nlb/switches/1", {"uplinks": [2]}, "409"),
        ("DELETE", "/nlb/switches/2", None, "200"),
        ("GET", "/nlb/switches/2", None, "404"),
    ]
    for method, path, body, status in served:
        got_status, answer = call(controller, method, path, body)
        assert str(got_status) == status, (path, answer)
        template = "/nlb/switches/{dpid}" if path.startswith("/nlb/switches/") else path
        response = resolve(OPERATIONS[method, template]["responses"][status])
        problems = mismatches(answer, response["content"]["application/json"]["schema"])
        assert not problems, f"{method} {path}: {problems}"
    dpid = resolve(SPEC["components"]["parameters"]["dpid"])["schema"]["pattern"]
    for text, accepted in [("0000000000000001", True), ("0x1", True), ("12", True), ("01", False), ("0x", False)]:
        assert bool(re.fullmatch(dpid, text)) == accepted, text


def test_every_arp_enum_is_the_servers_arp_modes():
    from flows.model import ArpMode

    schemas = SPEC["components"]["schemas"]
    with_arp = [name for name, schema in schemas.items() if "arp" in schema.get("properties", {})]
    assert len(with_arp) == 5, with_arp
    for name in with_arp:
        assert set(schemas[name]["properties"]["arp"]["enum"]) == {mode.value for mode in ArpMode}, name


def test_the_answers_with_more_addresses_are_what_the_doc_says(tmp_path):
    """A cluster with cluster_ips and a member with ips, created, shown, changed and diffed as served, against
    the doc; every schema a cluster or member is written in has the two lists."""
    from tests.unit.test_rest import StandInController, call

    controller = StandInController(str(tmp_path / "state.db"))
    cluster = {"name": "api", "cluster_ip": "10.0.1.100", "cluster_ips": ["fd00:10::100"]}
    member = {"ip": "10.0.1.11", "ips": ["fd00:10::11", "10.0.1.12"]}
    served = [
        ("POST", "/nlb/clusters", "/nlb/clusters", cluster, "201"),
        ("POST", "/nlb/clusters/api/members", "/nlb/clusters/{name}/members", member, "201"),
        ("GET", "/nlb/clusters/api", "/nlb/clusters/{name}", None, "200"),
        ("GET", "/nlb/clusters/api/members/10.0.1.11", "/nlb/clusters/{name}/members/{ip}", None, "200"),
        ("PATCH", "/nlb/clusters/api/members/10.0.1.11", "/nlb/clusters/{name}/members/{ip}", {"ips": []}, "200"),
        ("GET", "/nlb/registry", "/nlb/registry", None, "200"),
        ("PUT", "/nlb/registry?dry_run=1", "/nlb/registry", {"clusters": [{**cluster, "members": [member]}]}, "200"),
    ]
    for method, path, template, body, status in served:
        got_status, answer = call(controller, method, path, body)
        assert str(got_status) == status, (path, answer)
        response = resolve(OPERATIONS[method, template]["responses"][status])
        problems = mismatches(answer, response["content"]["application/json"]["schema"])
        assert not problems, f"{method} {path}: {problems}"
    schemas = SPEC["components"]["schemas"]
    for name in ("Cluster", "ClusterCreate", "ClusterPut", "ClusterEntry", "RegistryCluster"):
        assert schemas[name]["properties"]["cluster_ips"]["items"] == {"type": "string"}, name
        assert "format" not in schemas[name]["properties"]["cluster_ip"], f"{name}: cluster_ip may be IPv6"
    for name in ("Member", "MemberCreate", "MemberPatch", "RegistryMember"):
        assert schemas[name]["properties"]["ips"]["items"] == {"type": "string"}, name
