from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from flows import config as config_module
from flows import cookies
from flows.config import ConfigError, load_config, parse_config
from flows.model import ArpMode, Cluster, Config, Fabric, Member, Registry, Settings, SwitchConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"

# Found by search: pairs whose 16-bit cookie ids collide.
COLLIDING_NAMES = ("c51", "c355")
COLLIDING_IPS = ("10.0.0.78", "10.1.0.78")
VIP = "cluster_ip: 10.0.0.100, "


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "config.yaml")


def rejection(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.source == "config.yaml"
    return caught.value


def test_colliding_pairs_really_collide():
    assert cookies.cluster_id(COLLIDING_NAMES[0]) == cookies.cluster_id(COLLIDING_NAMES[1])
    assert cookies.member_id(COLLIDING_IPS[0]) == cookies.member_id(COLLIDING_IPS[1])


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param("switches: {}", "switches", "unknown key", id="unknown-top-level-key"),
        pytest.param("fabric: {flood: true}", "fabric.flood", "unknown key", id="unknown-fabric-key"),
        pytest.param(
            "clusters: [{name: web, cluster_ip: 10.0.0.100, vip: 10.0.0.101}]",
            "clusters[0].vip",
            "unknown key",
            id="unknown-cluster-key",
        ),
        pytest.param(
            "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, prot: 1}]}]",
            "clusters[0].members[0].prot",
            "unknown key",
            id="unknown-member-key",
        ),
        pytest.param("fabric: []", "fabric", "expected a mapping, got a list", id="fabric-not-a-mapping"),
        pytest.param(
            "fabric: {normal_fallback: 1}",
            "fabric.normal_fallback",
            "expected true or false, got integer 1",
            id="normal-fallback-not-a-boolean",
        ),
        pytest.param("clusters: web", "clusters", "expected a list, got string 'web'", id="clusters-not-a-list"),
        pytest.param("clusters:", "clusters", "expected a list, got null", id="clusters-null"),
        pytest.param(
            "clusters: [web]", "clusters[0]", "expected a mapping, got string 'web'", id="cluster-not-a-mapping"
        ),
        pytest.param(
            "clusters: [{name: web, cluster_ip: 10.0.0.100, members: {ip: 10.0.0.11}}]",
            "clusters[0].members",
            "expected a list, got a mapping",
            id="members-not-a-list",
        ),
        pytest.param(
            "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [10.0.0.11]}]",
            "clusters[0].members[0]",
            "expected a mapping, got string '10.0.0.11'",
            id="member-not-a-mapping",
        ),
        pytest.param(
            "clusters: [{cluster_ip: 10.0.0.100}]", "clusters[0].name", "required key is missing", id="no-name"
        ),
        pytest.param(
            "clusters: [{name: web}]", "clusters[0].cluster_ip", "required key is missing", id="no-cluster-ip"
        ),
        pytest.param(
            "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{mac: 02:de:0a:00:00:0b}]}]",
            "clusters[0].members[0].ip",
            "required key is missing",
            id="no-member-ip",
        ),
    ],
)
def test_rejects_unknown_keys_wrong_types_and_missing_keys(text, key, problem):
    error = rejection(text)
    assert error.key == key
    assert error.problem.startswith(problem)
    assert str(error) == f"config.yaml: {key}: {error.problem}"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param(
            """\
            clusters: []
            clusters: []
            """,
            "clusters",
            "duplicate key on line 2 (first on line 1)",
            id="top-level",
        ),
        pytest.param(
            """\
            clusters:
              - name: web
                cluster_ip: 10.0.0.100
                name: api
            """,
            "clusters[0].name",
            "duplicate key on line 4 (first on line 2)",
            id="in-a-cluster",
        ),
        pytest.param(
            "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, ip: 10.0.0.12}]}]",
            "clusters[0].members[0].ip",
            "duplicate key on line 1 (first on line 1)",
            id="in-a-flow-mapping",
        ),
    ],
)
def test_rejects_duplicate_keys_with_path_and_line(text, key, problem):
    error = rejection(text)
    assert (error.key, error.problem) == (key, problem)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("''", "'' is not a valid name"),
        ("123", "expected a string, got integer 123"),
        ("[web]", "expected a string, got a list"),
        ("web site", "'web site' is not a valid name"),
        ("-web", "'-web' is not a valid name"),
        ('"web\\n"', "'web\\n' is not a valid name"),
        ("a" * 64, f"'{'a' * 64}' is not a valid name"),
    ],
)
def test_rejects_empty_non_string_and_malformed_names(name, problem):
    error = rejection(f"clusters: [{{name: {name}, cluster_ip: 10.0.0.100}}]")
    assert error.key == "clusters[0].name"
    assert error.problem.startswith(problem)


