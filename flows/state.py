"""The registry across restarts: a YAML file in the config's own `clusters:` format.

Written atomically (temp file, fsync, rename, fsync of the directory) before a change is answered, so a
`kill -9` at any moment leaves either the old file or the new one, never half of one. The temp file a
`kill -9` may leave behind is named `.<state file name>.<random>.tmp`: it is never read, and the next start
removes it. A file that cannot be read or validated stops the start: it is never replaced silently.
"""

from __future__ import annotations

import os
import tempfile

import yaml

from flows.config import ConfigError, load_config
from flows.model import Cluster, Member, Registry

STATE_FILE_NAME = "nlbflow-state.yaml"
HEADER = "# nlbflow registry, written by the controller on every change; edit only while it is stopped.\n"


def beside_config(config_path: str | None, path: str) -> str:
    """A path from the config, relative to the config file's folder (the working directory without one)."""
    base = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    return os.path.join(base, path)


def state_path(config_path: str | None, state_file: str | None) -> str:
    """The state file: as configured, else nlbflow-state.yaml beside the config."""
    return beside_config(config_path, state_file or STATE_FILE_NAME)


def startup_registry(configured: Registry, saved: Registry | None) -> tuple[Registry, bool]:
    """The registry to start with, and whether the config names clusters that are not applied.

    The config's clusters seed the registry on the first start only; once a state file exists it wins,
    so what the API removed stays removed.
    """
    if saved is None:
        return configured, False
    return saved, bool(configured.clusters) and configured != saved


def _temp_affixes(path: str) -> tuple[str, str]:
    """Prefix and suffix of the state file's temp files: they sit beside it, and no other file matches."""
    return f".{os.path.basename(path)}.", ".tmp"


def remove_stale_temp_files(path: str) -> list[str]:
    """Remove the temp files a write interrupted by a crash left beside the state file; return their paths.

    Only for the start: a running controller may be writing one."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix, suffix = _temp_affixes(path)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    stale = [
        os.path.join(folder, name)
        for name in sorted(names)
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix)
    ]
    for stale_path in stale:
        os.unlink(stale_path)
    return stale


def load_state(path: str) -> Registry | None:
    """The saved registry, or None when there is no state file yet (first start)."""
    if not os.path.exists(path):
        return None
    try:
        return load_config(path).registry
    except ConfigError as error:
        raise ConfigError(
            path, error.key, f"{error.problem}; the state file is never replaced silently: repair or remove it"
        ) from None


def member_data(member: Member, cluster: Cluster) -> dict:
    mac = cluster.entry_mac(member)
    data: dict = {"ip": member.ip, **({"mac": mac} if mac else {})}
    if member.pinned:
        data.update(dpid=member.dpid, port=member.port)
    return data


def cluster_data(cluster: Cluster) -> dict:
    return {
        "name": cluster.name,
        "cluster_ip": cluster.cluster_ip,
        "cluster_mac": cluster.cluster_mac,
        "mode": cluster.mode.value,
        "arp": cluster.arp.value,
        "members": [member_data(member, cluster) for member in cluster.members],
    }


def save_state(path: str, registry: Registry) -> None:
    text = HEADER + yaml.safe_dump({"clusters": [cluster_data(c) for c in registry.clusters]}, sort_keys=False)
    folder = os.path.dirname(os.path.abspath(path))
    prefix, suffix = _temp_affixes(path)
    fd, temp_path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
