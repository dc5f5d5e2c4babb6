"""The fabric's switches as the core sees them: which ports are uplinks, resolved from the config.

A configured uplink is a port number or a port's name in OVS. A name is looked up in the switch's port
description each time the ports change, so a port that is renumbered (deleted and added again) is
followed, and a name no port has is shown as unresolved, never guessed (docs/fabric.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Optional, Union

from flows.model import SwitchConfig

# Each configured uplink and the port it is now (None: no port has that name). typing's spelling, since an
# alias is evaluated at import and Ryu's Python 3.9 has no `int | None` there.
Resolved = tuple[tuple[Union[int, str], Optional[int]], ...]


def resolve_uplinks(switch: SwitchConfig | None, names: Mapping[int, str]) -> Resolved:
    """Each uplink of the switch's config and the port it names now; names: port -> its name in OVS."""
    if switch is None or not switch.uplinks:
        return ()
    by_name = {name: port for port, name in names.items()}
    return tuple((uplink, uplink if isinstance(uplink, int) else by_name.get(uplink)) for uplink in switch.uplinks)


def uplink_ports(resolved: Resolved, ports: Collection[int]) -> frozenset[int]:
    """The uplinks that are ports of the switch now: the only ones its flows send to."""
    return frozenset(port for _, port in resolved if port is not None and port in ports)