@pytest.mark.parametrize(
    ("fields", "key", "problem"),
    [
        ("cluster_ip: 10.0.0.300", "cluster_ip", "'10.0.0.300' is not an IPv4 or IPv6 address"),
        ("cluster_ip: 0.0.0.0", "cluster_ip", "0.0.0.0 cannot be a host address"),
        ("cluster_ip: 0.1.2.3", "cluster_ip", "0.1.2.3 cannot be a host address (0.0.0.0/8 is 'this network'"),
        (VIP + "members: [{ip: 0.0.0.1}]", "members[0].ip", "0.0.0.1 cannot be a host address (0.0.0.0/8"),
        (VIP + "members: [{ip: 127.0.0.5}]", "members[0].ip", "127.0.0.5 cannot be a host address"),
        (VIP + "cluster_mac: '02:bf:0a-00:00:64'", "cluster_mac", "'02:bf:0a-00:00:64' is not a MAC address"),
        (VIP + "cluster_mac: '02:bf:0a:00:00:64 '", "cluster_mac", "'02:bf:0a:00:00:64 ' is not a MAC address"),
        (VIP + 'cluster_mac: "02:bf:0a:00:00:64\\n"', "cluster_mac", "'02:bf:0a:00:00:64\\n' is not a MAC"),
        (VIP + "cluster_mac: 02:bf:0a:00:00", "cluster_mac", "'02:bf:0a:00:00' is not a MAC address"),
        (VIP + "cluster_mac: 03:bf:0a:00:00:64", "cluster_mac", "03:bf:0a:00:00:64 is a multicast MAC"),
        (VIP + "cluster_mac: 00:00:00:00:00:00", "cluster_mac", "00:00:00:00:00:00 is the zero MAC"),
        (VIP + "mode: broadcast", "mode", "'broadcast' is not a cluster mode (expected unicast, multicast or igmp)"),
        (VIP + "arp: answer", "arp", "'answer' is not an ARP mode (expected switch, proxy or relay)"),
        (VIP + "arp: [proxy]", "arp", "['proxy'] is not an ARP mode"),
        (VIP + "members: [{ip: 10.0.0.300}]", "members[0].ip", "'10.0.0.300' is not an IPv4 address"),
        (
            VIP + "members: [{ip: 10.0.0.11, mac: 01:00:5e:00:00:01}]",
            "members[0].mac",
            "01:00:5e:00:00:01 is a multicast MAC",
        ),
        (
            VIP + "members: [{ip: 10.0.0.11, mac: 00:00:00:00:00:00}]",
            "members[0].mac",
            "00:00:00:00:00:00 is the zero MAC",
        ),
        (VIP + "members: [{ip: 10.0.0.11, mac: nonsense}]", "members[0].mac", "'nonsense' is not a MAC address"),
    ],
)
def test_rejects_malformed_addresses_and_modes(fields, key, problem):
    error = rejection(f"clusters: [{{name: web, {fields}}}]")
    assert error.key == f"clusters[0].{key}"
    assert error.problem.startswith(problem)
    assert str(error).startswith(f"config.yaml: clusters[0].{key}: {problem}")


@pytest.mark.parametrize(
    ("location", "key", "problem"),
    [
        ("dpid: 1", "dpid", "given without port"),
        ("port: 1", "port", "given without dpid"),
        ("dpid: 1, port: true", "port", "True is not a switch port"),
        ("dpid: 1, port: 0", "port", "0 is not a switch port"),
        ("dpid: 1, port: 0xffffff00", "port", "4294967040 is not a switch port"),
        ("dpid: 1, port: '1'", "port", "'1' is not a switch port"),
        ("dpid: 1, port: 010", "port", "'010' is not a switch port"),
        ("dpid: true, port: 1", "dpid", "True is not a datapath id"),
        ("dpid: -1, port: 1", "dpid", "-1 is not a datapath id"),
        ("dpid: 18446744073709551616, port: 1", "dpid", "18446744073709551616 is not a datapath id"),
        ("dpid: '1', port: 1", "dpid", "'1' is not a datapath id"),
        ("dpid: '0x10000000000000000', port: 1", "dpid", "'0x10000000000000000' is not a datapath id"),
    ],
)
def test_rejects_bad_member_locations(location, key, problem):
    error = rejection(f"clusters: [{{name: web, cluster_ip: 10.0.0.100, members: [{{ip: 10.0.0.11, {location}}}]}}]")
    assert error.key == f"clusters[0].members[0].{key}"
    assert error.problem.startswith(problem)


