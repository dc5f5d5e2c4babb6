"""The REST API: a small webob WSGI app, the same under Ryu and os-ken (os-ken has no ryu.app.wsgi).

It only translates HTTP to calls on a service (the running app, or a stand-in in tests): registry
changes are pure functions from flows/registry_ops.py, the switches' configuration changes from
flows/fabric_ops.py, and the service persists and pushes them.

Before any of that it refuses what a web page could forge (docs/rest-api.md, "What a web page cannot
do"): a Host that is not the API's own (DNS rebinding), an Origin or Sec-Fetch-Site of another site, and a
body that is not JSON (a cross-site form or text/plain POST); and what it will not read: a body over
controller.rest.max_body_bytes, JSON nested too deep, a key given twice.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from webob import Request, Response
from webob.dec import wsgify

from flows import fabric_ops, registry_ops
from flows.model import Cluster, ControllerSettings, Fabric, Member, Registry, SwitchConfig
from flows.registry_diff import diff_registries
from flows.registry_ops import RegistryError
from flows.state import cluster_data

T = TypeVar("T")
LOG = logging.getLogger(__name__)
MAX_JSON_DEPTH = 32  # the API's bodies are flat objects; deeper JSON is refused before anything reads it
SAFE_FETCH_SITES = ("same-origin", "none")  # Sec-Fetch-Site values of requests no other site started
_HOST_RE = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?")

_ROUTE_TABLE = (  # method, path template, RestApi method that serves it
    ("GET", "/nlb/clusters", "list_clusters"),
    ("POST", "/nlb/clusters", "add_cluster"),
    ("GET", "/nlb/clusters/{name}", "show_cluster"),
    ("PUT", "/nlb/clusters/{name}", "put_cluster"),
    ("DELETE", "/nlb/clusters/{name}", "remove_cluster"),
    ("GET", "/nlb/clusters/{name}/members", "list_members"),
    ("POST", "/nlb/clusters/{name}/members", "add_member"),
    ("GET", "/nlb/clusters/{name}/members/{ip}", "show_member"),
    ("PATCH", "/nlb/clusters/{name}/members/{ip}", "update_member"),
    ("DELETE", "/nlb/clusters/{name}/members/{ip}", "remove_member"),
    ("GET", "/nlb/registry", "show_registry"),
    ("PUT", "/nlb/registry", "put_registry"),
    ("GET", "/nlb/flows", "audit"),
    ("POST", "/nlb/flows/reconcile", "reconcile"),
    ("GET", "/nlb/status", "status"),
    ("GET", "/nlb/switches", "list_switches"),
    ("GET", "/nlb/switches/{dpid}", "show_switch"),
    ("PUT", "/nlb/switches/{dpid}", "put_switch"),
    ("DELETE", "/nlb/switches/{dpid}", "remove_switch"),
)
ROUTES = tuple((method, template) for method, template, _ in _ROUTE_TABLE)


class Service(Protocol):
    """What the API needs from the running controller."""

    registry: Registry

    def change(self, mutate: Callable[[Registry], tuple[Registry, T]]) -> tuple[T, list[str]]:
        """Apply a registry change: persist it, push it to every switch, then return what it touched and
        the switches (dpids in hex) that went away before confirming it: it reaches them on reconnect."""

    @property
    def fabric(self) -> Fabric:
        """The switches as configured (names, uplinks), as saved."""

    def change_fabric(self, mutate: Callable[[Fabric], tuple[Fabric, T]]) -> tuple[T, list[str]]:
        """Apply a change of the switches' configuration as change() does a registry change; raises
        RegistryError(409) itself when a new uplink is a port where a member is located now."""

    def switch_views(self) -> list[dict]:
        """Every switch configured or connected, as the entries of status()["switches"]."""

    def switch_view(self, dpid: int) -> dict | None:
        """One such entry; None for a switch neither configured nor connected."""

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

    def __init__(self, service: Service, token: str | None = None, settings: ControllerSettings | None = None) -> None:
        settings = settings or ControllerSettings()
        self.service = service
        self.token = token
        self.max_body_bytes = settings.rest_max_body_bytes
        self.port = settings.rest_port
        self.address = ipaddress.ip_address(settings.rest_host)
        local = self.address.is_loopback or self.address.is_unspecified
        self.host_names = frozenset((*settings.rest_hosts, *(("localhost",) if local else ())))
        self.handlers: dict[tuple[str, str], Callable[..., tuple[int, Any]]] = {
            (method, template): getattr(self, name) for method, template, name in _ROUTE_TABLE
        }

    @wsgify
    def __call__(self, request: Request) -> Response:
        try:
            self._check_host(request)
            self._check_origin(request)
            self._authorize(request)
            self._check_body(request)
            handler, params = self._route(request.method, _path(request))
            status, body = handler(request, **params)
        except HttpError as error:
            return _json(error.status, {"error": error.message}, error.headers)
        except RegistryError as error:
            return _json(error.status, {"error": error.message})
        except TimeoutError as error:  # a switch did not answer in time; the message says what was saved
            return _json(504, {"error": f"switch: {error}"})
        except Exception as error:  # every answer is JSON, even a bug's
            LOG.exception("nlbflow REST: %s %r failed", request.method, request.environ.get("PATH_INFO"))
            return _json(500, {"error": f"internal error: {type(error).__name__}: {error}"})
        return _json(status, body)

    # --- what a web page could forge, and what the API will not read --------------------------------

    def _own_host(self, host: str) -> bool:
        """An address the API listens on, or a name it is known by; never a name an attacker's DNS serves."""
        try:
            address = ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
        except ValueError:
            return host.rstrip(".") in self.host_names
        if self.address.is_unspecified:
            return address.version == self.address.version
        return address == self.address

    def _check_host(self, request: Request) -> None:
        given = request.environ.get("HTTP_HOST")
        if given is None:
            raise HttpError(400, "Host: the header is required")
        found = _HOST_RE.fullmatch(given.strip().lower())
        if found is None or not self._own_host(found.group(1)):
            names = ", ".join(sorted(self.host_names)) or "none"
            raise HttpError(
                421,
                f"Host: {given!r} is not this API's address ({self.address}, names: {names}; more in"
                " controller.rest.hosts): a request for another name is refused, as DNS rebinding would send it",
            )

    def _check_origin(self, request: Request) -> None:
        """Only the API's own origin; a browser sends Origin with every cross-origin POST, PATCH or DELETE."""
        site = request.environ.get("HTTP_SEC_FETCH_SITE")
        if site is not None and site.strip().lower() not in SAFE_FETCH_SITES:
            raise HttpError(403, f"Sec-Fetch-Site: {site!r}: a request another site started is refused")
        origin = request.environ.get("HTTP_ORIGIN")
        if origin is not None and not self._own_origin(origin):
            raise HttpError(403, f"Origin: {origin!r} is not this API's origin: cross-origin requests are refused")

    def _own_origin(self, origin: str) -> bool:
        scheme, separator, authority = origin.strip().lower().partition("://")
        found = _HOST_RE.fullmatch(authority)
        return bool(
            separator
            and scheme == "http"
            and found
            and self._own_host(found.group(1))
            and int(found.group(2) or 80) == self.port
        )

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise HttpError(401, "Authorization: a valid 'Bearer <token>' is required", {"WWW-Authenticate": "Bearer"})

    def _check_body(self, request: Request) -> None:
        """A body (or a Content-Type) only as JSON in UTF-8, with its length given and within the limit:
        a form or text/plain POST, which any web page may send, is refused before it is read."""
        environ = request.environ
        if "HTTP_TRANSFER_ENCODING" in environ:
            raise HttpError(411, "Content-Length: required; a body in Transfer-Encoding is not read")
        length_text = environ.get("CONTENT_LENGTH") or "0"
        if not (length_text.isascii() and length_text.isdigit()):
            raise HttpError(400, f"Content-Length: {length_text!r} is not a number of bytes")
        length = int(length_text)
        content_type = environ.get("CONTENT_TYPE", "")
        if length == 0 and not content_type:
            return
        media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
        charsets = [value for name, _, value in (p.partition("=") for p in parameters) if name.strip() == "charset"]
        if media_type != "application/json" or any(value.strip('" ') != "utf-8" for value in charsets):
            raise HttpError(415, f"Content-Type: {content_type!r}: a request body must be application/json (UTF-8)")
        if length > self.max_body_bytes:
            raise HttpError(
                413,
                f"body: {length} bytes is more than controller.rest.max_body_bytes ({self.max_body_bytes})",
            )

    def _route(self, method: str, path: str) -> tuple[Callable[..., tuple[int, Any]], dict[str, str]]:
        for template, pattern in _PATTERNS:
            found = pattern.match(path)
            if found is None:
                continue
            handler = self.handlers.get((method, template))
            if handler is None:
                allowed = ", ".join(m for m, route in ROUTES if route == template)
                raise HttpError(405, f"{method} is not allowed on {template} (allowed: {allowed})", {"Allow": allowed})
            return handler, found.groupdict()
        raise HttpError(404, f"path: no such resource {path!r}")

    # --- clusters ---------------------------------------------------------------------------------

    def list_clusters(self, request: Request) -> tuple[int, Any]:
        return 200, {"clusters": [self._cluster(c) for c in self.service.registry.clusters]}

    def add_cluster(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        cluster, pending = self.service.change(lambda registry: registry_ops.add_cluster(registry, body))
        return 201, {**self._cluster(cluster), "pending_switches": pending}

    def show_cluster(self, request: Request, name: str) -> tuple[int, Any]:
        return 200, self._cluster(registry_ops.find_cluster(self.service.registry, name))

    def remove_cluster(self, request: Request, name: str) -> tuple[int, Any]:
        cluster, pending = self.service.change(lambda registry: registry_ops.remove_cluster(registry, name))
        return 200, {**self._cluster(cluster, located=False), "pending_switches": pending}

    def put_cluster(self, request: Request, name: str) -> tuple[int, Any]:
        """The whole cluster, created or replaced in one change: one write, one flow diff per switch."""
        cluster = registry_ops.cluster_for_put(name, _body(request))
        (created, diff), pending = self.service.change(lambda registry: registry_ops.put_cluster(registry, cluster))
        view = self._cluster(self.service.registry.cluster_named(name) or cluster)
        return (201 if created else 200), {**view, "diff": diff.data(), "pending_switches": pending}

    # --- the whole registry -----------------------------------------------------------------------

    def show_registry(self, request: Request) -> tuple[int, Any]:
        """The registry as the config's `clusters:` list: what PUT /nlb/registry takes back."""
        return 200, {"clusters": [cluster_data(c) for c in self.service.registry.clusters]}

    def put_registry(self, request: Request) -> tuple[int, Any]:
        """Replace every cluster in one change, or (dry_run=1) only say what that would change. The body is
        checked whole before anything is changed: a refusal leaves the registry as it was."""
        dry_run = _flag(request, "dry_run")
        wanted = registry_ops.registry_for_put(_body(request))
        if dry_run:
            diff = diff_registries(self.service.registry, wanted)
            return 200, {"dry_run": True, **diff.data(), "pending_switches": []}
        diff, pending = self.service.change(lambda registry: registry_ops.put_registry(registry, wanted))
        return 200, {"dry_run": False, **diff.data(), "pending_switches": pending}

    # --- members ----------------------------------------------------------------------------------

    def list_members(self, request: Request, name: str) -> tuple[int, Any]:
        cluster = registry_ops.find_cluster(self.service.registry, name)
        return 200, {"members": [self._member(cluster.name, m) for m in cluster.members]}

    def add_member(self, request: Request, name: str) -> tuple[int, Any]:
        body = _body(request)
        member, pending = self.service.change(lambda registry: registry_ops.add_member(registry, name, body))
        return 201, {**self._member(name, member), "pending_switches": pending}

    def show_member(self, request: Request, name: str, ip: str) -> tuple[int, Any]:
        return 200, self._member(name, registry_ops.find_member(self.service.registry, name, ip))

    def update_member(self, request: Request, name: str, ip: str) -> tuple[int, Any]:
        body = _body(request)
        member, pending = self.service.change(lambda registry: registry_ops.update_member(registry, name, ip, body))
        return 200, {**self._member(name, member), "pending_switches": pending}

    def remove_member(self, request: Request, name: str, ip: str) -> tuple[int, Any]:
        member, pending = self.service.change(lambda registry: registry_ops.remove_member(registry, name, ip))
        return 200, {**self._member(name, member, located=False), "pending_switches": pending}

    # --- the switches' configuration ----------------------------------------------------------------

    def list_switches(self, request: Request) -> tuple[int, Any]:
        return 200, {"switches": self.service.switch_views()}

    def show_switch(self, request: Request, dpid: str) -> tuple[int, Any]:
        number = fabric_ops.parse_dpid(dpid)
        view = self.service.switch_view(number)
        if view is None:
            raise RegistryError(404, f"dpid: no switch {number:016x} is configured or connected")
        return 200, view

    def put_switch(self, request: Request, dpid: str) -> tuple[int, Any]:
        """The switch's name and uplinks, created or replaced whole; a field left out is none."""
        body = _body(request)
        switch, pending = self.service.change_fabric(
            lambda fabric: fabric_ops.put_switch(fabric, self.service.registry, dpid, body)
        )
        return 200, {**self.service.switch_view(switch.dpid), "pending_switches": pending}

    def remove_switch(self, request: Request, dpid: str) -> tuple[int, Any]:
        """The switch's configuration goes (it has no name and no uplinks now); the switch stays connected."""
        switch, pending = self.service.change_fabric(lambda fabric: fabric_ops.remove_switch(fabric, dpid))
        return 200, {**_switch(switch), "pending_switches": pending}

    # --- the flows in the switches ----------------------------------------------------------------

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
            **({"ips": list(member.ips)} if member.ips else {}),  # as member_data: only when it has more
            "mac": cluster.entry_mac(member) if cluster else member.own_mac or member.dedicated_mac,
            "dpid": member.dpid,
            "port": member.port,
            "located": self.service.locations(cluster_name, member) if located else [],
        }


