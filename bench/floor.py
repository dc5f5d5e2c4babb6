"""The framework's floor: an app that answers a proxy ARP with no parsing, no decision and no logging.

Loaded instead of nlbflow by `python -m bench.arp` (the latency legs): on every packet-in it sends back a
packet-out of the answer packed from the request's bytes by slicing (the requester's MAC and IP, the
target's dedicated MAC 02:de:<its DIP>), through Datapath.send, the framework's cheapest way out. Its
packet-in to packet-out time is what os-ken or Ryu and eventlet cost before any app does anything. It
installs no flow: bench/arp.py adds the punt flow with ovs-ofctl. Never part of a deployment.
"""

from __future__ import annotations

import struct

from ryu_apps.compat import MAIN_DISPATCHER, BaseApp, ofp_event, ofproto_v1_3, set_ev_cls

PACKET_OUT = struct.Struct("!BBHIIIH6xHHIH6x")  # header, buffer, in_port, actions_len, one output action


class FrameworkFloor(BaseApp):
    OFP_VERSIONS = (ofproto_v1_3.OFP_VERSION,)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        msg = ev.msg
        request = bytes(msg.data)
        requester_mac, requester_ip, target_ip = request[6:12], request[28:32], request[38:42]
        target_mac = b"\x02\xde" + target_ip
        answer = requester_mac + target_mac + b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x02"
        answer += target_mac + target_ip + requester_mac + requester_ip + bytes(18)
        ofp = ofproto_v1_3
        header = PACKET_OUT.pack(
            *(ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT, PACKET_OUT.size + len(answer), 0),
            *(ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, 16, ofp.OFPAT_OUTPUT, 16, msg.match["in_port"], ofp.OFPCML_MAX),
        )
        msg.datapath.send(header + answer)
