"""Where members are on one switch, and whom to believe (method.md, Trust; docs/trust.md).

A frame says where a member is only if the member could have sent it from there: decide_arp() checks
its fields, this module checks everything that takes memory and time. A probe answer counts only if it
answers a probe the app sent for that member on that port, recently. A member located on one port and
heard on another is moved only once its old port has had the time to answer for it (or is down or gone);
an answer there proves the other claim forged. A location in use is checked again when the member has
been quiet for a while, and given up after a few unanswered probes. NlbCore keeps one SwitchLocations per
switch and turns what it says into flows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from flows.addresses import PROBE_MAC
from flows.arp import ARP_REQUEST, ArpFrame, FrameOut, probe_outputs
from flows.model import LocationSettings

MemberKey = tuple[str, str]  # (cluster name, member ip)

UNLOCATED_PROBE_SECONDS = 5.0  # unlocated members are looked for on every port this often
MOVE_WINDOW_SECONDS = 60.0  # LocationSettings.moves_per_minute counts moves in this window
SPOOFED = "dropped_spoofed"  # the counter a proven spoof adds to (the verdict of the same name)
SPOOF_WARNING_SECONDS = 60.0  # spoofs of one member from one port: one WARNING a minute, the rest at DEBUG


class How(str, Enum):
    """How a location was found; `nlbflow status` shows it."""

    PINNED = "pinned"  # the registry says so
    PROBE = "probe"  # the member answered the app's probe there
    ARP = "arp"  # the member's own ARP arrived there
    ND = "nd"  # the member's own Neighbor Discovery arrived there
    ADOPTED = "adopted"  # its delivery flow was in the switch when the controller started


class Level(str, Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"


@dataclass(frozen=True)
class Note:
    """A state change worth one log line: the app writes it, so the core stays free of logging."""

    level: Level
    text: str


@dataclass
class Location:
    port: int
    how: How
    since: float | None  # None: adopted when the controller started
    heard: float | None  # last time the member was heard on the port; None: adopted, not heard yet
    macs: frozenset[str] = frozenset()  # the Ethernet sources it was heard with there
    checking_since: float | None = None  # a probe of the port waits for its answer since then
    unanswered: int = 0


@dataclass(frozen=True)
class Claim:
    """The member heard on another port than its own: held until its own port has had time to answer."""

    port: int
    how: How
    mac: str
    since: float


@dataclass
class Attempts:
    """Spoofs against one member: how many, and the port the last one came from."""

    count: int = 0
    last_port: int | None = None


class Outcome(str, Enum):
    BELIEVED = "believed"  # the frame is the member's: act on it
    UNCONFIRMED = "unconfirmed"  # the member sits elsewhere: the frame is dropped while its own port is probed
    SPOOFED = "spoofed"  # its own port answered for it just now: a forgery, dropped
    UNSOLICITED = "unsolicited"  # a probe answer from a port the app did not probe for it recently: dropped
    MOVE_LIMITED = "move_limited"  # the member moved too often in the last minute: dropped


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    changed: bool = False  # a location changed: the flows must follow
    probes: tuple[FrameOut, ...] = ()
    notes: tuple[Note, ...] = ()


@dataclass
class SwitchLocations:
    """One switch's learned member locations, the probes the app sent there, and the spoofs it saw."""

    dpid: int
    settings: LocationSettings
    counters: Counter[str]
    located: dict[MemberKey, Location] = field(default_factory=dict)
    claims: dict[MemberKey, Claim] = field(default_factory=dict)
    probed: dict[tuple[str, int], float] = field(default_factory=dict)  # (member ip, port) -> when
    swept: dict[str, tuple[float, frozenset[int]]] = field(default_factory=dict)  # member ip -> (when, the ports)
    moves: dict[MemberKey, list[float]] = field(default_factory=dict)
    attempts: dict[MemberKey, Attempts] = field(default_factory=dict)
    pinned_heard: dict[MemberKey, float] = field(default_factory=dict)
    proven: dict[MemberKey, float] = field(default_factory=dict)  # when its own port last disproved a claim
    strangers: dict[int, set[str]] = field(default_factory=dict)  # port -> non-member sources heard there
    warned: set[tuple] = field(default_factory=set)  # shared-port warnings already logged
    spoof_warned: dict[tuple[MemberKey, int], float] = field(default_factory=dict)  # (member, port) -> when
    relocated: set[MemberKey] = field(default_factory=set)  # located, moved or lost since take_relocated()

    def ports(self) -> dict[MemberKey, int]:
        return {key: location.port for key, location in self.located.items()}

    def take_relocated(self) -> set[MemberKey]:
        """The members whose port changed (located, moved or lost) since the last call: all the core needs
        to bring its indexes and flows up to date, without looking at anyone else."""
        relocated, self.relocated = self.relocated, set()
        return relocated

    def probes_sent(self, frames: Iterable[FrameOut], now: float) -> None:
        """Remember each probe sent: only its answer, from the port it went out of, may locate a member."""
        for out in frames:
            if isinstance(out.frame, ArpFrame) and out.frame.sha == PROBE_MAC and out.frame.op == ARP_REQUEST:
                self.probed[(out.frame.tpa, out.port)] = now

    def probes_swept(self, member_ips: Iterable[str], ports: frozenset[int], now: float) -> None:
        """Members just probed out of every one of these ports (the search for unlocated members): one
        entry per member, not per member and port, so that a fresh switch's thousands of ports cost
        nothing more to remember."""
        for member_ip in member_ips:
            self.swept[member_ip] = (now, ports)

    def solicited(self, member_ip: str, port: int, now: float) -> bool:
        sent = self.probed.get((member_ip, port))
        if sent is not None and now - sent <= self.settings.confirm_seconds:
            return True
        swept = self.swept.get(member_ip)
        return swept is not None and port in swept[1] and now - swept[0] <= self.settings.confirm_seconds

    def adopt(self, key: MemberKey, port: int) -> None:
        """A delivery flow found at connect: believed until checked (it is probed at the next tick)."""
        if key not in self.located:
            self._locate(key, Location(port=port, how=How.ADOPTED, since=None, heard=None))

    def claim(
        self, key: MemberKey, port: int, how: How, mac: str, now: float, live_ports: Collection[int]
    ) -> Judgement:
        """A frame that the member could have sent says it is on port: believe it, hold it, or drop it."""
        location = self.located.get(key)
        elsewhere = location is not None and location.port != port
        if how == How.PROBE and not self.solicited(key[1], port, now) and not elsewhere:
            return Judgement(Outcome.UNSOLICITED)  # a member located elsewhere is checked as for any claim
        if location is None:
            self._locate(key, Location(port=port, how=how, since=now, heard=now, macs=frozenset({mac})))
            return Judgement(
                Outcome.BELIEVED, True, notes=(self._note(Level.INFO, key, f"located on port {port} ({how.value})"),)
            )
        if location.port == port:
            location.heard, location.checking_since, location.unanswered = now, None, 0
            location.macs |= {mac}
            pending = self.claims.pop(key, None)
            notes = (self._disproved(key, pending.port, port, now),) if pending else ()
            return Judgement(Outcome.BELIEVED, notes=notes)
        if location.port not in live_ports:
            return self._move(key, Claim(port, how, mac, now), now, f"port {location.port} is down or gone")
        if now - self.proven.get(key, float("-inf")) <= self.settings.confirm_seconds:
            self._attempt(key, port)
            return Judgement(Outcome.SPOOFED, notes=(self._spoof_note(key, port, location.port, now),))
        if key in self.claims:
            return Judgement(Outcome.UNCONFIRMED)
        self.claims[key] = Claim(port, how, mac, now)
        probes = probe_outputs(key[1], (location.port,))
        self.probes_sent(probes, now)
        text = f"on port {location.port}, heard on port {port}: probing port {location.port} before believing it"
        return Judgement(Outcome.UNCONFIRMED, probes=probes, notes=(self._note(Level.INFO, key, text),))

    def release(self, key: MemberKey) -> None:
        """The member moved to another switch (flows/core.py confirmed it): it is no longer here."""
        self.claims.pop(key, None)
        if key in self.located:
            self._unlocate(key)

    def settle(self, key: MemberKey, port: int, how: How, mac: str, now: float) -> None:
        """The member moved here from another switch, once confirmed there (flows/core.py)."""
        self.claims.pop(key, None)
        self._locate(key, Location(port=port, how=how, since=now, heard=now, macs=frozenset({mac})))

    def spoof_refused(self, key: MemberKey, port: int, own_port: int | None, now: float) -> Note:
        """A frame decide_arp() already refused (a pinned member's DIP from another port, another cluster's
        MAC, a probe answer with the wrong sender MAC): counted against the member it claimed."""
        self._attempt(key, port)
        return self._spoof_note(key, port, own_port, now)

    def heard_pinned(self, key: MemberKey, now: float) -> None:
        self.pinned_heard[key] = now

    def heard_by_counter(self, key: MemberKey, port: int, now: float) -> None:
        """A flow that only the member's own frames on its port match has counted more packets (switch mode,
        where the switch handles its ARP): it is still there, as if a packet-in had said so."""
        location = self.located.get(key)
        if location is not None and location.port == port and key not in self.claims:
            location.heard, location.checking_since, location.unanswered = now, None, 0

    def stranger(self, port: int, mac: str) -> None:
        """A source that is no member of those on the port: the port is shared with other hosts."""
        self.strangers.setdefault(port, set()).add(mac)

    def tick(self, now: float, live_ports: Collection[int]) -> Judgement:
        """The periodic work: claims whose old port stayed silent are moves; quiet members are checked."""
        changed, probes, notes = False, [], []
        for key, claim in list(self.claims.items()):
            if now - claim.since >= self.settings.confirm_seconds:
                why = f"port {self.located[key].port} silent for {self.settings.confirm_seconds:g} s"
                judgement = self._move(key, claim, now, why)
                changed, notes = changed or judgement.changed, notes + list(judgement.notes)
        for key, location in list(self.located.items()):
            if key in self.claims or location.port not in live_ports:  # a down port gets nothing anyway
                continue
            if location.checking_since is None:
                if location.heard is not None and now - location.heard < self.settings.idle_seconds:
                    continue
            elif now - location.checking_since < self.settings.confirm_seconds:
                continue
            else:
                location.unanswered += 1
            if location.unanswered >= self.settings.unanswered_probes:
                self._unlocate(key)
                text = f"lost: {location.unanswered} probes on port {location.port} unanswered; looking everywhere"
                changed, notes = True, [*notes, self._note(Level.INFO, key, text)]
                continue
            location.checking_since = now
            probes += probe_outputs(key[1], (location.port,))
        self.probes_sent(probes, now)
        self.probed = {sent: at for sent, at in self.probed.items() if now - at <= self.settings.confirm_seconds}
        self.swept = {ip: sent for ip, sent in self.swept.items() if now - sent[0] <= self.settings.confirm_seconds}
        return Judgement(Outcome.BELIEVED, changed, tuple(probes), tuple(notes))

    def port_lost(self, port: int, gone: bool, now: float) -> Judgement:
        """A port went down (gone=False) or vanished: a member claimed elsewhere has moved; a member on a
        vanished port is no longer there."""
        changed, notes = False, []
        for key, location in list(self.located.items()):
            if location.port != port:
                continue
            if key in self.claims:
                judgement = self._move(key, self.claims[key], now, f"port {port} went {'away' if gone else 'down'}")
                changed, notes = changed or judgement.changed, notes + list(judgement.notes)
            elif gone:
                self._unlocate(key)
                changed, notes = True, [*notes, self._note(Level.INFO, key, f"lost: port {port} is gone")]
        if gone:
            self.strangers.pop(port, None)
        return Judgement(Outcome.BELIEVED, changed, notes=tuple(notes))

    def forget(self, gone: Collection[MemberKey]) -> None:
        """Members no longer registered, or whose pinning changed: nothing learned about them stays."""
        for key in gone:
            if key in self.located:
                self._unlocate(key)
            for table in (self.claims, self.moves, self.attempts, self.pinned_heard, self.proven):
                table.pop(key, None)
        if self.spoof_warned and gone:
            self.spoof_warned = {seen: at for seen, at in self.spoof_warned.items() if seen[0] not in gone}

    def shared_port_notes(self, by_port: Mapping[int, Collection[MemberKey]], ports: Iterable[int]) -> tuple[Note, ...]:
        """One warning per port, the first time it is seen holding several members or other hosts. by_port:
        the members located on each port of the switch; ports: those whose members or other hosts changed
        since the last look (no other port can have become shared)."""
        notes = []
        for port in sorted(ports):
            members = sorted(by_port.get(port, ()))
            if not members:
                continue
            others = sorted(self.strangers.get(port, ()))
            for kind, shared in (("members", len(members) > 1), ("hosts", bool(others))):
                if shared and (port, kind) not in self.warned:
                    self.warned.add((port, kind))
                    who = ", ".join(f"{ip} ({name})" for name, ip in members)
                    also = f" and other hosts ({', '.join(others)})" if others else ""
                    text = (
                        f"dpid {self.dpid} port {port} is shared: members {who}{also}; the fabric never sees "
                        "the frames between hosts on one port, so they cannot be served correctly: give each "
                        "member its own edge port"
                    )
                    notes.append(Note(Level.WARNING, text))
        return tuple(notes)

    def _move(self, key: MemberKey, claim: Claim, now: float, why: str) -> Judgement:
        self.claims.pop(key, None)
        old_port = self.located[key].port
        recent = [at for at in self.moves.get(key, []) if now - at < MOVE_WINDOW_SECONDS]
        self.moves[key] = recent
        if len(recent) >= self.settings.moves_per_minute:
            self.counters["moves_refused"] += 1
            limit = f"{self.settings.moves_per_minute} moves in a minute"
            text = f"not moved from port {old_port} to port {claim.port} ({why}): at most {limit}"
            return Judgement(Outcome.MOVE_LIMITED, notes=(self._note(Level.WARNING, key, text),))
        self._locate(key, Location(port=claim.port, how=claim.how, since=now, heard=now, macs=frozenset({claim.mac})))
        recent.append(now)
        self.counters["moves"] += 1
        text = f"moved from port {old_port} to port {claim.port} ({why})"
        return Judgement(Outcome.BELIEVED, True, notes=(self._note(Level.INFO, key, text),))

    def _locate(self, key: MemberKey, location: Location) -> None:
        self.located[key] = location
        self.relocated.add(key)

    def _unlocate(self, key: MemberKey) -> None:
        del self.located[key]
        self.relocated.add(key)

    def _disproved(self, key: MemberKey, claimed_port: int, own_port: int, now: float) -> Note:
        """Its own port answered while a claim from another port waited: that claim was forged."""
        self.proven[key] = now
        self.counters[SPOOFED] += 1
        self._attempt(key, claimed_port)
        return self._spoof_note(key, claimed_port, own_port, now)

    def _attempt(self, key: MemberKey, port: int) -> None:
        attempts = self.attempts.setdefault(key, Attempts())
        attempts.count += 1
        attempts.last_port = port

    def _spoof_note(self, key: MemberKey, port: int, own_port: int | None, now: float) -> Note:
        """A WARNING naming both ports; repeats from the same port within a minute go to DEBUG, so a flood
        of forgeries (each counted all the same) does not flood the log."""
        warned = self.spoof_warned.get((key, port))
        level = Level.DEBUG if warned is not None and now - warned < SPOOF_WARNING_SECONDS else Level.WARNING
        if level == Level.WARNING:
            self.spoof_warned[(key, port)] = now
        where = f"on port {own_port}" if own_port is not None else "unlocated"
        return self._note(level, key, f"{where}: a frame claiming it from port {port} was a spoof, dropped ({SPOOFED})")

    def _note(self, level: Level, key: MemberKey, text: str) -> Note:
        return Note(level, f"dpid {self.dpid}: member {key[1]} of cluster {key[0]} {text}")