@pytest.mark.parametrize(
    ("clusters", "key", "problem"),
    [
        pytest.param(
            ["{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11}, {ip: 10.0.0.11}]}"],
            "clusters[0].members[1].ip",
            "10.0.0.11 is already the IP of a member of cluster 'web'",
            id="member-ip-twice-in-a-cluster",
        ),
        pytest.param(
            [
                "{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11}]}",
                "{name: api, cluster_ip: 10.0.0.101, members: [{ip: 10.0.0.11}]}",
            ],
            "clusters[1].members[0].ip",
            "10.0.0.11 is already the IP of a member of cluster 'web'",
            id="member-ip-in-two-clusters",
        ),
        pytest.param(
            ["{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.100}]}"],
            "clusters[0].members[0].ip",
            "10.0.0.100 is already the cluster IP of cluster 'web'",
            id="member-ip-is-its-cluster-ip",
        ),
        pytest.param(
            [
                "{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.101}]}",
                "{name: api, cluster_ip: 10.0.0.101}",
            ],
            "clusters[0].members[0].ip",
            "10.0.0.101 is already the cluster IP of cluster 'api'",
            id="member-ip-is-a-later-cluster-ip",
        ),
        pytest.param(
            ["{name: web, cluster_ip: 10.0.0.100}", "{name: api, cluster_ip: 10.0.0.100}"],
            "clusters[1].cluster_ip",
            "10.0.0.100 is already the cluster IP of cluster 'web'",
            id="cluster-ip-twice",
        ),
        pytest.param(
            [
                "{name: web, cluster_ip: 10.0.0.100}",
                "{name: api, cluster_ip: 10.0.0.101, cluster_mac: 02:bf:0a:00:00:64}",
            ],
            "clusters[1].cluster_mac",
            "02:bf:0a:00:00:64 is already the cluster MAC of cluster 'web'",
            id="cluster-mac-twice",
        ),
        pytest.param(
            ["{name: web, cluster_ip: 10.0.0.100}", "{name: web, cluster_ip: 10.0.0.101}"],
            "clusters[1].name",
            "'web' is already the name of clusters[0]",
            id="name-twice",
        ),
        pytest.param(
            [
                f"{{name: {COLLIDING_NAMES[0]}, cluster_ip: 10.0.0.100}}",
                f"{{name: {COLLIDING_NAMES[1]}, cluster_ip: 10.0.0.101}}",
            ],
            "clusters[1].name",
            f"the flow-cookie id 0xb527 of '{COLLIDING_NAMES[1]}' is already the cookie id of cluster"
            f" '{COLLIDING_NAMES[0]}'; rename one of the clusters",
            id="names-collide-in-cookie-space",
        ),
        pytest.param(
            [
                "{name: web, cluster_ip: 10.0.0.100,"
                f" members: [{{ip: {COLLIDING_IPS[0]}}}, {{ip: {COLLIDING_IPS[1]}}}]}}"
            ],
            "clusters[0].members[1].ip",
            f"the flow-cookie id 0x004e of {COLLIDING_IPS[1]} is already the cookie id of member {COLLIDING_IPS[0]}"
            " in the same cluster; their flows could not be told apart: give the member another dedicated IP",
            id="member-ips-collide-in-cookie-space",
        ),
        pytest.param(
            ["{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.1.0.0}]}"],
            "clusters[0].members[0].ip",
            "the flow-cookie id 0x0000 of 10.1.0.0 is already reserved for the flows of the whole cluster;"
            " their flows could not be told apart: give the member another dedicated IP",
            id="member-ip-with-cookie-id-zero",
        ),
        pytest.param(
            [
                "{name: web, cluster_ip: 10.0.0.100,"
                " members: [{ip: 10.0.0.11}, {ip: 10.0.0.12, mac: 02:de:0a:00:00:0b}]}"
            ],
            "clusters[0].members[1].mac",
            "02:de:0a:00:00:0b is already the dedicated MAC of member 10.0.0.11 of cluster 'web'",
            id="dedicated-mac-twice",
        ),
        pytest.param(
            [
                "{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, mac: 02:bf:0a:00:00:65}]}",
                "{name: api, cluster_ip: 10.0.0.101}",
            ],
            "clusters[0].members[0].mac",
            "02:bf:0a:00:00:65 is already the cluster MAC of cluster 'api'",
            id="dedicated-mac-is-a-cluster-mac",
        ),
        pytest.param(
            [
                "{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, dpid: 1, port: 3}]}",
                "{name: api, cluster_ip: 10.0.0.101, members: [{ip: 10.0.0.21, dpid: '0000000000000001', port: 3}]}",
            ],
            "clusters[1].members[0].port",
            "dpid 0x1 port 3 is already where member 10.0.0.11 of cluster 'web' is attached",
            id="two-members-on-one-port",
        ),
    ],
)
def test_rejects_anything_claimed_twice(clusters, key, problem):
    error = rejection("clusters:\n" + "".join(f"  - {cluster}\n" for cluster in clusters))
    assert (error.key, error.problem) == (key, problem)
    assert str(error) == f"config.yaml: {key}: {problem}"


def test_rejects_a_top_level_that_is_not_a_mapping():
    error = rejection("- web")
    assert (error.key, error.problem) == ("", "expected a mapping, got a list")
    assert str(error) == "config.yaml: expected a mapping, got a list"


def test_rejects_invalid_yaml_with_its_line():
    error = rejection("clusters:\n  - name: web\n   cluster_ip: 10.0.0.100\n")
    assert error.key == ""
    assert error.problem.startswith("invalid YAML: line 3, column ")


def test_invalid_yaml_is_described_by_the_pure_python_parser_whichever_parser_read_it_first():
    error = rejection("clusters: *web\n")
    assert error.problem == "invalid YAML: line 1, column 11: found undefined alias 'web'"


def test_a_large_config_reads_the_same_whichever_parser_reads_it():
    text = "clusters:\n" + "".join(
        f"  - {{name: c{c}, cluster_ip: 10.200.0.{c + 1}, members: [{{ip: 10.1.0.{c + 1}, dpid: 0x10, port: 010}}]}}\n"
        for c in range(20)
    )
    assert config_module.parse_yaml(text, "x") == yaml.load(text, Loader=config_module._StrictLoader)


def test_rejects_an_unreadable_file_naming_it(tmp_path):
    path = str(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == path
    assert str(caught.value) == f"{path}: cannot read the file: No such file or directory"


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "clusters: []", "fabric: {}"])
def test_empty_config_is_an_empty_registry(text):
    assert parse(text) == Config()


def test_defaults_derive_macs_from_ips():
    config = parse("clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11}]}]")
    assert config == Config(
        registry=Registry(
            clusters=(
                Cluster(
                    name="web",
                    cluster_ip="10.0.0.100",
                    cluster_mac="02:bf:0a:00:00:64",
                    arp=ArpMode.SWITCH,
                    mode="unicast",
                    members=(Member(ip="10.0.0.11", dedicated_mac="02:de:0a:00:00:0b"),),
                ),
            )
        ),
        settings=Settings(normal_fallback=True),
    )


def test_explicit_values_are_kept_in_canonical_form():
    config = parse(
        """\
        fabric:
          normal_fallback: false
        clusters:
          - name: web
            cluster_ip: 10.0.0.100
            cluster_mac: 02-BF-0A-00-00-99
            mode: unicast
            arp: relay
            members:
              - {ip: 10.0.0.11, mac: 12:34:56:10:20:30, dpid: 1, port: 7}
        """
    )
    assert config.settings == Settings(normal_fallback=False)
    (cluster,) = config.registry.clusters
    assert (cluster.cluster_mac, cluster.arp) == ("02:bf:0a:00:00:99", ArpMode.RELAY)
    assert cluster.members == (Member(ip="10.0.0.11", dedicated_mac="12:34:56:10:20:30", dpid=1, port=7),)


