"""One place that knows whether os-ken or Ryu is running; everything else imports from here.

The manager that loads the app has already imported its framework, so that one is preferred;
otherwise os-ken (maintained) is tried before Ryu.
"""

import sys

_RYU_FIRST = "ryu" in sys.modules and "os_ken" not in sys.modules
_ORDER = ("ryu", "os_ken") if _RYU_FIRST else ("os_ken", "ryu")

for _name in _ORDER:
    try:
        _framework = __import__(_name)
        break
    except ImportError:
        continue
else:
    raise ImportError("nlbflow needs os-ken (osken-manager) or Ryu (ryu-manager); neither is installed")

RUNTIME = "os-ken" if _framework.__name__ == "os_ken" else "ryu"

if RUNTIME == "os-ken":
    from os_ken import cfg
    from os_ken.base import app_manager
    from os_ken.controller import ofp_event
    from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from os_ken.lib import hub
    from os_ken.lib.packet import arp, ethernet, packet
    from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    BaseApp = app_manager.OSKenApp
else:
    from ryu import cfg
    from ryu.base import app_manager
    from ryu.controller import ofp_event
    from ryu.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from ryu.lib import hub
    from ryu.lib.packet import arp, ethernet, packet
    from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    BaseApp = app_manager.RyuApp

__all__ = [
    "CONFIG_DISPATCHER",
    "DEAD_DISPATCHER",
    "MAIN_DISPATCHER",
    "RUNTIME",
    "BaseApp",
    "arp",
    "cfg",
    "ethernet",
    "hub",
    "ofp_event",
    "ofproto_v1_3",
    "ofproto_v1_3_parser",
    "packet",
    "set_ev_cls",
]
