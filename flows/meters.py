"""Admission control: the OpenFlow 1.3 meters that bound what the switch punts to the controller.

The controller is shared by every port: a storm from one port must spend only that port's share, and
all ports together no more than the controller answers at once, so no request waits in a queue and no
answer arrives late. Each punted frame passes two meters (method.md, Trust): its ingress port's, in the
punt table, then the total one, in the punt-out table (flows/flowspec.py). Both drop in the switch what
exceeds their packet rate, before it reaches the connection.

Meters carry no cookie, so the app owns a fixed range of meter ids and never touches one outside it:

    APP_METER_IDS = 0x10000..0x1ffff (65536..131071)
    0x10000           the total meter
    0x10000 + port    the meter of switch port `port` (1..0xfeff, every port OVS can number)
    0x1ffff           shared by ports above 0xfeff (OVS never uses them; other switches might)

One meter outside that range is the app's too: OpenFlow 1.3's virtual slow-path meter (OFPM_SLOWPATH,
0xfffffffd; `meter=slowpath` in ovs-ofctl), which bounds what the switch runs through its own slow path. The
switch-mode flows (flows/responder.py) answer and spread ARP in the switch without the controller, so their
frames pass no punt meter: the slow-path meter is what bounds a storm of them (Settings.slow_path_rate).

Meters are reconciled by difference, as flows are: read back (meter-config stats), then add what is
missing, modify what differs, delete what is stale, in the app's range only (the slow-path meter is always
expected, so it is never deleted).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from flows.model import Settings

APP_METER_IDS = range(0x10000, 0x20000)
TOTAL_METER_ID = APP_METER_IDS.start
SHARED_PORT_METER_ID = APP_METER_IDS.stop - 1
MAX_NUMBERED_PORT = 0xFEFF  # the highest port OVS numbers (OpenFlow 1.0's reserved ports start above)
SLOW_PATH_METER_ID = 0xFFFF_FFFD  # OpenFlow 1.3's OFPM_SLOWPATH


@dataclass(frozen=True)
class MeterSpec:
    """One packet-rate meter with a drop band: what a meter-mod installs and meter-config reads back."""

    meter_id: int
    rate: int  # packets per second
    burst: int  # packets let through at once above the rate (the bucket size)


@dataclass(frozen=True)
class MeterDiff:
    """What a switch needs to hold exactly the expected meters (in the app's range)."""

    to_add: tuple[MeterSpec, ...]
    to_modify: tuple[MeterSpec, ...]
    to_delete: tuple[MeterSpec, ...]

    def __bool__(self) -> bool:
        return bool(self.to_add or self.to_modify or self.to_delete)


@dataclass(frozen=True)
class MeterReading:
    """A meter's counters as meter-stats returned them: packets that reached it, and those it dropped."""

    meter_id: int
    packets: int
    dropped: int


def is_app_meter(meter_id: int) -> bool:
    """Whether a meter is this app's: the only meters it may change or delete."""
    return meter_id in APP_METER_IDS or meter_id == SLOW_PATH_METER_ID


def port_meter_id(port: int) -> int:
    """The meter of one ingress port: readable in a dump (0x10003 is port 3's)."""
    return TOTAL_METER_ID + port if 1 <= port <= MAX_NUMBERED_PORT else SHARED_PORT_METER_ID


def meter_target(meter_id: int) -> str:
    """What a meter bounds, for status and logs: "total", "port 3", "ports above 0xfeff" or "slow path"."""
    if meter_id == TOTAL_METER_ID:
        return "total"
    if meter_id == SLOW_PATH_METER_ID:
        return "slow path"
    if meter_id == SHARED_PORT_METER_ID:
        return f"ports above {MAX_NUMBERED_PORT:#x}"
    return f"port {meter_id - TOTAL_METER_ID}"


def expected_meters(
    settings: Settings, switch_ports: Collection[int], uplinks: Collection[int] = ()
) -> list[MeterSpec]:
    """The total meter, one per port of the switch and the slow-path one. A burst of one second's worth
    lets a member resolve all its peers at once after a flush without losing one. An uplink carries the ARP
    of every member behind it, so it gets the total's rate: one host's port can still not starve the others,
    and the total meter still bounds what the controller gets."""
    ids = {TOTAL_METER_ID: settings.punt_rate_total}
    ids.update({port_meter_id(port): settings.punt_rate_per_port for port in switch_ports})
    ids.update({port_meter_id(port): settings.punt_rate_total for port in uplinks if port in switch_ports})
    ids[SLOW_PATH_METER_ID] = settings.slow_path_rate
    return [MeterSpec(meter_id, rate, burst=rate) for meter_id, rate in sorted(ids.items())]


def reconcile_meters(expected: Iterable[MeterSpec], installed: Iterable[MeterSpec]) -> MeterDiff:
    """Difference, never wipe: deleting a meter also deletes every flow that uses it."""
    wanted = {meter.meter_id: meter for meter in expected}
    present = {meter.meter_id: meter for meter in installed if is_app_meter(meter.meter_id)}
    return MeterDiff(
        to_add=tuple(wanted[i] for i in sorted(wanted.keys() - present.keys())),
        to_modify=tuple(wanted[i] for i in sorted(wanted.keys() & present.keys()) if wanted[i] != present[i]),
        to_delete=tuple(present[i] for i in sorted(present.keys() - wanted.keys())),
    )


def around_flows(diff: MeterDiff) -> tuple[MeterDiff, MeterDiff]:
    """A meter diff split in what goes before the flow changes (adds and modifies: a flow may use a meter
    only once the switch has it) and what goes after them (deletes: deleting a meter deletes its flows)."""
    before = MeterDiff(to_add=diff.to_add, to_modify=diff.to_modify, to_delete=())
    return before, MeterDiff(to_add=(), to_modify=(), to_delete=diff.to_delete)


def meters_status(expected: Iterable[MeterSpec], readings: Iterable[MeterReading]) -> list[dict]:
    """The app's meters on one switch with the counters the switch reports (None: it reported none)."""
    found = {reading.meter_id: reading for reading in readings}
    rows = []
    for meter in sorted(expected, key=lambda m: m.meter_id):
        reading = found.get(meter.meter_id)
        rows.append(
            {
                "meter_id": meter.meter_id,
                "applies_to": meter_target(meter.meter_id),
                "rate_pps": meter.rate,
                "burst": meter.burst,
                "packets": reading.packets if reading else None,
                "dropped": reading.dropped if reading else None,
            }
        )
    return rows


@dataclass(frozen=True)
class DropWatch:
    """Which meters of a switch were dropping at the last look, and their drop counts then."""

    dropped: Mapping[int, int]
    dropping: frozenset[int] = frozenset()


def watch_drops(before: DropWatch | None, readings: Iterable[MeterReading]) -> tuple[DropWatch, list[int], list[int]]:
    """Compare two looks at the meters: (the new look, meters that started dropping, meters that stopped).

    A meter is dropping while its drop count rises between two looks; the app logs each start and stop
    once, not every dropped frame. The first look only sets the baseline.
    """
    now = {reading.meter_id: reading.dropped for reading in readings if is_app_meter(reading.meter_id)}
    if before is None:
        return DropWatch(now), [], []
    rising = frozenset(i for i, count in now.items() if count > before.dropped.get(i, count))
    started = sorted(rising - before.dropping)
    stopped = sorted(before.dropping - rising)
    return DropWatch(now, rising), started, stopped