@pytest.mark.parametrize(
    ("dpid", "expected"),
    [
        ("1", 1),
        ("'0000000000000001'", 1),
        ("0000000000000010", 0x10),  # unquoted: hex as OVS prints it, not YAML 1.1 octal
        ("00000000000000ab", 0xAB),
        ("'0x00ab'", 0xAB),
        ("0xAB", 0xAB),
        ("'ffffffffffffffff'", 2**64 - 1),
        ("18446744073709551615", 2**64 - 1),
    ],
)
def test_dpid_forms_normalize_to_int(dpid, expected):
    config = parse(
        f"clusters: [{{name: web, cluster_ip: 10.0.0.100, members: [{{ip: 10.0.0.11, dpid: {dpid}, port: 1}}]}}]"
    )
    assert config.registry.clusters[0].members[0].dpid == expected


def test_example_config_loads():
    config = load_config(str(EXAMPLE))
    assert [cluster.name for cluster in config.registry.clusters] == ["web", "api", "media"]
    assert config.registry.cluster_named("web").member_for_ip("10.0.0.11").pinned


def test_controller_section_defaults_to_loopback_8080_without_token():
    controller = parse_config("clusters: []", "c.yaml").controller
    assert (controller.rest_host, controller.rest_port, controller.token_file, controller.state_file) == (
        "127.0.0.1",
        8080,
        None,
        None,
    )
    assert (controller.rest_hosts, controller.rest_max_body_bytes) == ((), 65536)


def test_the_rest_host_names_and_body_limit_are_read():
    text = "controller: {rest: {hosts: [NLB.example.com, 'ctl.', nlb-1], max_body_bytes: 2048}}"
    controller = parse_config(text, "c.yaml").controller
    assert (controller.rest_hosts, controller.rest_max_body_bytes) == (("nlb.example.com", "ctl", "nlb-1"), 2048)


def test_controller_section_is_read():
    text = "controller: {rest: {listen: '10.1.2.3:9090', token_file: /etc/t}, state_file: /var/lib/s.yaml}"
    controller = parse_config(text, "c.yaml").controller
    assert (controller.rest_host, controller.rest_port, controller.token_file, controller.state_file) == (
        "10.1.2.3",
        9090,
        "/etc/t",
        "/var/lib/s.yaml",
    )


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param(
            "controller: {rest: {listen: '0.0.0.0:8080'}}",
            "controller.rest.listen",
            "0.0.0.0 is not a loopback address: the API would be open to the network; set controller.rest.token_file",
            id="non-loopback-without-token",
        ),
        pytest.param(
            "controller: {rest: {listen: 'localhost:80x'}}",
            "controller.rest.listen",
            "'localhost:80x' is not HOST:PORT (an IP address and a TCP port, e.g. 127.0.0.1:8080)",
            id="listen-not-host-port",
        ),
        pytest.param("controller: {rest: {port: 1}}", "controller.rest.port", "unknown key", id="unknown-rest-key"),
        pytest.param(
            "controller: {state_file: 3}", "controller.state_file", "expected a file path, got integer 3", id="bad-path"
        ),
        pytest.param(
            "controller: {rest: {max_body_bytes: 10}}",
            "controller.rest.max_body_bytes",
            "10 is not a body size limit (an integer from 1024 to 16777216)",
            id="body-limit-too-small",
        ),
        pytest.param(
            "controller: {rest: {max_body_bytes: '64k'}}",
            "controller.rest.max_body_bytes",
            "'64k' is not a body size limit (an integer from 1024 to 16777216)",
            id="body-limit-not-a-number",
        ),
        pytest.param(
            "controller: {rest: {max_body_bytes: true}}",
            "controller.rest.max_body_bytes",
            "True is not a body size limit (an integer from 1024 to 16777216)",
            id="body-limit-boolean",
        ),
        pytest.param(
            "controller: {rest: {hosts: nlb.example.com}}",
            "controller.rest.hosts",
            "expected a list, got string 'nlb.example.com'",
            id="hosts-not-a-list",
        ),
        pytest.param(
            "controller: {rest: {hosts: [ok, 'nlb.example.com:8080']}}",
            "controller.rest.hosts[1]",
            "'nlb.example.com:8080' is not a host name (letters, digits, '-' and '.', no port)",
            id="host-with-port",
        ),
        pytest.param(
            "controller: {rest: {hosts: ['*.example.com']}}",
            "controller.rest.hosts[0]",
            "'*.example.com' is not a host name (letters, digits, '-' and '.', no port)",
            id="host-wildcard",
        ),
    ],
)
def test_rejects_a_bad_controller_section(text, key, problem):
    error = rejection(text)
    assert (error.key, error.problem.split(" (known keys")[0]) == (key, problem)


@pytest.mark.parametrize(
    ("mode", "cluster_mac"),
    [("unicast", "02:bf:0a:00:00:64"), ("multicast", "03:bf:0a:00:00:64"), ("igmp", "01:00:5e:7f:00:64")],
)
def test_each_mode_derives_its_cluster_mac_as_windows_nlb_does(mode, cluster_mac):
    cluster = parse_config(f"clusters: [{{name: web, cluster_ip: 10.0.0.100, mode: {mode}}}]").registry.clusters[0]
    assert (cluster.mode.value, cluster.cluster_mac, cluster.unicast) == (mode, cluster_mac, mode == "unicast")


