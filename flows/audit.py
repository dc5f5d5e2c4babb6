"""The audited flow dump: what the app's flows in a switch are, what is missing, what is unexpected.

Built from flows read back from the switch (with their counters), never from the app's memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flows.cookies import Purpose, cluster_id, decode_cookie, is_app_cookie, member_id
from flows.flowspec import FlowSpec, action_text
from flows.model import Cluster, Member, Registry
from flows.session import Refusal, refusal_view

CLAIMS = {
    Purpose.NORMAL_FALLBACK: "invariant 6 (other traffic switched as before)",
    Purpose.ARP_PUNT: "1-19 (discovery: the member's ARP reaches the controller)",
    Purpose.ND_PUNT: "1-19 (discovery, IPv6: the member's Neighbor Discovery reaches the controller)",
    Purpose.MEMBER_DELIVERY: "54-58 (dedicated MAC -> cluster MAC, on the member's port)",
    Purpose.CLUSTER_DELIVERY: "invariant 4 (cluster traffic to every member, no other port)",
    Purpose.SOURCE_MASKING: "55 (the member's source masked to its dedicated MAC, as NLB's MaskSourceMAC)",
    Purpose.INGRESS: "pipeline (from the ingress table on to forwarding)",
    Purpose.PROBE_ANSWER: "finding members (answers to the app's probes)",
    Purpose.PUNT_PORT: "admission control (a port's punted frames pass its own meter)",
    Purpose.PUNT_TOTAL: "admission control (every punted frame passes the total meter, then the controller)",
    Purpose.MEMBER_TRANSIT: "54-59 on a fabric (a member's dedicated MAC, unchanged, toward its own switch)",
    Purpose.ARP_SENDER: "6-11 in the switch (a member's ARP recognised from where it is located, tagged with its DM)",
    Purpose.ARP_ANSWER: "1-5 in the switch (a request for a peer's DIP answered with its DM, back out of its port)",
    Purpose.ARP_SPREAD: "invariant 1 in the switch (outsiders get the member's ARP unchanged, peers with its DM)",
    Purpose.ARP_FLOOD: "invariant 1 in the switch (unchanged to every edge port but those of the sender's cluster)",
}


@dataclass(frozen=True)
class ReadBackFlow:
    """One flow as flow-stats returned it."""

    spec: FlowSpec
    packets: int
    bytes: int


class Owners:
    """The cluster and member a cookie names, found by id: an audit of every flow costs one lookup per flow,
    not a scan of the registry per flow. Lookups fill the tables as they go (the first cluster or member
    with an id wins, as in the registry's order)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.clusters: dict[int, Cluster] = {}
        for cluster in registry.clusters:
            self.clusters.setdefault(cluster_id(cluster.name), cluster)
        self.members: dict[str, dict[int, Member]] = {}

    def of(self, cookie: int) -> tuple[Cluster | None, Member | None]:
        fields = decode_cookie(cookie)
        cluster = self.clusters.get(fields.cluster_id)
        if cluster is None:
            return None, None
        if cluster.name not in self.members:
            by_id: dict[int, Member] = {}
            for member in cluster.members:
                by_id.setdefault(member_id(member.ip), member)
            self.members[cluster.name] = by_id
        return cluster, self.members[cluster.name].get(fields.member_id)


def flow_entry(owners: Owners, spec: FlowSpec) -> dict:
    """A flow with its cookie decoded into cluster, member, purpose and the claims it serves."""
    fields = decode_cookie(spec.cookie)
    cluster, member = owners.of(spec.cookie)
    return {
        "cookie": f"{spec.cookie:#018x}",
        "cluster": cluster.name if cluster else None,
        "member": member.ip if member else None,
        "purpose": fields.purpose.name.lower() if fields.purpose else None,
        "claims": CLAIMS.get(fields.purpose),
        "table_id": spec.table_id,
        "priority": spec.priority,
        "match": dict(spec.match),
        "actions": [action_text(action) for action in spec.actions],
    }


def audit_switch(
    registry: Registry,
    expected: Iterable[FlowSpec],
    read_back: Iterable[ReadBackFlow],
    refused: Iterable[Refusal] = (),
    shared_ports: Iterable[dict] = (),
) -> dict:
    """`refused`: flow changes the switch kept refusing on this connection (they also show as missing).
    `shared_ports` (NlbCore.shared_ports()) warns of ports holding several members or other hosts too:
    the flows cannot serve those correctly (docs/trust.md)."""
    read_back = list(read_back)
    owners = Owners(registry)
    app_flows = [flow for flow in read_back if is_app_cookie(flow.spec.cookie)]
    expected_set = set(expected)
    installed = {flow.spec for flow in app_flows}
    return {
        "flows": [
            {**flow_entry(owners, flow.spec), "packets": flow.packets, "bytes": flow.bytes} for flow in app_flows
        ],
        "missing": [flow_entry(owners, spec) for spec in sorted(expected_set - installed, key=_order)],
        "unexpected": [flow_entry(owners, spec) for spec in sorted(installed - expected_set, key=_order)],
        "other_apps_flows": len(read_back) - len(app_flows),
        "refused": _refused_entries(owners, refused),
        "shared_ports": list(shared_ports),
    }


def refused_entries(registry: Registry, refused: Iterable[Refusal]) -> list[dict]:
    """Refused flows with the OpenFlow error the switch gave (type and code), as status and audit show them."""
    refused = list(refused)
    return _refused_entries(Owners(registry), refused) if refused else []


def _refused_entries(owners: Owners, refused: Iterable[Refusal]) -> list[dict]:
    ordered = sorted(refused, key=lambda refusal: (_order(refusal.flow), refusal.command))
    return [{**flow_entry(owners, refusal.flow), **refusal_view(refusal)} for refusal in ordered]


def _order(spec: FlowSpec) -> tuple:
    return (spec.table_id, -spec.priority, spec.cookie, repr(spec.match))
