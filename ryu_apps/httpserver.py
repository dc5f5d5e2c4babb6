"""The REST API's HTTP server: eventlet's HTTP parsing, within bounds no client can push it past.

hub.WSGIServer (Ryu's and os-ken's alike) runs eventlet.wsgi.server without a timeout: a client that opens
a connection and never finishes its request holds a green thread for ever, and enough of them stop the
API. This server, the same under both runtimes:
- gives each connection HEAD_TIMEOUT seconds to deliver its whole request (line, headers and body), then
  answers 408;
- holds at most MAX_CONNECTIONS at once: one more evicts the oldest that has not delivered its request yet
  (408), or, when every one is being served, is answered 503;
- answers its own refusals (414, 431, a malformed request line or Content-Length) in JSON, as the API
  answers its own;
- serves one request per connection (no keep-alive), so no idle connection is waited on.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus

import eventlet
import eventlet.wsgi
from eventlet import greenio
from eventlet.hubs import get_hub

LOG = logging.getLogger(__name__)
HEAD_TIMEOUT = 10.0  # seconds from accept to the whole request
SOCKET_TIMEOUT = 30.0  # seconds any one read or write may take once the request is in
MAX_CONNECTIONS = 64
BACKLOG = 128  # connections the kernel holds for the next accept


class _Unfinished(Exception):
    """Thrown into a connection's green thread when its request did not arrive in time, or it is evicted."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Connection:
    """One client connection, and the deadline for its request."""

    def __init__(self, client: socket.socket, address: tuple) -> None:
        self.socket = client
        self.address = address
        self.evicted = False
        self._greenlet = None
        self._timer = None

    @property
    def waiting_for_request(self) -> bool:
        """True until its whole request is in: evicting it then drops nothing the app has seen."""
        return self._timer is not None

    def expect_request(self, seconds: float) -> None:
        """Start the deadline; called in the connection's own green thread, the one it interrupts."""
        self._greenlet = eventlet.getcurrent()
        self._arm(seconds, f"request: not complete within {seconds:g} s")

    def request_complete(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def evict(self) -> None:
        self.evicted = True
        self._arm(0, "request: not complete, and the server needed the connection for another client")

    def _arm(self, seconds: float, message: str) -> None:
        self.request_complete()
        self._timer = get_hub().schedule_call_global(seconds, self._expire, message)

    def _expire(self, message: str) -> None:
        self._timer = None
        self._greenlet.throw(_Unfinished(message))


def _json_answer(status: int, message: str) -> bytes:
    """A whole HTTP response with the API's error body, closing the connection."""
    body = (json.dumps({"error": message}) + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Server(eventlet.wsgi.Server):
    """eventlet's per-server settings, and the body limit the protocol reads up to."""

    def __init__(self, *args, max_body_bytes: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_body_bytes = max_body_bytes


class _Protocol(eventlet.wsgi.HttpProtocol):
    """eventlet's HTTP/1.1 handling, with its own answers in JSON and the whole request read before the app
    is called, within the connection's deadline."""

    def handle(self) -> None:
        try:
            super().handle()
        except _Unfinished as unfinished:
            self._answer(408, unfinished.message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the standard library's request parsing refuses (a malformed request line, bad version)."""
        self._answer(code, f"request: {message or HTTPStatus(code).phrase}")

    def _read_request_line(self):
        line = super()._read_request_line()
        if len(line) >= self.server.url_length_limit:
            self._answer(414, f"request: the request line is longer than {self.server.url_length_limit - 1} bytes")
            return b""
        return line

    def parse_request(self) -> bool:
        try:
            if not super().parse_request():
                return False
        except (eventlet.wsgi.HeaderLineTooLong, eventlet.wsgi.HeadersTooLarge):
            self._answer(
                431,
                f"headers: a line over {eventlet.wsgi.MAX_HEADER_LINE} bytes, or over"
                f" {eventlet.wsgi.MAX_TOTAL_HEADER_SIZE} in all",
            )
            return False
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1 or any(not (length.isascii() and length.isdigit()) for length in lengths):
            self._answer(400, f"Content-Length: {', '.join(lengths)!r} is not one number of bytes")
            return False
        if lengths and "Transfer-Encoding" in self.headers:
            self._answer(400, "Content-Length: not allowed together with Transfer-Encoding")
            return False
        return True

    def get_environ(self) -> dict:
        environ = super().get_environ()
        if "Content-Type" not in self.headers:  # eventlet would say text/plain, as email.message does
            environ.pop("CONTENT_TYPE", None)
        return environ

    def handle_one_response(self) -> None:
        """Read the body (up to the limit; the app refuses a larger one unread), then let the app answer."""
        length = int(self.environ.get("CONTENT_LENGTH") or 0)
        if length <= self.server.max_body_bytes:
            body = self.environ["wsgi.input"].read(length)
            if len(body) < length:  # the client went away
                self.close_connection = 1
                return
            self.environ["wsgi.input"] = io.BytesIO(body)
        self.conn_state[3].request_complete()
        super().handle_one_response()

    def _answer(self, status: int, message: str) -> None:
        self.conn_state[3].request_complete()  # the answer is final: no deadline may interrupt it
        LOG.info("nlbflow REST: %s: %s %s", self.client_address[0], status, message)
        try:
            self.wfile.write(_json_answer(status, message))
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = 1


class RestServer:
    """Serves a WSGI app on (host, port) within the bounds above; built where hub.WSGIServer was."""

    def __init__(
        self,
        listen: tuple[str, int],
        app: Callable,
        max_body_bytes: int,
        head_timeout: float = HEAD_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.socket = eventlet.listen(listen, family=family, backlog=BACKLOG)
        self.server = _Server(
            self.socket,
            self.socket.getsockname(),
            app,
            log=LOG,
            protocol=_Protocol,
            keepalive=False,
            debug=False,
            socket_timeout=SOCKET_TIMEOUT,
            max_body_bytes=max_body_bytes,
        )
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self.connections: dict[int, _Connection] = {}  # in the order they were accepted

    @property
    def address(self) -> tuple:
        return self.socket.getsockname()

    def serve_forever(self) -> None:
        failure = None
        while True:
            try:
                client, address = self.socket.accept()
            except OSError as error:
                if error.errno == errno.EBADF:  # the listening socket was closed
                    return
                if error.errno != failure:
                    LOG.warning("nlbflow REST: cannot accept a connection: %s", error)
                failure = error.errno
                self._evict_oldest_waiting()  # out of file descriptors: free one
                eventlet.sleep(0.1)
                continue
            failure = None
            if len(self.connections) >= self.max_connections and not self._evict_oldest_waiting():
                self._refuse_busy(client)
                continue
            connection = _Connection(client, address)
            self.connections[id(connection)] = connection
            eventlet.spawn(self._serve, connection)
            eventlet.sleep(0)  # it reads what has arrived already before the next accept may evict it

    def _evict_oldest_waiting(self) -> bool:
        oldest = next((c for c in self.connections.values() if c.waiting_for_request and not c.evicted), None)
        if oldest is not None:
            oldest.evict()
        return oldest is not None

    def _refuse_busy(self, client: socket.socket) -> None:
        try:
            client.settimeout(1.0)
            client.sendall(_json_answer(503, f"server: all {self.max_connections} connections are being served"))
        except OSError:
            pass
        finally:
            client.close()

    def _serve(self, connection: _Connection) -> None:
        connection.socket.settimeout(SOCKET_TIMEOUT)
        connection.expect_request(self.head_timeout)
        try:
            self.server.process_request([connection.address, connection.socket, eventlet.wsgi.STATE_IDLE, connection])
        except OSError as error:  # the client went away mid-answer
            LOG.debug("nlbflow REST: %s: %s", connection.address[0], error)
        finally:
            connection.request_complete()
            del self.connections[id(connection)]
            greenio.shutdown_safe(connection.socket)
            connection.socket.close()
