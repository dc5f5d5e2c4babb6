"""Pure core of nlbflow: addresses, registry, ARP decisions, flow specs and cookies.

Nothing here imports an SDN framework, so every decision is testable without a switch.
"""