@pytest.mark.parametrize(
    ("mode", "cluster_mac", "problem"),
    [
        ("multicast", "02:bf:0a:00:00:64", "02:bf:0a:00:00:64 is not a multicast MAC, as multicast mode needs"),
        ("igmp", "ff:ff:ff:ff:ff:ff", "ff:ff:ff:ff:ff:ff is not a multicast MAC, as igmp mode needs"),
        ("unicast", "03:bf:0a:00:00:64", "03:bf:0a:00:00:64 is a multicast MAC (lowest bit of the first octet set)"),
        (
            "unicast",
            "00:15:5d:0a:00:64",
            "00:15:5d:0a:00:64 is a globally administered (vendor) MAC: a unicast cluster MAC must be locally"
            " administered (second-lowest bit of the first octet set, as NLB's own 02:bf:W:X:Y:Z), because the"
            " cluster's delivery flow outranks NORMAL and would take the traffic of the host that owns this MAC",
        ),
        ("unicast", "fc:bf:0a:00:00:64", "fc:bf:0a:00:00:64 is a globally administered (vendor) MAC: a unicast"),
    ],
)
def test_the_cluster_mac_must_suit_the_mode(mode, cluster_mac, problem):
    error = rejection(f"clusters: [{{name: web, cluster_ip: 10.0.0.100, mode: {mode}, cluster_mac: '{cluster_mac}'}}]")
    assert (error.key, error.problem[: len(problem)]) == ("clusters[0].cluster_mac", problem)


@pytest.mark.parametrize(
    ("mode", "cluster_mac"),
    [
        ("unicast", "02:bf:0a:00:00:64"),
        ("unicast", "0a:00:00:00:00:01"),  # any locally administered unicast MAC, not only NLB's own
        ("unicast", "ae:00:27:00:00:01"),
        ("multicast", "03:bf:0a:00:00:64"),
        ("multicast", "01:00:5e:00:00:64"),  # the multicast modes take any multicast MAC, as before
        ("igmp", "01:00:5e:7f:00:64"),
    ],
)
def test_a_cluster_mac_that_suits_the_mode_is_taken(mode, cluster_mac):
    text = f"clusters: [{{name: web, cluster_ip: 10.0.0.100, mode: {mode}, cluster_mac: '{cluster_mac}'}}]"
    assert parse_config(text).registry.clusters[0].cluster_mac == cluster_mac


def test_source_masking_can_be_turned_off():
    assert parse_config("fabric: {source_masking: false}").settings.source_masking is False


def test_switch_is_the_default_arp_mode_and_proxy_and_relay_stay():
    config = parse_config(
        "clusters: [{name: web, cluster_ip: 10.0.0.100, arp: proxy, members: [{ip: 10.0.0.11}]},"
        " {name: app, cluster_ip: 10.0.1.100}, {name: db, cluster_ip: 10.0.2.100, arp: relay}]"
    )
    web, app, db = config.registry.clusters
    assert (web.arp, app.arp, db.arp) == (ArpMode.PROXY, ArpMode.SWITCH, ArpMode.RELAY)
    assert [mode.value for mode in ArpMode] == ["proxy", "relay", "switch"]


def test_the_slow_path_rate_defaults_to_25000_and_is_configurable():
    assert Settings().slow_path_rate == 25000
    assert parse_config("fabric: {}").settings.slow_path_rate == 25000
    settings = parse_config("fabric: {slow_path_rate: 5000, punt_rate_per_port: 20}").settings
    assert (settings.slow_path_rate, settings.punt_rate_per_port, settings.punt_rate_total) == (5000, 20, 1000)
    assert parse_config("fabric: {slow_path_rate: 4294967295}").settings.slow_path_rate == 2**32 - 1
    assert parse_config("fabric: {slow_path_rate: 1}").settings.slow_path_rate == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "expected packets per second, an integer from 1 to 4294967295, got integer 0"),
        ("-1", "expected packets per second, an integer from 1 to 4294967295, got integer -1"),
        ("4294967296", "expected packets per second, an integer from 1 to 4294967295, got integer 4294967296"),
        ("true", "expected packets per second, an integer from 1 to 4294967295, got boolean True"),
        ("'25000'", "expected packets per second, an integer from 1 to 4294967295, got string '25000'"),
        ("2.5", "expected packets per second, an integer from 1 to 4294967295, got number 2.5"),
        ("null", "expected packets per second, an integer from 1 to 4294967295, got null None"),
    ],
)
def test_a_bad_slow_path_rate_is_refused_naming_the_key(value, problem):
    error = rejection(f"fabric: {{slow_path_rate: {value}}}")
    assert (error.key, error.problem) == ("fabric.slow_path_rate", problem)
    assert str(error) == f"config.yaml: fabric.slow_path_rate: {problem}"


def test_the_slow_path_rate_is_not_held_to_the_punt_rates():
    """It bounds the switch's own work, not what reaches the controller: below punt_rate_total is allowed."""
    settings = parse_config("fabric: {slow_path_rate: 10, punt_rate_total: 1000}").settings
    assert (settings.slow_path_rate, settings.punt_rate_total) == (10, 1000)


def test_a_misspelt_slow_path_rate_is_an_unknown_key_listing_it():
    error = rejection("fabric: {slow_path_rates: 100}")
    assert error.key == "fabric.slow_path_rates"
    assert "unknown key" in error.problem and "slow_path_rate" in error.problem


def test_the_probe_mac_is_reserved():
    error = rejection(
        "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, mac: '0e:4e:4c:00:00:01'}]}]"
    )
    assert (error.key, error.problem) == (
        "clusters[0].members[0].mac",
        "0e:4e:4c:00:00:01 is already reserved for the app's own ARP probes",
    )