def _switch(switch: SwitchConfig) -> dict:
    """A switch's configuration, as the body of PUT /nlb/switches/{dpid} and the config's entry hold it."""
    return {"dpid": switch.dpid, "name": switch.name, "uplinks": list(switch.uplinks)}


def _flag(request: Request, name: str) -> bool:
    """A query flag: 1 or true, 0 or false, absent is false; anything else is refused, not guessed."""
    values = request.GET.getall(name)
    if len(values) > 1:
        raise HttpError(400, f"{name}: given {len(values)} times")
    value = values[0].strip().lower() if values else "0"
    if value not in ("1", "true", "0", "false"):
        raise HttpError(400, f"{name}: {values[0]!r} is not 1, 0, true or false")
    return value in ("1", "true")


def _path(request: Request) -> str:
    """The percent-decoded path as UTF-8; bytes that are not UTF-8 name no resource."""
    raw = request.environ.get("PATH_INFO", "")
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HttpError(404, f"path: no such resource {raw!r} (not UTF-8 once percent-decoded)") from None


class _JsonRefused(ValueError):
    """JSON that parses but that the API does not take: a key given twice, NaN or Infinity."""


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _JsonRefused(f"key {key!r} is given twice")
        seen.add(key)
    return dict(pairs)


def _refuse_constant(name: str) -> None:
    raise _JsonRefused(f"{name} is not JSON")


def _depth(value: object) -> int:
    """How deep arrays and objects nest in a parsed JSON value (a scalar: 0)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _body(request: Request) -> object:
    too_deep = HttpError(400, f"body: JSON nested more than {MAX_JSON_DEPTH} deep")
    try:
        text = request.body.decode("utf-8")
        data = json.loads(
            text or "null", object_pairs_hook=_object_without_duplicate_keys, parse_constant=_refuse_constant
        )
    except _JsonRefused as error:
        raise HttpError(400, f"body: {error}") from None
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as error:
        raise HttpError(400, f"body: malformed JSON ({error})") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise too_deep
    return data


def _json(status: int, body: Any, headers: dict | None = None) -> Response:
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.text = json.dumps(body, indent=1, sort_keys=False) + "\n"
    response.headers.update(headers or {})
    return response
