"""Changes to the fabric's switches as the REST API asks for them: pure functions from one fabric to the next.

As flows/registry_ops.py does for the registry, each returns the new fabric and the switch it touched, or
raises RegistryError with the HTTP status the refusal deserves (400 a bad field, 404 unknown, 409 a
conflict), and checks every field with the config's own validators (flows/config.py).
"""

from __future__ import annotations

import re
from dataclasses import replace

from flows.config import MAX_DPID, ConfigError, check_uplinks, switch_from_data
from flows.model import Fabric, Registry, SwitchConfig
from flows.registry_ops import RegistryError

SOURCE = "request"
SWITCH_FIELDS = ("name", "uplinks")
_DPID_TEXT_RE = re.compile(r"[0-9a-fA-F]{16}|0[xX][0-9a-fA-F]{1,16}|0|[1-9][0-9]{0,19}")


def parse_dpid(text: str) -> int:
    """A dpid in a URL: the 16 hex digits OVS prints, 0x hex, or a decimal integer (fewer than 16 digits)."""
    if _DPID_TEXT_RE.fullmatch(text):
        value = int(text, 16) if len(text) == 16 or text[:2].lower() == "0x" else int(text)
        if value <= MAX_DPID:
            return value
    raise RegistryError(
        400, f"dpid: {text!r} is not a datapath id (16 hex digits as OVS prints it, 0x hex, or a decimal integer)"
    )


def find_switch(fabric: Fabric, dpid_text: str) -> SwitchConfig:
    dpid = parse_dpid(dpid_text)
    switch = fabric.switch(dpid)
    if switch is None:
        raise RegistryError(404, f"dpid: no switch {dpid:016x} is configured")
    return switch


def put_switch(fabric: Fabric, registry: Registry, dpid_text: str, data: object) -> tuple[Fabric, SwitchConfig]:
    """Create the switch's configuration or replace it whole, in place (a new one goes last). The body
    has `name` and `uplinks`, both optional: one left out is none."""
    dpid = parse_dpid(dpid_text)
    if not isinstance(data, dict):
        raise RegistryError(400, "the body must be a JSON object")
    unknown = sorted(set(data) - set(SWITCH_FIELDS))
    if unknown:
        raise RegistryError(400, f"{unknown[0]}: unknown field (known fields: {', '.join(SWITCH_FIELDS)})")
    present = {name: value for name, value in data.items() if value is not None}
    try:
        switch = switch_from_data(present, "", SOURCE, dpid=dpid)
        check_uplinks(switch, Registry(), SOURCE)
    except ConfigError as error:
        raise RegistryError(400, _message(error)) from None
    _check_switch(fabric, registry, switch)
    if fabric.switch(dpid) is None:
        return Fabric(switches=(*fabric.switches, switch)), switch
    return Fabric(switches=tuple(switch if s.dpid == dpid else s for s in fabric.switches)), switch


def remove_switch(fabric: Fabric, dpid_text: str) -> tuple[Fabric, SwitchConfig]:
    switch = find_switch(fabric, dpid_text)
    return replace(fabric, switches=tuple(s for s in fabric.switches if s.dpid != switch.dpid)), switch


def check_pins(fabric: Fabric, registry: Registry) -> None:
    """After a registry change: no member pinned to a numbered uplink of its switch (409). Costs the
    configured switches, their uplinks and the members pinned on them, not the registry."""
    for switch in fabric.switches:
        try:
            check_uplinks(switch, registry, SOURCE)
        except ConfigError as error:
            raise RegistryError(409, f"{_pin_message(switch, error)}") from None


def _check_switch(fabric: Fabric, registry: Registry, switch: SwitchConfig) -> None:
    """What a switch clashes with (409): another switch's name, a member pinned to one of its uplinks."""
    if switch.name is not None:
        for other in fabric.switches:
            if other.name == switch.name and other.dpid != switch.dpid:
                raise RegistryError(409, f"name: {switch.name!r} is already the name of switch {other.dpid:016x}")
    try:
        check_uplinks(switch, registry, SOURCE)
    except ConfigError as error:
        raise RegistryError(409, _message(error)) from None


def _pin_message(switch: SwitchConfig, error: ConfigError) -> str:
    label = f" ({switch.name})" if switch.name else ""
    return f"{error.problem}; it is an uplink of switch {switch.dpid:016x}{label} in the fabric's configuration"


def _message(error: ConfigError) -> str:
    """The field as the body names it: `name: ...`, `uplinks[1]: ...`."""
    return f"{error.key}: {error.problem}" if error.key else error.problem