# Registry files (`nlbflow apply`): the config's `clusters:` list alone, read by the same strict rules.


def test_a_registry_file_is_its_clusters_list_as_written(tmp_path):
    from flows.config import load_registry_file

    path = tmp_path / "registry.yaml"
    path.write_text(
        "clusters:\n  - {name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, dpid: 0x10, port: 1}]}\n"
    )
    assert load_registry_file(str(path)) == [
        {"name": "web", "cluster_ip": "10.0.0.100", "members": [{"ip": "10.0.0.11", "dpid": 16, "port": 1}]}
    ]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param("clusters: []\nclusters: []\n", "clusters", "duplicate key on line 2", id="duplicate"),
        pytest.param("fabric: {}\nclusters: []\n", "fabric", "unknown key (known keys: clusters)", id="config-key"),
        pytest.param("{}\n", "clusters", "required key is missing", id="no-clusters"),
        pytest.param("", "", "expected a mapping, got null", id="empty"),
        pytest.param(
            f"clusters:\n  - {{name: a, {VIP}members: [{{ip: 10.0.0.11}}]}}\n  - {{name: b, cluster_ip: 10.0.0.11}}\n",
            "clusters[0].members[0].ip",
            "10.0.0.11 is already the cluster IP of cluster 'b'",
            id="conflict",
        ),
        pytest.param(
            "clusters: [{name: a, cluster_ip: 10.0.0.1, members: [{ip: 1}]}]",
            "clusters[0].members[0].ip",
            "",
            id="field",
        ),
    ],
)
def test_a_registry_file_is_refused_naming_file_and_key(tmp_path, text, key, problem):
    from flows.config import load_registry_file

    path = tmp_path / "registry.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_registry_file(str(path))
    assert (caught.value.source, caught.value.key) == (str(path), key)
    assert caught.value.problem.startswith(problem), caught.value.problem


def test_registry_from_data_without_validation_leaves_the_conflicts_to_the_caller():
    from flows.config import registry_from_data, validate_registry

    twice = [{"name": "a", "cluster_ip": "10.0.0.1"}, {"name": "a", "cluster_ip": "10.0.0.2"}]
    registry = registry_from_data(twice, "request", validate=False)
    assert [c.name for c in registry.clusters] == ["a", "a"]
    with pytest.raises(ConfigError, match=r"clusters\[1\]\.name: 'a' is already the name of clusters\[0\]"):
        validate_registry(registry, "request")
    with pytest.raises(ConfigError, match=r"clusters\[1\]\.name"):
        registry_from_data(twice, "request")


# --- fabric.switches ------------------------------------------------------------------------------------

PINNED_WEB = """
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    members: [{ip: 10.0.0.11, dpid: "0000000000000001", port: 2}]
"""


def fabric_config(switches: str) -> str:
    entries = textwrap.indent(textwrap.dedent(switches), "    ")
    return f"fabric:\n  normal_fallback: true\n  switches:\n{entries}{PINNED_WEB}"


def test_fabric_switches_are_read_in_order_with_every_dpid_form_and_uplink_kind():
    config = parse(
        fabric_config(
            """
            - {dpid: "0000000000000001", name: hv1, uplinks: [5, patch-core, "7"]}
            - {dpid: 0x2}
            - {dpid: 3, uplinks: []}
            """
        )
    )
    assert config.fabric == Fabric(
        switches=(
            SwitchConfig(dpid=1, name="hv1", uplinks=(5, "patch-core", "7")),
            SwitchConfig(dpid=2),
            SwitchConfig(dpid=3),
        )
    )
    assert config.fabric.switch(1).name == "hv1" and config.fabric.switch(9) is None
    assert config.settings.normal_fallback is True


@pytest.mark.parametrize("text", ["", "fabric: {}", "fabric: {switches: []}", "fabric: {source_masking: true}"])
def test_no_switches_is_an_empty_fabric(text):
    assert parse(text).fabric == Fabric()


