"""The REST API's HTTP server (ryu_apps/httpserver.py) on a real loopback socket, in this process.

eventlet runs the server in a green thread; the clients here are green sockets, so each blocking read lets
the server run. Every answer must be JSON, including the ones the server gives before the app is called.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import eventlet
import pytest
from eventlet.green import socket

from flows.model import ControllerSettings
from ryu_apps.httpserver import RestServer
from ryu_apps.rest import RestApi
from tests.unit.test_rest import StandInController, unchanged

GET_STATUS = b"GET /nlb/status HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
UNFINISHED = b"GET /nlb/status HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"  # the headers never end
POST_UNFINISHED = b"POST /nlb/clusters HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"


@pytest.fixture
def controller(tmp_path) -> StandInController:
    return StandInController(str(tmp_path / "state.yaml"))


def api(controller: StandInController, max_body_bytes: int = 1024) -> RestApi:
    return RestApi(controller, settings=ControllerSettings(rest_max_body_bytes=max_body_bytes))


def start(app, max_body_bytes: int = 1024, **limits) -> Iterator[RestServer]:
    server = RestServer(("127.0.0.1", 0), app, max_body_bytes=max_body_bytes, **limits)
    thread = eventlet.spawn(server.serve_forever)
    try:
        yield server
    finally:
        thread.kill()
        server.socket.close()
        for connection in list(server.connections.values()):
            connection.socket.close()


@pytest.fixture
def server(controller) -> Iterator[RestServer]:
    yield from start(api(controller), head_timeout=2.0)


def connect(server: RestServer, data: bytes = b"") -> socket.socket:
    client = socket.create_connection(server.address)
    client.settimeout(20)
    if data:
        client.sendall(data)
    return client


def answer(client: socket.socket) -> tuple[int, dict, object]:
    """Read one whole response (the server closes every connection after it): status, headers, JSON body."""
    received = b""
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        received += chunk
    client.close()
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    assert headers.get("content-type") == "application/json", received
    assert int(headers["content-length"]) == len(body), received
    return int(status_line.split()[1]), headers, json.loads(body)


def exchange(server: RestServer, data: bytes) -> tuple[int, object]:
    status, _, body = answer(connect(server, data))
    return status, body


def test_a_request_is_served_and_the_connection_closed(server):
    status, headers, body = answer(connect(server, GET_STATUS))
    assert (status, body["runtime"], headers["connection"]) == (200, "stand-in", "close")


def post(body: bytes, content_type: str = "application/json", extra: bytes = b"") -> bytes:
    return (
        b"POST /nlb/clusters HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: " + content_type.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


CLUSTER = b'{"name": "x", "cluster_ip": "10.0.9.1"}'

LOW_LEVEL = [
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", 414, "request: the", id="414"),
    pytest.param(b"GARBAGE\r\n\r\n", 400, "request: Bad request", id="malformed-request-line"),
    pytest.param(b"GET / HTTP/9.9\r\nHost: 127.0.0.1:8080\r\n\r\n", 505, "request: Invalid HTTP version", id="version"),
    pytest.param(b"GET / HTTP/1.x\r\n\r\n", 400, "request: Bad request version", id="bad-version"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "request: ", id="tls-hello"),
    pytest.param(
        b"GET /nlb/status HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        "headers: a line over 8192 bytes",
        id="header-line-too-long",
    ),
    pytest.param(
        b"GET /nlb/status HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(9)) + b"\r\n",
        431,
        "headers: ",
        id="headers-too-large",
    ),
    pytest.param(
        b"GET /nlb/status HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"\r\n",
        431,
        "request: Too many headers",
        id="too-many-headers",
    ),
    pytest.param(
        post(CLUSTER).replace(b"Content-Length: 39", b"Content-Length: -1"), 400, "Content-Length: '-1'", id="cl"
    ),
    pytest.param(post(CLUSTER, extra=b"Content-Length: 40\r\n"), 400, "Content-Length: '39, 40'", id="two-lengths"),
    pytest.param(
        post(CLUSTER, extra=b"Transfer-Encoding: chunked\r\n"), 400, "Content-Length: not allowed", id="cl+te"
    ),
    pytest.param(
        b"POST /nlb/clusters HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n27\r\n" + CLUSTER + b"\r\n0\r\n\r\n",
        411,
        "Content-Length: required",
        id="chunked",
    ),
    pytest.param(post(CLUSTER, "text/plain"), 415, "Content-Type: 'text/plain'", id="text-plain"),
    pytest.param(post(CLUSTER).replace(b"127.0.0.1:8080", b"evil.example:8080"), 421, "Host: ", id="rebound"),
    pytest.param(post(CLUSTER, extra=b"Origin: http://evil.example\r\n"), 403, "Origin: ", id="cross-origin"),
    pytest.param(b"GET /nlb/clusters/%ff HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", 404, "path: ", id="path-ff"),
    pytest.param(post(b"[" * 5000 + b"]" * 5000)[:-10000], 413, "body: 10000 bytes", id="deep-and-too-big"),
]


@pytest.mark.parametrize(("request_bytes", "status", "error"), LOW_LEVEL)
def test_every_refusal_is_json_and_changes_nothing(server, controller, request_bytes, status, error):
    before = unchanged(controller)
    got_status, body = exchange(server, request_bytes)
    assert (got_status, list(body)) == (status, ["error"])
    assert body["error"].startswith(error), body["error"]
    assert unchanged(controller) == before
    assert exchange(server, GET_STATUS)[0] == 200, "the server still serves"


def test_json_nested_5000_deep_within_the_limit_is_a_400(controller):
    for server in start(api(controller, 20000), 20000, head_timeout=2.0):
        before = unchanged(controller)
        deep = b"[" * 5000 + b"]" * 5000
        status, body = exchange(server, post(deep))
        assert (status, body) == (400, {"error": "body: JSON nested more than 32 deep"})
        assert unchanged(controller) == before


def test_a_body_over_the_limit_is_refused_without_waiting_for_it(server, controller):
    before = unchanged(controller)
    head = post(b"").replace(b"Content-Length: 0", b"Content-Length: 1000000")
    client = connect(server, head)  # not one byte of the announced body follows
    status, _, body = answer(client)
    assert (status, body["error"]) == (413, "body: 1000000 bytes is more than controller.rest.max_body_bytes (1024)")
    assert unchanged(controller) == before


def test_a_post_is_read_whole_and_served(server, controller):
    status, body = exchange(server, post(CLUSTER))
    assert (status, body["name"]) == (201, "x")
    assert controller.registry.cluster_named("x") is not None


def test_a_request_that_does_not_arrive_in_time_is_answered_408(controller):
    for server in start(api(controller), head_timeout=0.3):
        before = unchanged(controller)
        status, body = exchange(server, UNFINISHED)
        assert (status, body) == (408, {"error": "request: not complete within 0.3 s"})
        half_body = post(CLUSTER)[:-10]
        status, body = exchange(server, half_body)
        assert (status, body) == (408, {"error": "request: not complete within 0.3 s"})
        assert unchanged(controller) == before
        assert exchange(server, GET_STATUS)[0] == 200


def test_idle_connections_cannot_hold_the_server(controller):
    """Far more unfinished requests than the server holds connections: the newest is still served, each
    evicted one is told why, and the server never holds more than its bound."""
    for server in start(api(controller), head_timeout=60.0, max_connections=8):
        before = unchanged(controller)
        idle = [connect(server, POST_UNFINISHED) for _ in range(200)]
        eventlet.sleep(0.1)
        status, body = exchange(server, GET_STATUS)
        assert (status, body["runtime"]) == (200, "stand-in")
        assert len(server.connections) <= 8
        status, _, body = answer(idle[0])
        assert (status, body) == (
            408,
            {"error": "request: not complete, and the server needed the connection for another client"},
        )
        for client in idle[1:]:
            client.close()
        assert unchanged(controller) == before


def test_when_every_connection_is_being_served_one_more_is_answered_503():
    release = eventlet.event.Event()

    def slow_app(environ, start_response):
        release.wait()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]

    for server in start(slow_app, head_timeout=5.0, max_connections=2):
        busy = [connect(server, GET_STATUS) for _ in range(2)]
        eventlet.sleep(0.1)
        status, body = exchange(server, GET_STATUS)
        assert (status, body) == (503, {"error": "server: all 2 connections are being served"})
        release.send()
        assert [answer(client)[0] for client in busy] == [200, 200]
