"""The O(change) checks of single REST changes accept exactly what checking the whole registry accepts.

A seeded generator draws changes from small pools of names, IPs, MACs and switch ports, so clashes of
every kind (IPs, MACs, cookie ids, ports, across clusters and within one) come up often; each change is
applied through flows/registry_ops.py (the index) and, as the reference, rebuilt naively and checked
with validate_registry(). Both must agree on accept or refuse, and the index kept between changes must
equal one built afresh from the result.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from flows import registry_ops
from flows.config import ConfigError, cluster_from_data, member_from_data, validate_registry
from flows.model import Registry
from flows.registry_index import RegistryIndex
from flows.registry_ops import RegistryError

NAMES = ["web", "api", "c51", "c355"]  # c51 and c355: the same cookie cluster id
IPS = ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.1.0.11", "10.0.0.100", "10.0.0.101"]  # 10.1.0.11: cookie id of .11
EXTRA = ["fd00::11", "fd00::12", "fd00::100", "10.0.0.12", "10.0.0.101"]  # more addresses: IPv6, and IPv4 ones
# that the primary pools hold too, so extra addresses clash with primaries, VIPs and each other
MACS = ["02:aa:00:00:00:01", "02:aa:00:00:00:02", "02:de:0a:00:00:0b", "02:bf:0a:00:00:64", "0e:4e:4c:00:00:01"]


def valid(registry: Registry) -> bool:
    try:
        validate_registry(registry, "reference")
    except ConfigError:
        return False
    return True


def member_body(rng: random.Random) -> dict:
    body: dict = {"ip": rng.choice(IPS)}
    if rng.random() < 0.4:
        body["ips"] = rng.sample(EXTRA, rng.randint(1, 2))
    if rng.random() < 0.4:
        body["mac"] = rng.choice(MACS)
    if rng.random() < 0.4:
        body.update(dpid=rng.randint(1, 2), port=rng.randint(1, 2))
    return body


def cluster_body(rng: random.Random, name: str, members: int = 0) -> dict:
    body: dict = {"name": name, "cluster_ip": rng.choice(IPS)}
    if rng.random() < 0.3:
        body["cluster_ips"] = rng.sample(EXTRA, rng.randint(1, 2))
    if rng.random() < 0.3:
        body["mode"] = "multicast"
    elif rng.random() < 0.3:
        body["cluster_mac"] = rng.choice(MACS[:4])
    if members:
        body["members"] = [member_body(rng) for _ in range(rng.randint(0, members))]
    return body


def step(rng: random.Random, registry: Registry):
    """One random change: (what registry_ops is asked, the registry the reference builds, or None when
    the request is refused before any cross-check: an unknown cluster or member, or a bad field)."""
    cluster = rng.choice(registry.clusters) if registry.clusters else None
    kind = rng.choice(["add_cluster", "put_cluster", "remove_cluster", "add_member", "update_member", "remove_member"])
    if kind == "add_cluster" or cluster is None:
        body = cluster_body(rng, rng.choice(NAMES))
        built = _built(lambda: cluster_from_data(body, "", "t"))
        return (lambda r: registry_ops.add_cluster(r, body)), built and replace(
            registry, clusters=(*registry.clusters, built)
        )
    if kind == "put_cluster":
        name = rng.choice(NAMES)
        body = cluster_body(rng, name, members=3)
        del body["name"]
        built = _built(lambda: registry_ops.cluster_for_put(name, body))
        if built is None:
            return (lambda r: registry_ops.put_cluster(r, registry_ops.cluster_for_put(name, body))), None
        others = tuple(built if c.name == name else c for c in registry.clusters)
        clusters = others if registry.cluster_named(name) else (*registry.clusters, built)
        return (lambda r: registry_ops.put_cluster(r, built)), replace(registry, clusters=clusters)
    if kind == "remove_cluster":
        rest = tuple(c for c in registry.clusters if c.name != cluster.name)
        return (lambda r: registry_ops.remove_cluster(r, cluster.name)), replace(registry, clusters=rest)
    if kind == "add_member" or not cluster.members:
        body = member_body(rng)
        member = _built(lambda: member_from_data(body, "", "t", cluster.mode))
        updated = member and replace(cluster, members=(*cluster.members, member))
        return (lambda r: registry_ops.add_member(r, cluster.name, body)), updated and _with(registry, updated)
    member = rng.choice(cluster.members)
    if kind == "remove_member":
        updated = replace(cluster, members=tuple(m for m in cluster.members if m.ip != member.ip))
        return (lambda r: registry_ops.remove_member(r, cluster.name, member.ip)), _with(registry, updated)
    patch = {key: value for key, value in member_body(rng).items() if key != "ip"} or {"dpid": None, "port": None}
    merged = {"ip": member.ip, **({"mac": cluster.entry_mac(member)} if cluster.entry_mac(member) else {})}
    merged.update({"ips": list(member.ips)} if member.ips else {})
    merged.update({"dpid": member.dpid, "port": member.port} if member.pinned else {})
    merged = {k: v for k, v in {**merged, **patch}.items() if v is not None}
    changed = _built(lambda: member_from_data(merged, "", "t", cluster.mode))
    updated = changed and replace(cluster, members=tuple(changed if m.ip == member.ip else m for m in cluster.members))
    return (lambda r: registry_ops.update_member(r, cluster.name, member.ip, patch)), updated and _with(
        registry, updated
    )


def _built(build):
    try:
        return build()
    except (ConfigError, RegistryError):
        return None


def _with(registry: Registry, cluster) -> Registry:
    return replace(registry, clusters=tuple(cluster if c.name == cluster.name else c for c in registry.clusters))


@pytest.mark.parametrize("seed", range(8))
def test_indexed_checks_accept_exactly_what_the_whole_registry_check_accepts(seed):
    rng = random.Random(seed)
    registry = Registry()
    accepted = refused = 0
    for _ in range(400):
        change, reference = step(rng, registry)
        reference_ok = reference is not None and valid(reference)
        try:
            result, _ = change(registry)
        except RegistryError as error:
            assert not reference_ok, f"refused what the full check accepts: {error.message}"
            assert error.status in (400, 404, 409)
            refused += 1
            continue
        assert reference_ok, "accepted what the full check refuses"
        assert result == reference
        assert registry_ops._index(result) == RegistryIndex.of(result), "the kept index drifted"
        registry = result
        accepted += 1
    assert accepted > 50 and refused > 50, (accepted, refused)  # both sides were exercised


def test_a_refused_change_leaves_the_kept_index_as_it_was():
    registry, _ = registry_ops.add_cluster(Registry(), {"name": "web", "cluster_ip": "10.0.0.100"})
    registry, _ = registry_ops.add_member(registry, "web", {"ip": "10.0.0.11", "dpid": 1, "port": 1})
    before = RegistryIndex.of(registry)
    bad_cluster = cluster_from_data(
        {"name": "web", "cluster_ip": "10.0.0.100", "members": [{"ip": "10.0.0.12"}, {"ip": "10.0.0.100"}]}, "", "t"
    )
    with pytest.raises(RegistryError, match=r"^members\[1\]\.ip: 10\.0\.0\.100 is already the cluster IP"):
        registry_ops.put_cluster(registry, bad_cluster)
    with pytest.raises(RegistryError, match=r"^port: dpid 0x1 port 1 is already where member 10\.0\.0\.11"):
        registry_ops.add_member(registry, "web", {"ip": "10.0.0.12", "dpid": 1, "port": 1})
    assert registry_ops._index(registry) == before


def test_messages_name_the_registered_owner():
    registry, _ = registry_ops.add_cluster(Registry(), {"name": "web", "cluster_ip": "10.0.0.100"})
    registry, _ = registry_ops.add_member(registry, "web", {"ip": "10.0.0.11"})
    registry, _ = registry_ops.add_cluster(registry, {"name": "api", "cluster_ip": "10.0.1.100", "mode": "multicast"})
    cases = [
        ({"ip": "10.0.0.11"}, "ip: 10.0.0.11 is already the IP of a member of cluster 'web'"),
        ({"ip": "10.1.0.11"}, None),  # another cluster's cookie ids are its own
        ({"ip": "10.0.1.12", "mac": "02:bf:0a:00:00:64"}, "mac: 02:bf:0a:00:00:64 is already the cluster MAC"),
        ({"ip": "10.0.1.12", "mac": "02:de:0a:00:01:0c"}, "mac: 02:de:0a:00:01:0c is already the dedicated MAC of"),
    ]
    for body, message in cases:
        if message is None:
            registry_ops.add_member(registry, "api", body)
            continue
        with pytest.raises(RegistryError) as refused:
            registry_ops.add_member(registry, "api", body)
        assert (refused.value.status, refused.value.message[: len(message)]) == (409, message)
    registry, _ = registry_ops.add_member(registry, "api", {"ip": "10.0.1.11"})
    with pytest.raises(RegistryError, match=r"^ip: the flow-cookie id 0x010b of 10\.1\.1\.11 is already the cookie"):
        registry_ops.add_member(registry, "api", {"ip": "10.1.1.11"})
