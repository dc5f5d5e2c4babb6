"""The YAML config: load it, reject anything doubtful, and build a Config.

Every error is one ConfigError naming the file, the key path and the problem, so a typo never turns
into a silently ignored setting. cluster_from_data(), member_from_data() and validate_registry() check
one piece each, so a REST layer can validate what it receives with the same rules; switch_from_data()
and validate_fabric() do the same for the fabric's switches (`fabric.switches`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable

import yaml

from flows import cookies
from flows.addresses import (
    BROADCAST_MAC,
    PROBE_MAC,
    AddressError,
    dedicated_mac,
    igmp_cluster_mac,
    is_ipv6,
    is_locally_administered_mac,
    is_multicast_mac,
    multicast_cluster_mac,
    parse_host_ip,
    parse_host_ipv4,
    parse_mac,
    parse_unicast_mac,
    unicast_cluster_mac,
)
from flows.flowspec import OFPP_MAX
from flows.model import (
    ArpMode,
    Cluster,
    ClusterMode,
    Config,
    ControllerSettings,
    Fabric,
    LocationSettings,
    Member,
    Registry,
    Settings,
    SwitchConfig,
)

DEFAULT_CLUSTER_MAC = {
    ClusterMode.UNICAST: unicast_cluster_mac,
    ClusterMode.MULTICAST: multicast_cluster_mac,
    ClusterMode.IGMP: igmp_cluster_mac,
}

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # names appear in URLs
MAX_DPID = 2**64 - 1
MAX_PORT = OFPP_MAX - 1  # from OFPP_MAX up, port numbers are OpenFlow's own
MIN_BODY_LIMIT, MAX_BODY_LIMIT = 1024, 16 * 1024 * 1024  # controller.rest.max_body_bytes

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_DPID_RE = re.compile(r"[0-9a-fA-F]{16}|0[xX][0-9a-fA-F]{1,16}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME_RE = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\.?")
_DECIMAL_OR_HEX_RE = re.compile(r"[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+)")
_PORT_NAME_RE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]{1,255}")  # an OVS port name: no white space or control characters


class ConfigError(ValueError):
    """A config is invalid: the message names the file, the key path and the problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_document(self, node: yaml.Node) -> object:
        _reject_duplicate_keys(node, "", set())
        return super().construct_document(node)


class _FastStrictLoader(getattr(yaml, "CSafeLoader", _StrictLoader)):  # type: ignore[misc]
    """_StrictLoader on libyaml's parser, where PyYAML has it: a config of 10,000 members parses in 0.8 s
    instead of 1.9 s, most of a restarted controller's start (bench/registration.py --large). Text it
    refuses is read again by _StrictLoader, whose messages name more (an undefined alias's name)."""

    def construct_document(self, node: yaml.Node) -> object:
        _reject_duplicate_keys(node, "", set())
        return super().construct_document(node)


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> object:
    """Only decimal and 0x ints: YAML 1.1 would read an unquoted OVS dpid (0000000000000010, hex) as
    octal and a MAC of decimal octets as base 60; kept as strings, they parse as written or fail loudly."""
    text = loader.construct_scalar(node)
    return loader.construct_yaml_int(node) if _DECIMAL_OR_HEX_RE.fullmatch(text) else text


_StrictLoader.add_constructor(_INT_TAG, _construct_int)
_FastStrictLoader.add_constructor(_INT_TAG, _construct_int)


