"""Where the registry is kept across restarts, what the start takes from it, and the registry as the
config's `clusters:` entries: pure helpers.

The store itself is flows/store.py (SQLite). `controller.state_file` names its file, whatever extension
it has; without it, nlbflow-state.db beside the config. Versions before the store kept a YAML file in the
config's `clusters:` format, by default nlbflow-state.yaml; the store imports it once.
"""

from __future__ import annotations

import os

from flows.model import Cluster, Member, Registry

STATE_FILE_NAME = "nlbflow-state.db"
YAML_STATE_FILE_NAME = "nlbflow-state.yaml"  # the default of versions that kept the registry in YAML


def beside_config(config_path: str | None, path: str) -> str:
    """A path from the config, relative to the config file's folder (the working directory without one)."""
    base = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    return os.path.join(base, path)


def state_path(config_path: str | None, state_file: str | None) -> str:
    """The state file: as configured, else nlbflow-state.db beside the config."""
    return beside_config(config_path, state_file or STATE_FILE_NAME)


def yaml_state_path(config_path: str | None, state_file: str | None) -> str | None:
    """Where an older version kept the registry when the config names no state file; None when it names one
    (then that file is the one to import)."""
    return None if state_file else beside_config(config_path, YAML_STATE_FILE_NAME)


def startup_registry(configured: Registry, saved: Registry | None) -> tuple[Registry, bool]:
    """The registry to start with, and whether the config names clusters that are not applied.

    The config's clusters seed the registry on the first start only; once a state file exists it wins,
    so what the API removed stays removed.
    """
    if saved is None:
        return configured, False
    return saved, bool(configured.clusters) and configured != saved


def member_data(member: Member, cluster: Cluster) -> dict:
    mac = cluster.entry_mac(member)
    data: dict = {"ip": member.ip, **({"ips": list(member.ips)} if member.ips else {}), **({"mac": mac} if mac else {})}
    if member.pinned:
        data.update(dpid=member.dpid, port=member.port)
    return data


def cluster_data(cluster: Cluster) -> dict:
    return {
        "name": cluster.name,
        "cluster_ip": cluster.cluster_ip,
        **({"cluster_ips": list(cluster.cluster_ips)} if cluster.cluster_ips else {}),
        "cluster_mac": cluster.cluster_mac,
        "mode": cluster.mode.value,
        "arp": cluster.arp.value,
        "members": [member_data(member, cluster) for member in cluster.members],
    }