@pytest.mark.parametrize(
    ("switches", "key", "problem"),
    [
        pytest.param("{}", "fabric.switches", "expected a list, got a mapping", id="not-a-list"),
        pytest.param("[{name: hv1}]", "fabric.switches[0].dpid", "required key is missing", id="no-dpid"),
        pytest.param("[{dpid: 1, port: 2}]", "fabric.switches[0].port", "unknown key", id="unknown-key"),
        pytest.param("[{dpid: 0000000000000010x}]", "fabric.switches[0].dpid", "not a datapath id", id="bad-dpid"),
        pytest.param("[{dpid: '12'}]", "fabric.switches[0].dpid", "not a datapath id", id="dpid-short-hex"),
        pytest.param("[{dpid: -1}]", "fabric.switches[0].dpid", "not a datapath id", id="dpid-negative"),
        pytest.param("[{dpid: 1, name: 7}]", "fabric.switches[0].name", "expected a string", id="name-int"),
        pytest.param("[{dpid: 1, name: 'a b'}]", "fabric.switches[0].name", "not a valid name", id="name-space"),
        pytest.param("[{dpid: 1, uplinks: 5}]", "fabric.switches[0].uplinks", "expected a list", id="uplinks-int"),
        pytest.param(
            "[{dpid: 1, uplinks: [5, 0]}]", "fabric.switches[0].uplinks[1]", "not a switch port", id="uplink-0"
        ),
        pytest.param(
            "[{dpid: 1, uplinks: [0xffffff00]}]",
            "fabric.switches[0].uplinks[0]",
            "OpenFlow reserves the rest",
            id="uplink-reserved",
        ),
        pytest.param(
            "[{dpid: 1, uplinks: [true]}]", "fabric.switches[0].uplinks[0]", "not a switch port", id="uplink-bool"
        ),
        pytest.param(
            "[{dpid: 1, uplinks: ['']}]", "fabric.switches[0].uplinks[0]", "is not a port name", id="uplink-empty"
        ),
        pytest.param(
            "[{dpid: 1, uplinks: ['patch core']}]",
            "fabric.switches[0].uplinks[0]",
            "is not a port name",
            id="uplink-space",
        ),
        pytest.param(
            '[{dpid: 1, uplinks: ["a\\tb"]}]', "fabric.switches[0].uplinks[0]", "is not a port name", id="uplink-tab"
        ),
        pytest.param(
            f"[{{dpid: 1, uplinks: [{'x' * 256}]}}]",
            "fabric.switches[0].uplinks[0]",
            "is not a port name",
            id="uplink-too-long",
        ),
        pytest.param(
            "[{dpid: 1, uplinks: [{port: 5}]}]", "fabric.switches[0].uplinks[0]", "not a switch port", id="uplink-map"
        ),
        pytest.param(
            "[{dpid: 1, uplinks: [010]}]",
            "fabric.switches[0].uplinks[0]",
            "'010' is ambiguous: write 10 for the port number",
            id="uplink-leading-zero",
        ),
        pytest.param(
            '[{dpid: 1, uplinks: ["a\u0085b"]}]', "fabric.switches[0].uplinks[0]", "is not a port name", id="uplink-c1"
        ),
        pytest.param(
            "[{dpid: 1, uplinks: [5, 6, 5]}]",
            "fabric.switches[0].uplinks[2]",
            "the uplink 5 is already uplinks[0] of this switch",
            id="uplink-number-twice",
        ),
        pytest.param(
            "[{dpid: 1, uplinks: [core, core]}]",
            "fabric.switches[0].uplinks[1]",
            "the uplink 'core' is already uplinks[0] of this switch",
            id="uplink-name-twice",
        ),
        pytest.param(
            "[{dpid: 1}, {dpid: '0000000000000001'}]",
            "fabric.switches[1].dpid",
            "dpid 0000000000000001 is already the dpid of fabric.switches[0]",
            id="dpid-twice",
        ),
        pytest.param(
            "[{dpid: 1, name: hv1}, {dpid: 2, name: hv1}]",
            "fabric.switches[1].name",
            "the name 'hv1' is already the name of fabric.switches[0]",
            id="name-twice",
        ),
        pytest.param(
            "[{dpid: 1, uplinks: [7, 2]}]",
            "fabric.switches[0].uplinks[1]",
            "port 2 of dpid 0000000000000001 is where member 10.0.0.11 of cluster 'web' is pinned",
            id="member-pinned-to-uplink",
        ),
    ],
)
def test_rejects_bad_switches(switches, key, problem):
    error = rejection(f"fabric:\n  switches: {switches}\n{PINNED_WEB}")
    assert error.key == key
    assert problem in error.problem, error.problem


def test_an_uplink_named_like_the_pinned_port_or_on_another_switch_is_no_conflict():
    config = parse(fabric_config('- {dpid: 1, uplinks: ["2"]}\n- {dpid: 2, uplinks: [2]}\n'))
    assert config.fabric.switch(1).uplinks == ("2",) and config.fabric.switch(2).uplinks == (2,)
    assert config.fabric.switch(2).name is None


def test_switch_from_data_takes_the_dpid_of_a_rest_put_from_its_caller():
    switch = config_module.switch_from_data({"name": "hv1", "uplinks": [5]}, "", "request", dpid=7)
    assert switch == SwitchConfig(dpid=7, name="hv1", uplinks=(5,))
    with pytest.raises(ConfigError) as caught:
        config_module.switch_from_data({"dpid": 7}, "", "request", dpid=7)
    assert caught.value.key == "dpid" and "unknown key" in caught.value.problem


def test_the_example_configs_commented_switches_are_valid_once_uncommented():
    text = EXAMPLE.read_text()
    start = text.index("  # switches:")
    lines = text[start:].split("\n\n")[0].splitlines()
    uncommented = "\n".join("  " + line[4:] if line.startswith("  # ") else line for line in lines)
    config = parse(text[:start] + uncommented + "\n" + text[start:].split("\n\n", 1)[1])
    assert [(s.dpid, s.name, s.uplinks) for s in config.fabric.switches] == [
        (1, "hv1", (5, "patch-core")),
        (2, "hv2", ("patch-core",)),
    ]
    assert len(config.registry.clusters) == 3


def test_more_cluster_and_member_addresses_of_either_family_are_read_in_canonical_form():
    config = parse(
        """
        clusters:
          - name: web
            cluster_ip: 10.0.0.100
            cluster_ips: [FD00:10:0::100, 10.0.0.101]
            members:
              - {ip: 10.0.0.11, ips: ["fd00:10::11", 10.0.1.11]}
              - {ip: 10.0.0.12}
        """
    )
    cluster = config.registry.clusters[0]
    assert cluster.vips == ("10.0.0.100", "fd00:10::100", "10.0.0.101")
    first, second = cluster.members
    assert first.addresses == ("10.0.0.11", "fd00:10::11", "10.0.1.11")
    assert second.ips == ()
    assert first.dedicated_mac == "02:de:0a:00:00:0b"  # one dedicated MAC, whichever address resolves it
    assert cluster.member_for_address("fd00:10::11") is first
    assert cluster.member_for_address("10.0.1.11") is first
    assert cluster.member_for_ip("fd00:10::11") is None  # the primary DIP alone is the member's key
    assert config.registry.clusters_with_member_address("fd00:10::11") == (cluster,)