def _reject_duplicate_keys(node: yaml.Node, key: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias: checked where its anchor is, and it may be recursive
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(item, f"{key}[{index}]", seen)
    elif isinstance(node, yaml.MappingNode):
        first_lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            child_key = _join(key, key_node.value)
            line = key_node.start_mark.line + 1
            identity = (key_node.tag, key_node.value)
            if identity in first_lines:
                raise _DuplicateKeyError(
                    child_key, f"duplicate key on line {line} (first on line {first_lines[identity]})"
                )
            first_lines[identity] = line
            _reject_duplicate_keys(value_node, child_key, seen)


def load_config(path: str) -> Config:
    """Read and validate the config file at path."""
    return parse_config(_read_text(path), path)


def load_registry_file(path: str) -> list:
    """The `clusters:` list of a registry file (`nlbflow apply`), checked as the config's is; as written,
    so the API applies its defaults itself."""
    data = parse_yaml(_read_text(path), path)
    registry_file_from_data(data, path)
    return data["clusters"]


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "cannot read the file: it is not UTF-8 text") from None


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text; source names it in errors."""
    return config_from_data(parse_yaml(text, source), source)


def parse_yaml(text: str, source: str) -> object:
    """YAML text as data, read strictly: a key given twice, or YAML 1.1's octal and base-60 ints, are refused
    or kept as strings, so a registry file (`nlbflow apply`) is read exactly as the config is."""
    try:
        return yaml.load(text, Loader=_FastStrictLoader)
    except yaml.YAMLError:
        pass  # refused: read again below for the pure-Python parser's own message
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKeyError as exc:
        raise ConfigError(source, exc.key, exc.problem) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(source, "", f"invalid YAML: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"invalid YAML: {exc}") from None


def config_from_data(data: object, source: str) -> Config:
    """Validate an already-parsed config; None (an empty file) is an empty registry."""
    if data is None:
        return Config()
    fields = _fields(data, "", source, required=(), optional=("fabric", "controller", "clusters"))
    fabric_data = fields.get("fabric", {})
    if isinstance(fabric_data, dict) and "switches" in fabric_data:
        fabric = fabric_from_data(fabric_data["switches"], "fabric.switches", source)
        fabric_data = {name: value for name, value in fabric_data.items() if name != "switches"}
    else:
        fabric = Fabric()
    settings = _settings_from_data(fabric_data, "fabric", source) if "fabric" in fields else Settings()
    controller = _controller_from_data(fields.get("controller", {}), "controller", source)
    registry = registry_from_data(fields.get("clusters", []), source)
    validate_fabric(fabric, registry, source)
    return Config(registry=registry, fabric=fabric, settings=settings, controller=controller)


def registry_from_data(clusters_data: object, source: str, validate: bool = True) -> Registry:
    """A `clusters:` list, as in the config or a PUT /nlb/registry body: every entry checked with
    cluster_from_data (keys `clusters[3].members[2].ip`), then the whole with validate_registry (unless
    validate is false: a caller that tells a bad field from a conflict runs it itself)."""
    clusters_data = _list(clusters_data, "clusters", source)
    registry = Registry(
        clusters=tuple(
            cluster_from_data(item, f"clusters[{index}]", source) for index, item in enumerate(clusters_data)
        )
    )
    if validate:
        validate_registry(registry, source)
    return registry


def registry_file_from_data(data: object, source: str) -> Registry:
    """A registry file (`nlbflow apply`, `nlbflow export`): a mapping with `clusters:` and nothing else."""
    fields = _fields(data, "", source, required=("clusters",), optional=())
    return registry_from_data(fields["clusters"], source)


_SWITCHES = ("normal_fallback", "source_masking")
_PUNT_RATES = ("punt_rate_per_port", "punt_rate_total")
_RATES = (*_PUNT_RATES, "slow_path_rate")  # slow_path_rate: the switch's slow-path meter (docs/switch-mode.md)
MAX_PUNT_RATE = 2**32 - 1  # an OpenFlow meter band's rate field


def _settings_from_data(data: object, key: str, source: str) -> Settings:
    # `switches` is read by config_from_data (fabric_from_data); named here for the known-keys message
    fields = _fields(data, key, source, required=(), optional=(*_SWITCHES, *_RATES, "locations", "switches"))
    locations = _locations_from_data(fields.pop("locations", {}), _join(key, "locations"), source)
    for name, value in fields.items():
        if name in _SWITCHES and not isinstance(value, bool):
            raise ConfigError(source, _join(key, name), f"expected true or false, got {_describe(value)}")
        if name in _RATES and not (
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_PUNT_RATE
        ):
            raise ConfigError(
                source,
                _join(key, name),
                f"expected packets per second, an integer from 1 to {MAX_PUNT_RATE}, got {_describe(value)}",
            )
    settings = Settings(**fields, locations=locations)
    if settings.punt_rate_per_port > settings.punt_rate_total:
        raise ConfigError(
            source,
            _join(key, "punt_rate_per_port"),
            f"{settings.punt_rate_per_port} is above punt_rate_total ({settings.punt_rate_total})",
        )
    return settings


def _locations_from_data(data: object, key: str, source: str) -> LocationSettings:
    """fabric.locations: how member locations are confirmed (docs/trust.md); each key has a default."""
    durations = ("confirm_seconds", "idle_seconds")
    counts = ("unanswered_probes", "moves_per_minute")
    fields = _fields(data, key, source, required=(), optional=durations + counts)
    for name, value in fields.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name in durations and not (number and 0 < value <= 3600):
            raise ConfigError(
                source, _join(key, name), f"expected seconds (above 0, at most 3600), got {_describe(value)}"
            )
        if name in counts and not (number and isinstance(value, int) and 1 <= value <= 1000):
            raise ConfigError(source, _join(key, name), f"expected an integer from 1 to 1000, got {_describe(value)}")
    if fields.get("confirm_seconds", LocationSettings.confirm_seconds) >= fields.get(
        "idle_seconds", LocationSettings.idle_seconds
    ):
        raise ConfigError(source, _join(key, "confirm_seconds"), "must be shorter than idle_seconds")
    return LocationSettings(**{name: float(value) if name in durations else value for name, value in fields.items()})


def _controller_from_data(data: object, key: str, source: str) -> ControllerSettings:
    fields = _fields(data, key, source, required=(), optional=("rest", "state_file"))
    rest_key = _join(key, "rest")
    rest = _fields(
        fields.get("rest", {}),
        rest_key,
        source,
        required=(),
        optional=("listen", "token_file", "hosts", "max_body_bytes"),
    )
    host, port = _listen(rest.get("listen", "127.0.0.1:8080"), _join(rest_key, "listen"), source)
    token_file = _path(rest["token_file"], _join(rest_key, "token_file"), source) if "token_file" in rest else None
    if token_file is None and not ipaddress.ip_address(host).is_loopback:
        raise ConfigError(
            source,
            _join(rest_key, "listen"),
            f"{host} is not a loopback address: the API would be open to the network; set {rest_key}.token_file",
        )
    hosts = _host_names(rest.get("hosts", []), _join(rest_key, "hosts"), source)
    max_body_bytes = rest.get("max_body_bytes", ControllerSettings.rest_max_body_bytes)
    if not _is_int(max_body_bytes) or not MIN_BODY_LIMIT <= max_body_bytes <= MAX_BODY_LIMIT:
        raise ConfigError(
            source,
            _join(rest_key, "max_body_bytes"),
            f"{max_body_bytes!r} is not a body size limit (an integer from {MIN_BODY_LIMIT} to {MAX_BODY_LIMIT})",
        )
    state_file = _path(fields["state_file"], _join(key, "state_file"), source) if "state_file" in fields else None
    return ControllerSettings(
        rest_host=host,
        rest_port=port,
        token_file=token_file,
        state_file=state_file,
        rest_hosts=hosts,
        rest_max_body_bytes=max_body_bytes,
    )


def _host_names(value: object, key: str, source: str) -> tuple[str, ...]:
    """The names besides the listen address that clients may put in the Host header (lower case)."""
    names = _list(value, key, source)
    for index, name in enumerate(names):
        if not isinstance(name, str) or not _HOST_NAME_RE.fullmatch(name):
            raise ConfigError(
                source, f"{key}[{index}]", f"{name!r} is not a host name (letters, digits, '-' and '.', no port)"
            )
    return tuple(name.lower().rstrip(".") for name in names)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_token_file(path: str) -> str:
    """The REST bearer token: the file's content without surrounding white space; never empty."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read the token file: {getattr(exc, 'strerror', None) or exc}") from None
    if not token:
        raise ConfigError(path, "", "the token file is empty")
    return token


