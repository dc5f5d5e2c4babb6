"""One switch connection's control-path policy: which refused flows to stop retrying, and when to resync.

A switch that refuses a flow-mod answers with an OFPT_ERROR carrying the flow-mod's xid; the app finds
the flow it sent under that xid and tells the Session. The Session decides, from plain data and an
explicit `now`, whether a read-back (resync) is wanted, how long to back off before it starts, and when
a flow the switch keeps refusing is given up: reported, logged once, and no longer sent on this
connection. Only one resync runs per connection, however many errors arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.flowspec import FlowSpec

FLOW_ADD = "add"
FLOW_DELETE = "delete"


@dataclass(frozen=True)
class SessionPolicy:
    """`give_up_after` refusals of one flow on one connection make it given up; resyncs after refusals
    wait `first_backoff` seconds, doubling after each resync that was refused again, up to `max_backoff`."""

    give_up_after: int = 3
    first_backoff: float = 1.0
    max_backoff: float = 60.0

    def backoff(self, failed_resyncs: int) -> float:
        return min(self.max_backoff, self.first_backoff * 2**failed_resyncs)


@dataclass(frozen=True)
class Refusal:
    """A flow change the switch refused, with the OpenFlow error it gave (type and code, as numbers)."""

    command: str  # FLOW_ADD or FLOW_DELETE
    flow: FlowSpec
    error_type: int
    error_code: int
    count: int
    first_seen: float
    last_seen: float
    given_up: bool = False


@dataclass
class Session:
    """The refusals and the resync schedule of one switch connection; a new connection starts a new one."""

    policy: SessionPolicy = field(default_factory=SessionPolicy)
    refusals: dict[tuple[str, FlowSpec], Refusal] = field(default_factory=dict)
    resync_wanted: bool = False
    resync_running: bool = False
    resyncs: int = 0  # resyncs started on this connection, for status
    failed_resyncs: int = 0  # consecutive resyncs that were refused again: the backoff grows with them
    not_before: float = 0.0  # the next resync starts no earlier than this

    def refused(self, now: float, command: str, flow: FlowSpec, error_type: int, error_code: int) -> bool:
        """Record one refusal; True exactly when it makes the flow given up (the moment to warn, once).

        A flow given up is not retried, so it wants no resync; any other refusal wants one.
        """
        key = (command, flow)
        known = self.refusals.get(key)
        if known is not None and known.given_up:
            return False
        count = 1 if known is None else known.count + 1
        first_seen = now if known is None else known.first_seen
        given_up = count >= self.policy.give_up_after
        self.refusals[key] = Refusal(command, flow, error_type, error_code, count, first_seen, now, given_up)
        if not given_up:
            self.want_resync(now)
        return given_up

    def want_resync(self, now: float) -> None:
        """Ask for a read-back; one already waiting or running covers it (it reads the switch later)."""
        if not self.resync_wanted and not self.resync_running:
            self.not_before = max(self.not_before, now + self.policy.backoff(self.failed_resyncs))
        self.resync_wanted = True

    def resync_delay(self, now: float) -> float | None:
        """Seconds until the wanted resync may start (0: now), or None if none is wanted or one runs."""
        if not self.resync_wanted or self.resync_running:
            return None
        return max(0.0, self.not_before - now)

    def resync_started(self, now: float) -> None:
        self.resync_wanted = False
        self.resync_running = True
        self.resyncs += 1

    def resync_finished(self, now: float) -> None:
        """The resync's changes are confirmed (its barrier answered). Refused again meanwhile: back off
        longer before the next one; clean: the next refusal waits only the first backoff."""
        self.resync_running = False
        if self.resync_wanted:
            self.failed_resyncs += 1
            self.not_before = now + self.policy.backoff(self.failed_resyncs)
        else:
            self.failed_resyncs = 0

    def withheld(self) -> frozenset[FlowSpec]:
        """Flows not to add again on this connection: the switch kept refusing them."""
        return frozenset(r.flow for r in self.refusals.values() if r.given_up and r.command == FLOW_ADD)

    def given_up(self) -> list[Refusal]:
        return [refusal for refusal in self.refusals.values() if refusal.given_up]

    def retry_all(self) -> None:
        """An operator's reconcile: every refused flow gets a fresh set of tries."""
        self.refusals.clear()
        self.failed_resyncs = 0

    def counts(self) -> dict[str, int]:
        return {"resyncs": self.resyncs, "refused": len(self.given_up())}


def refusal_view(refusal: Refusal) -> dict:
    """The fields status and audit show for a refused flow (besides the flow itself)."""
    return {
        "command": refusal.command,
        "error_type": refusal.error_type,
        "error_code": refusal.error_code,
        "refusals": refusal.count,
    }