def test_an_ipv6_primary_cluster_ip_needs_its_cluster_mac():
    refused = rejection("clusters: [{name: web, cluster_ip: 'fd00:10::100'}]")
    assert refused.key == "clusters[0].cluster_mac"
    assert "required with an IPv6 cluster_ip (fd00:10::100)" in refused.problem
    config = parse("clusters: [{name: web, cluster_ip: 'fd00:10::100', cluster_mac: '02:bf:00:00:01:00'}]")
    assert config.registry.clusters[0].cluster_ip == "fd00:10::100"


@pytest.mark.parametrize(
    ("fields", "key", "problem"),
    [
        pytest.param(
            VIP + "members: [{ip: 'fd00:10::11'}]",
            "members[0].ip",
            "a member's primary ip is IPv4 (nlbflow locates members by ARP probes for it); give its IPv6 addresses"
            " in ips",
            id="ipv6-primary-member-ip",
        ),
        pytest.param(
            VIP + "members: [{ip: 10.0.0.11, ips: ['fe80::11']}]",
            "members[0].ips[0]",
            "fe80::11 cannot be registered: it is a link-local address",
            id="link-local-member-address",
        ),
        pytest.param(
            VIP + "cluster_ips: ['ff02::1']",
            "cluster_ips[0]",
            "ff02::1 cannot be registered: it is a multicast address",
            id="multicast-vip",
        ),
        pytest.param(VIP + "cluster_ips: ['::']", "cluster_ips[0]", "it is the unspecified address", id="unspecified"),
        pytest.param(VIP + "cluster_ips: ['::1']", "cluster_ips[0]", "it is a loopback address", id="loopback"),
        pytest.param(
            VIP + "cluster_ips: ['::ffff:10.0.0.101']",
            "cluster_ips[0]",
            "it is an IPv4-mapped address: write 10.0.0.101 itself",
            id="ipv4-mapped",
        ),
        pytest.param(VIP + "cluster_ips: [224.0.0.1]", "cluster_ips[0]", "cannot be a host address", id="v4-multicast"),
        pytest.param(VIP + "cluster_ips: ['fd00::1::2']", "cluster_ips[0]", "is not an IPv6 address", id="malformed"),
        pytest.param(VIP + "cluster_ips: fd00::1", "cluster_ips", "expected a list", id="not-a-list"),
        pytest.param(
            VIP + "members: [{ip: 10.0.0.11, ips: [7]}]", "members[0].ips[0]", "7 is not an IPv4 or IPv6", id="number"
        ),
    ],
)
def test_more_addresses_are_refused_where_they_cannot_work(fields, key, problem):
    refused = rejection(f"clusters: [{{name: web, {fields}}}]")
    assert refused.key == f"clusters[0].{key}"
    assert problem in refused.problem


@pytest.mark.parametrize(
    ("clusters", "key", "problem"),
    [
        pytest.param(
            "[{name: web, cluster_ip: 10.0.0.100, cluster_ips: ['fd00::100', 'fd00:0::100']}]",
            "clusters[0].cluster_ips[1]",
            "fd00::100 is already a cluster IP of cluster 'web'",
            id="vip-twice",
        ),
        pytest.param(
            "[{name: web, cluster_ip: 10.0.0.100, cluster_ips: ['fd00::11'],"
            " members: [{ip: 10.0.0.11, ips: ['fd00::11']}]}]",
            "clusters[0].members[0].ips[0]",
            "fd00::11 is already a cluster IP of cluster 'web'",
            id="vip-as-member-address",
        ),
        pytest.param(
            "[{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, ips: ['10.0.0.100']}]}]",
            "clusters[0].members[0].ips[0]",
            "10.0.0.100 is already the cluster IP of cluster 'web'",
            id="primary-vip-as-member-address",
        ),
        pytest.param(
            "[{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, ips: ['fd00::11']},"
            " {ip: 10.0.0.12, ips: ['fd00::11']}]}]",
            "clusters[0].members[1].ips[0]",
            "fd00::11 is already an address of member 10.0.0.11 of cluster 'web'",
            id="two-members",
        ),
        pytest.param(
            "[{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, ips: ['10.0.0.11']}]}]",
            "clusters[0].members[0].ips[0]",
            "10.0.0.11 is already the IP of a member of cluster 'web'",
            id="own-primary",
        ),
        pytest.param(
            "[{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11}]},"
            " {name: api, cluster_ip: 10.0.0.200, cluster_ips: ['10.0.0.11']}]",
            "clusters[0].members[0].ip",  # cluster addresses are claimed first, wherever the cluster is listed
            "10.0.0.11 is already a cluster IP of cluster 'api'",
            id="vip-of-another-cluster-is-a-member-address",
        ),
    ],
)
def test_no_address_is_registered_twice_anywhere(clusters, key, problem):
    refused = rejection(f"clusters: {clusters}")
    assert (refused.key, refused.problem) == (key, problem)


def test_the_example_configs_commented_more_addresses_are_valid_once_uncommented():
    text = EXAMPLE.read_text()
    assert "    # cluster_ips: [fd00:10::100]" in text and "        # ips: [fd00:10::11]" in text
    uncommented = text.replace("    # cluster_ips:", "    cluster_ips:").replace("        # ips:", "        ips:")
    web = parse(uncommented).registry.cluster_named("web")
    assert web.vips == ("10.0.0.100", "fd00:10::100")
    assert web.members[0].addresses == ("10.0.0.11", "fd00:10::11")
    assert web.members[0].dedicated_mac == "02:de:0a:00:00:0b", "one dedicated MAC for all its addresses"
