"""flows/fabric_ops.py: the switches' configuration changed as the REST API asks, every refusal with its
status, and the fabric it was given left as it was."""

from __future__ import annotations

import pytest

from flows.config import parse_config
from flows.fabric_ops import check_pins, find_switch, parse_dpid, put_switch, remove_switch
from flows.model import Fabric, SwitchConfig
from flows.registry_ops import RegistryError, update_member

CONFIG = parse_config(
    """
fabric:
  switches:
    - {dpid: 1, name: hv1, uplinks: [5, patch-core]}
    - {dpid: 2, name: hv2}
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    members:
      - {ip: 10.0.0.11, dpid: 1, port: 2}
      - {ip: 10.0.0.12}
"""
)
FABRIC, REGISTRY = CONFIG.fabric, CONFIG.registry


@pytest.mark.parametrize(
    ("text", "dpid"),
    [
        ("0000000000000001", 1),
        ("000000000000001a", 26),
        ("0x1A", 26),
        ("26", 26),
        ("0", 0),
        ("ffffffffffffffff", 2**64 - 1),
    ],
)
def test_a_dpid_in_a_url_is_16_hex_digits_0x_hex_or_decimal(text, dpid):
    assert parse_dpid(text) == dpid


@pytest.mark.parametrize("text", ["", "x", "-1", "0x", "00000000000000001", "18446744073709551616", "1.0", " 1", "01"])
def test_a_malformed_dpid_is_400(text):
    with pytest.raises(RegistryError) as caught:
        parse_dpid(text)
    assert caught.value.status == 400 and caught.value.message.startswith("dpid: ")


def test_find_switch():
    assert find_switch(FABRIC, "0x2").name == "hv2"
    with pytest.raises(RegistryError) as caught:
        find_switch(FABRIC, "3")
    assert caught.value.status == 404 and "0000000000000003" in caught.value.message


def test_put_replaces_in_place_and_appends_a_new_switch():
    fabric, switch = put_switch(FABRIC, REGISTRY, "0000000000000002", {"name": "hv2b", "uplinks": [3, "eth1"]})
    assert switch == SwitchConfig(2, "hv2b", (3, "eth1"))
    assert [s.dpid for s in fabric.switches] == [1, 2] and fabric.switch(2) == switch
    fabric, switch = put_switch(fabric, REGISTRY, "9", {})
    assert switch == SwitchConfig(9) and [s.dpid for s in fabric.switches] == [1, 2, 9]
    fabric, switch = put_switch(fabric, REGISTRY, "1", {"name": None, "uplinks": None})
    assert fabric.switch(1) == SwitchConfig(1), "null is none, as an absent field"
    assert FABRIC.switch(1).uplinks == (5, "patch-core"), "the fabric given is never changed"


def test_a_switch_may_keep_its_own_name():
    fabric, _ = put_switch(FABRIC, REGISTRY, "1", {"name": "hv1", "uplinks": [6]})
    assert fabric.switch(1) == SwitchConfig(1, "hv1", (6,))


@pytest.mark.parametrize(
    ("dpid", "body", "status", "message"),
    [
        pytest.param("zz", {}, 400, "dpid: 'zz' is not a datapath id", id="bad-dpid"),
        pytest.param("1", [], 400, "the body must be a JSON object", id="not-an-object"),
        pytest.param("1", {"dpid": 1}, 400, "dpid: unknown field (known fields: name, uplinks)", id="dpid-in-body"),
        pytest.param("1", {"nmae": "x"}, 400, "nmae: unknown field", id="unknown-field"),
        pytest.param("1", {"name": "a b"}, 400, "name: 'a b' is not a valid name", id="bad-name"),
        pytest.param("1", {"uplinks": 5}, 400, "uplinks: expected a list", id="uplinks-not-a-list"),
        pytest.param("1", {"uplinks": [0]}, 400, "uplinks[0]: 0 is not a switch port", id="uplink-0"),
        pytest.param("1", {"uplinks": ["a b"]}, 400, "uplinks[0]: 'a b' is not a port name", id="uplink-space"),
        pytest.param(
            "1", {"uplinks": [6, 6]}, 400, "uplinks[1]: the uplink 6 is already uplinks[0]", id="uplink-number-twice"
        ),
        pytest.param(
            "1", {"uplinks": ["x", "x"]}, 400, "uplinks[1]: the uplink 'x' is already", id="uplink-name-twice"
        ),
        pytest.param(
            "1",
            {"uplinks": [5, 2]},
            409,
            "uplinks[1]: port 2 of dpid 0000000000000001 is where member 10.0.0.11 of cluster 'web' is pinned",
            id="member-pinned-to-uplink",
        ),
        pytest.param(
            "3", {"name": "hv1"}, 409, "name: 'hv1' is already the name of switch 0000000000000001", id="name-twice"
        ),
    ],
)
def test_refusals(dpid, body, status, message):
    with pytest.raises(RegistryError) as caught:
        put_switch(FABRIC, REGISTRY, dpid, body)
    assert (caught.value.status, caught.value.message[: len(message)]) == (status, message), caught.value.message


def test_remove_switch():
    fabric, removed = remove_switch(FABRIC, "1")
    assert removed.name == "hv1" and [s.dpid for s in fabric.switches] == [2]
    with pytest.raises(RegistryError) as caught:
        remove_switch(fabric, "1")
    assert caught.value.status == 404


def test_check_pins_refuses_a_registry_that_pins_a_member_to_a_numbered_uplink():
    check_pins(FABRIC, REGISTRY)
    moved, _ = update_member(REGISTRY, "web", "10.0.0.12", {"dpid": 2, "port": 5})
    check_pins(FABRIC, moved)  # port 5 is an uplink of switch 1, not 2
    pinned, _ = update_member(REGISTRY, "web", "10.0.0.12", {"dpid": 1, "port": 5})
    with pytest.raises(RegistryError) as caught:
        check_pins(FABRIC, pinned)
    assert caught.value.status == 409
    assert "port 5 of dpid 0000000000000001 is where member 10.0.0.12" in caught.value.message
    assert "uplink of switch 0000000000000001 (hv1)" in caught.value.message
    check_pins(Fabric(), pinned)
