"""The REST API: a small webob WSGI app, the same under Ryu and os-ken (os-ken has no ryu.app.wsgi).

It only translates HTTP to calls on a service (the running app, or a stand-in in tests): registry
changes are pure functions from flows/registry_ops.py, and the service persists and pushes them.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from webob import Request, Response
from webob.dec import wsgify

from flows import registry_ops
from flows.model import Cluster, Member, Registry
from flows.registry_ops import RegistryError
from flows.state import cluster_data

T = TypeVar("T")
LOG = logging.getLogger(__name__)

_ROUTE_TABLE = (  # method, path template, RestApi method that serves it
    ("GET", "/nlb/clusters", "list_clusters"),
    ("POST", "/nlb/clusters", "add_cluster"),
    ("GET", "/nlb/clusters/{name}", "show_cluster"),
    ("DELETE", "/nlb/clusters/{name}", "remove_cluster"),
    ("GET", "/nlb/clusters/{name}/members", "list_members"),
    ("POST", "/nlb/clusters/{name}/members", "add_member"),
    ("GET", "/nlb/clusters/{name}/members/{ip}", "show_member"),
    ("PATCH", "/nlb/clusters/{name}/members/{ip}", "update_member"),
    ("DELETE", "/nlb/clusters/{name}/members/{ip}", "remove_member"),
    ("GET", "/nlb/flows", "audit"),
    ("POST", "/nlb/flows/reconcile", "reconcile"),
    ("GET", "/nlb/status", "status"),
)
ROUTES = tuple((method, template) for method, template, _ in _ROUTE_TABLE)


class Service(Protocol):
    """What the API needs from the running controller."""

    registry: Registry

    def change(self, mutate: Callable[[Registry], tuple[Registry, T]]) -> T:
        """Apply a registry change: persist it, push it to every switch, then return what it touched."""

    def locations(self, cluster_name: str, member: Member) -> list[dict]: ...

    def audit(self) -> dict: ...

    def reconcile(self) -> dict: ...

    def status(self) -> dict: ...


def _pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


_PATTERNS = [(template, _pattern(template)) for template in dict.fromkeys(t for _, t in ROUTES)]


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class RestApi:
    """WSGI app: JSON in, JSON out, {"error": ...} naming the field on every refusal."""

    def __init__(self, service: Service, token: str | None = None) -> None:
        self.service = service
        self.token = token
        self.handlers: dict[tuple[str, str], Callable[..., tuple[int, Any]]] = {
            (method, template): getattr(self, name) for method, template, name in _ROUTE_TABLE
        }

    @wsgify
    def __call__(self, request: Request) -> Response:
        try:
            self._authorize(request)
            handler, params = self._route(request)
            status, body = handler(request, **params)
        except HttpError as error:
            return _json(error.status, {"error": error.message}, error.headers)
        except RegistryError as error:
            return _json(error.status, {"error": error.message})
        except TimeoutError as error:  # a switch did not answer in time; the message says what was saved
            return _json(504, {"error": f"switch: {error}"})
        except Exception as error:  # every answer is JSON, even a bug's
            LOG.exception("nlbflow REST: %s %s failed", request.method, request.path_info)
            return _json(500, {"error": f"internal error: {type(error).__name__}: {error}"})
        return _json(status, body)

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise HttpError(401, "Authorization: a valid 'Bearer <token>' is required", {"WWW-Authenticate": "Bearer"})

    def _route(self, request: Request) -> tuple[Callable[..., tuple[int, Any]], dict[str, str]]:
        for template, pattern in _PATTERNS:
            found = pattern.match(request.path_info)
            if found is None:
                continue
            handler = self.handlers.get((request.method, template))
            if handler is None:
                allowed = ", ".join(method for method, path in ROUTES if path == template)
                raise HttpError(
                    405, f"{request.method} is not allowed on {template} (allowed: {allowed})", {"Allow": allowed}
                )
            return handler, found.groupdict()
        raise HttpError(404, f"path: no such resource {request.path_info!r}")

    # --- clusters ---------------------------------------------------------------------------------

    def list_clusters(self, request: Request) -> tuple[int, Any]:
        return 200, {"clusters": [self._cluster(c) for c in self.service.registry.clusters]}

    def add_cluster(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        cluster = self.service.change(lambda registry: registry_ops.add_cluster(registry, body))
        return 201, self._cluster(cluster)

    def show_cluster(self, request: Request, name: str) -> tuple[int, Any]:
        return 200, self._cluster(registry_ops.find_cluster(self.service.registry, name))

    def remove_cluster(self, request: Request, name: str) -> tuple[int, Any]:
        cluster = self.service.change(lambda registry: registry_ops.remove_cluster(registry, name))
        return 200, self._cluster(cluster, located=False)

    # --- members ----------------------------------------------------------------------------------

    def list_members(self, request: Request, name: str) -> tuple[int, Any]:
        cluster = registry_ops.find_cluster(self.service.registry, name)
        return 200, {"members": [self._member(cluster.name, m) for m in cluster.members]}

    def add_member(self, request: Request, name: str) -> tuple[int, Any]:
        body = _body(request)
        member = self.service.change(lambda registry: registry_ops.add_member(registry, name, body))
        return 201, self._member(name, member)

    def show_member(self, request: Request, name: str, ip: str) -> tuple[int, Any]:
        return 200, self._member(name, registry_ops.find_member(self.service.registry, name, ip))

    def update_member(self, request: Request, name: str, ip: str) -> tuple[int, Any]:
        body = _body(request)
        member = self.service.change(lambda registry: registry_ops.update_member(registry, name, ip, body))
        return 200, self._member(name, member)

    def remove_member(self, request: Request, name: str, ip: str) -> tuple[int, Any]:
        member = self.service.change(lambda registry: registry_ops.remove_member(registry, name, ip))
        return 200, self._member(name, member, located=False)

    # --- switches ---------------------------------------------------------------------------------

    def audit(self, request: Request) -> tuple[int, Any]:
        return 200, self.service.audit()

    def reconcile(self, request: Request) -> tuple[int, Any]:
        return 200, self.service.reconcile()

    def status(self, request: Request) -> tuple[int, Any]:
        return 200, self.service.status()

    # --- views ------------------------------------------------------------------------------------

    def _cluster(self, cluster: Cluster, located: bool = True) -> dict:
        data = cluster_data(cluster)
        data["members"] = [self._member(cluster.name, m, located) for m in cluster.members]
        return data

    def _member(self, cluster_name: str, member: Member, located: bool = True) -> dict:
        cluster = self.service.registry.cluster_named(cluster_name)  # None once the cluster is removed
        return {
            "ip": member.ip,
            "mac": cluster.entry_mac(member) if cluster else member.own_mac or member.dedicated_mac,
            "dpid": member.dpid,
            "port": member.port,
            "located": self.service.locations(cluster_name, member) if located else [],
        }


def _body(request: Request) -> object:
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise HttpError(400, f"body: malformed JSON ({error})") from None


def _json(status: int, body: Any, headers: dict | None = None) -> Response:
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.text = json.dumps(body, indent=1, sort_keys=False) + "\n"
    response.headers.update(headers or {})
    return response