@dataclass
class Placement:
    """Where each registered member sits on one switch (its pinned port, else where it was found and
    believed), indexed both ways, so that nothing the core does per event scans the registry."""

    located: dict[MemberKey, int] = field(default_factory=dict)
    by_port: dict[int, set[MemberKey]] = field(default_factory=dict)
    per_cluster: Counter[str] = field(default_factory=Counter)  # cluster name -> members located here
    crowded: set[int] = field(default_factory=set)  # ports holding more than one member
    unchecked: set[int] = field(default_factory=set)  # ports that gained a member or another host since the
    # last look for shared ports (SwitchLocations.shared_port_notes)

    def place(self, key: MemberKey, port: int | None) -> int | None:
        """Put the member on port (None: nowhere on this switch); the port it was on before."""
        old = self.located.get(key)
        if old == port:
            return old
        if old is not None:
            keys = self.by_port[old]
            keys.discard(key)
            if len(keys) < 2:
                self.crowded.discard(old)
            if not keys:
                del self.by_port[old]
            del self.located[key]
            self.per_cluster[key[0]] -= 1
            if not self.per_cluster[key[0]]:
                del self.per_cluster[key[0]]
        if port is not None:
            keys = self.by_port.setdefault(port, set())
            keys.add(key)
            if len(keys) > 1:
                self.crowded.add(port)
            self.located[key] = port
            self.per_cluster[key[0]] += 1
            self.unchecked.add(port)
        return old