def _listen(value: object, key: str, source: str) -> tuple[str, int]:
    """HOST:PORT with an IPv4 host ([IPv6]:PORT too): the REST listener's address."""
    text = value if isinstance(value, str) else ""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        port_number = int(port)
    except ValueError:
        port_number = 0
    if not 1 <= port_number <= 65535:
        raise ConfigError(
            source, key, f"{value!r} is not HOST:PORT (an IP address and a TCP port, e.g. 127.0.0.1:8080)"
        )
    return host, port_number


def _path(value: object, key: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(source, key, f"expected a file path, got {_describe(value)}")
    return value


def cluster_from_data(data: object, key: str, source: str) -> Cluster:
    """One cluster's own fields; validate_registry() checks it against its members and other clusters."""
    fields = _fields(
        data,
        key,
        source,
        required=("name", "cluster_ip"),
        optional=("cluster_ips", "cluster_mac", "mode", "arp", "members"),
    )
    name = _name(fields["name"], _join(key, "name"), source)
    cluster_ip = _address(parse_host_ip, fields["cluster_ip"], _join(key, "cluster_ip"), source)
    cluster_ips = _addresses(fields.get("cluster_ips", []), _join(key, "cluster_ips"), source)
    mode_value = fields.get("mode", ClusterMode.UNICAST.value)
    if not isinstance(mode_value, str) or mode_value not in {mode.value for mode in ClusterMode}:
        raise ConfigError(
            source, _join(key, "mode"), f"{mode_value!r} is not a cluster mode (expected unicast, multicast or igmp)"
        )
    mode = ClusterMode(mode_value)
    if "cluster_mac" in fields:
        cluster_mac = _cluster_mac(fields["cluster_mac"], mode, _join(key, "cluster_mac"), source)
    elif is_ipv6(cluster_ip):
        raise ConfigError(
            source,
            _join(key, "cluster_mac"),
            f"required with an IPv6 cluster_ip ({cluster_ip}): NLB derives the cluster MAC from an IPv4 address",
        )
    else:
        cluster_mac = DEFAULT_CLUSTER_MAC[mode](cluster_ip)
    arp = fields.get("arp", ArpMode.SWITCH.value)
    if not isinstance(arp, str) or arp not in {arp_mode.value for arp_mode in ArpMode}:
        raise ConfigError(source, _join(key, "arp"), f"{arp!r} is not an ARP mode (expected switch, proxy or relay)")
    members_key = _join(key, "members")
    members_data = _list(fields.get("members", []), members_key, source)
    members = tuple(
        member_from_data(item, f"{members_key}[{index}]", source, mode) for index, item in enumerate(members_data)
    )
    return Cluster(
        name=name,
        cluster_ip=cluster_ip,
        cluster_mac=cluster_mac,
        arp=ArpMode(arp),
        mode=mode,
        members=members,
        cluster_ips=cluster_ips,
    )


def member_from_data(data: object, key: str, source: str, mode: ClusterMode = ClusterMode.UNICAST) -> Member:
    """One member's own fields; validate_registry() checks it against the other members.

    `mac` is the member's dedicated MAC in unicast mode; in the multicast modes, where members keep their
    own NICs' MACs, it is that NIC MAC, and the member's probe answers must carry it (docs/trust.md).
    """
    fields = _fields(data, key, source, required=("ip",), optional=("ips", "mac", "dpid", "port"))
    if isinstance(fields["ip"], str) and ":" in fields["ip"]:
        raise ConfigError(
            source,
            _join(key, "ip"),
            f"{fields['ip']!r}: a member's primary ip is IPv4 (nlbflow locates members by ARP probes for it);"
            " give its IPv6 addresses in ips",
        )
    ip = _address(parse_host_ipv4, fields["ip"], _join(key, "ip"), source)
    ips = _addresses(fields.get("ips", []), _join(key, "ips"), source)
    given = _address(parse_unicast_mac, fields["mac"], _join(key, "mac"), source) if "mac" in fields else None
    mac = given if given is not None and mode == ClusterMode.UNICAST else dedicated_mac(ip)
    own_mac = given if mode != ClusterMode.UNICAST else None
    if ("dpid" in fields) != ("port" in fields):
        given, missing = ("dpid", "port") if "dpid" in fields else ("port", "dpid")
        raise ConfigError(source, _join(key, given), f"given without {missing}: pin a member with both or neither")
    dpid = _dpid(fields["dpid"], _join(key, "dpid"), source) if "dpid" in fields else None
    port = _port(fields["port"], _join(key, "port"), source) if "port" in fields else None
    return Member(ip=ip, dedicated_mac=mac, dpid=dpid, port=port, own_mac=own_mac, ips=ips)


def _addresses(value: object, key: str, source: str) -> tuple[str, ...]:
    """A list of more addresses (cluster_ips, a member's ips), IPv4 or IPv6; duplicates are validate_registry's."""
    return tuple(
        _address(parse_host_ip, item, f"{key}[{index}]", source) for index, item in enumerate(_list(value, key, source))
    )


def validate_registry(registry: Registry, source: str) -> None:
    """What spans clusters and members: each name, address, cookie id and switch port has one owner.

    Cluster IPs and MACs are claimed before any member's, so a member clashing with a cluster later
    in the list is still caught.
    """
    names: dict[str, str] = {}
    cluster_ids: dict[int, str] = {}
    ips: dict[str, str] = {}
    macs: dict[str, str] = {PROBE_MAC: "reserved for the app's own ARP probes"}
    locations: dict[tuple[int, int], str] = {}
    for index, cluster in enumerate(registry.clusters):
        key = f"clusters[{index}]"
        _claim(names, cluster.name, f"the name of {key}", f"{cluster.name!r}", source, f"{key}.name")
        _claim(
            cluster_ids,
            cookies.cluster_id(cluster.name),
            f"the cookie id of cluster {cluster.name!r}",
            f"the flow-cookie id 0x{cookies.cluster_id(cluster.name):04x} of {cluster.name!r}",
            source,
            f"{key}.name",
            hint="; rename one of the clusters",
        )
        owner = f"cluster {cluster.name!r}"
        _claim(ips, cluster.cluster_ip, f"the cluster IP of {owner}", cluster.cluster_ip, source, f"{key}.cluster_ip")
        for vip_index, vip in enumerate(cluster.cluster_ips):
            _claim(ips, vip, f"a cluster IP of {owner}", vip, source, f"{key}.cluster_ips[{vip_index}]")
        _claim(
            macs, cluster.cluster_mac, f"the cluster MAC of {owner}", cluster.cluster_mac, source, f"{key}.cluster_mac"
        )
    for index, cluster in enumerate(registry.clusters):
        member_ids: dict[int, str] = {0: "reserved for the flows of the whole cluster"}
        for member_index, member in enumerate(cluster.members):
            key = f"clusters[{index}].members[{member_index}]"
            owner = f"member {member.ip} of cluster {cluster.name!r}"
            _claim(ips, member.ip, f"the IP of a member of cluster {cluster.name!r}", member.ip, source, f"{key}.ip")
            for address_index, address in enumerate(member.ips):
                what = f"an address of {owner}"
                _claim(ips, address, what, address, source, f"{key}.ips[{address_index}]")
            _claim(
                member_ids,
                cookies.member_id(member.ip),
                f"the cookie id of member {member.ip} in the same cluster",
                f"the flow-cookie id 0x{cookies.member_id(member.ip):04x} of {member.ip}",
                source,
                f"{key}.ip",
                hint="; their flows could not be told apart: give the member another dedicated IP",
            )
            _claim(
                macs, member.dedicated_mac, f"the dedicated MAC of {owner}", member.dedicated_mac, source, f"{key}.mac"
            )
            if member.own_mac is not None:
                _claim(macs, member.own_mac, f"the NIC MAC of {owner}", member.own_mac, source, f"{key}.mac")
            if member.pinned:
                _claim(
                    locations,
                    (member.dpid, member.port),
                    f"where {owner} is attached",
                    f"dpid {member.dpid:#x} port {member.port}",
                    source,
                    f"{key}.port",
                )


def fabric_from_data(data: object, key: str, source: str) -> Fabric:
    """A `fabric.switches:` list: every entry checked with switch_from_data (keys `fabric.switches[1].name`);
    what spans entries, and the registry's pinned members, is validate_fabric's to check."""
    switches = _list(data, key, source)
    return Fabric(
        switches=tuple(switch_from_data(item, f"{key}[{index}]", source) for index, item in enumerate(switches))
    )


def switch_from_data(data: object, key: str, source: str, dpid: int | None = None) -> SwitchConfig:
    """One switch's own fields. With dpid given (the body of PUT /nlb/switches/{dpid}, whose dpid is in the
    URL) the entry holds only `name` and `uplinks`."""
    required = () if dpid is not None else ("dpid",)
    fields = _fields(data, key, source, required=required, optional=("name", "uplinks"))
    if dpid is None:
        dpid = _dpid(fields["dpid"], _join(key, "dpid"), source)
    name = fields.get("name")
    if name is not None:
        name = _name(name, _join(key, "name"), source)
    uplinks_key = _join(key, "uplinks")
    uplinks = tuple(
        _uplink(value, f"{uplinks_key}[{index}]", source)
        for index, value in enumerate(_list(fields.get("uplinks", []), uplinks_key, source))
    )
    return SwitchConfig(dpid=dpid, name=name, uplinks=uplinks)


def _uplink(value: object, key: str, source: str) -> int | str:
    """An OpenFlow port number, or a port's name as OVS names it. A string is always a name ("5" quoted
    names a port called 5): the strict loader keeps ints as ints, so nothing is guessed. Digits with a
    leading zero are refused: unquoted, YAML 1.1 would read 010 as octal, and the strict loader keeps it
    as the text "010", which must not pass as a name when port 10 (or 8) was meant."""
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and value.startswith("0"):
            raise ConfigError(
                source,
                key,
                f"{value!r} is ambiguous: write {int(value)} for the port number (a leading zero reads as octal"
                " in YAML 1.1); a port name of digits may not start with 0",
            )
        if _PORT_NAME_RE.fullmatch(value):
            return value
        raise ConfigError(
            source,
            key,
            f"{value!r} is not a port name (1 to 255 characters, no white space or control characters)"
            " nor a port number",
        )
    return _port(value, key, source)


def validate_fabric(fabric: Fabric, registry: Registry, source: str, key: str = "fabric.switches") -> None:
    """What spans switches, and the registry: each dpid and name once, each uplink once on its switch, and no
    member pinned to a port that is a numbered uplink of its switch (members are never on an uplink).
    key names the list in errors (the store's table is `switches`)."""
    dpids: dict[int, str] = {}
    names: dict[str, str] = {}
    for index, switch in enumerate(fabric.switches):
        entry = f"{key}[{index}]"
        _claim(dpids, switch.dpid, f"the dpid of {entry}", f"dpid {switch.dpid:016x}", source, _join(entry, "dpid"))
        if switch.name is not None:
            what = f"the name {switch.name!r}"
            _claim(names, switch.name, f"the name of {entry}", what, source, _join(entry, "name"))
        check_uplinks(switch, registry, source, entry)


def check_uplinks(switch: SwitchConfig, registry: Registry, source: str, key: str = "") -> None:
    """One switch's uplinks: none listed twice, none a port a member is pinned to (in time proportional to
    the switch's uplinks and the members pinned on it)."""
    uplinks: dict[tuple[str, int | str], str] = {}  # by kind too: port 5 and the port named "5" differ
    for index, uplink in enumerate(switch.uplinks):
        _claim(
            uplinks,
            (type(uplink).__name__, uplink),
            f"uplinks[{index}] of this switch",
            f"the uplink {uplink!r}",
            source,
            f"{_join(key, 'uplinks')}[{index}]",
        )
    pinned = registry.pinned_on(switch.dpid)
    numbered = {uplink: index for index, uplink in enumerate(switch.uplinks) if isinstance(uplink, int)}
    for (cluster, ip), port in sorted(pinned.items()):
        if port in numbered:
            raise ConfigError(
                source,
                f"{_join(key, 'uplinks')}[{numbered[port]}]",
                f"port {port} of dpid {switch.dpid:016x} is where member {ip} of cluster {cluster!r} is pinned:"
                " members are never on an uplink",
            )


def _claim(owners: dict, value: object, owner: str, what: str, source: str, key: str, hint: str = "") -> None:
    """Record owner as holding value; a second holder is an error naming the first."""
    if value in owners:
        raise ConfigError(source, key, f"{what} is already {owners[value]}{hint}")
    owners[value] = owner


def _fields(data: object, key: str, source: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict:
    """A mapping with every required key and no unknown key: a typo must not pass as a missing option."""
    if not isinstance(data, dict):
        raise ConfigError(source, key, f"expected a mapping, got {_describe(data)}")
    known = required + optional
    for name in data:
        if name not in known:
            raise ConfigError(source, _join(key, str(name)), f"unknown key (known keys: {', '.join(known)})")
    for name in required:
        if name not in data:
            raise ConfigError(source, _join(key, name), "required key is missing")
    return data


def _list(data: object, key: str, source: str) -> list:
    if not isinstance(data, list):
        raise ConfigError(source, key, f"expected a list, got {_describe(data)}")
    return data


def _name(value: object, key: str, source: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(source, key, f"expected a string, got {_describe(value)}")
    if not NAME_RE.fullmatch(value):
        raise ConfigError(
            source,
            key,
            f"{value!r} is not a valid name: 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return value


def _cluster_mac(value: object, mode: ClusterMode, key: str, source: str) -> str:
    """Unicast mode needs a locally administered unicast MAC (it is the members' NIC MAC, and the cluster's
    delivery flow outranks NORMAL); the multicast modes a multicast one."""
    if mode == ClusterMode.UNICAST:
        mac = _address(parse_unicast_mac, value, key, source)
        if not is_locally_administered_mac(mac):
            raise ConfigError(
                source,
                key,
                f"{mac} is a globally administered (vendor) MAC: a unicast cluster MAC must be locally administered"
                " (second-lowest bit of the first octet set, as NLB's own 02:bf:W:X:Y:Z), because the cluster's"
                " delivery flow outranks NORMAL and would take the traffic of the host that owns this MAC",
            )
        return mac
    mac = _address(parse_mac, value, key, source)
    if not is_multicast_mac(mac) or mac == BROADCAST_MAC:
        raise ConfigError(source, key, f"{mac} is not a multicast MAC, as {mode.value} mode needs")
    return mac


def _address(parse: Callable[[object], str], value: object, key: str, source: str) -> str:
    try:
        return parse(value)
    except AddressError as exc:
        raise ConfigError(source, key, str(exc)) from None


def _dpid(value: object, key: str, source: str) -> int:
    """An int, the 16 hex digits OVS prints, or 0x hex: all name the same 64-bit datapath id."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_DPID:
        return value
    if isinstance(value, str) and _DPID_RE.fullmatch(value):
        return int(value, 16)
    raise ConfigError(
        source,
        key,
        f"{value!r} is not a datapath id (an integer below 2**64, 16 hex digits as OVS prints it, or 0x hex)",
    )


def _port(value: object, key: str, source: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_PORT:
        return value
    raise ConfigError(
        source, key, f"{value!r} is not a switch port (an integer from 1 to {MAX_PORT:#x}; OpenFlow reserves the rest)"
    )


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}"


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name
