"""Rules on networks, ports and the container."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.definitions.normalize import BRIDGE, CONTAINER_MODE, HOST, network_modes
from marathon_bridge.definitions.rules.base import (
    Collector,
    as_dict,
    as_list,
    as_str,
    container_type,
    dicts,
    duplicate_names,
    non_empty_list,
    present,
)
from marathon_bridge.definitions.schema import is_integral

MSG_PORT_MAPPINGS_HOST = "portMappings are not allowed with host-networking"
MSG_PORT_DEFINITIONS_NON_HOST = "portDefinitions are only allowed with host-networking"
MSG_NETWORK_NAME_REQUIRED = "Network name must be specified when container network is selected."
MSG_DOCKER_SINGLE_NETWORK = (
    "may only specify a single container network when using the Docker container engine"
)
MSG_NETWORK_NAMES_FOR_HOST_PORT = (
    "networkNames must be a single item list when hostPort is specified "
    "and more than 1 container network is defined"
)


def check_networks(
    view: Mapping[str, Any], out: Collector, default_network_name: Optional[str]
) -> None:
    networks = dicts(view.get("networks"))
    modes = network_modes(view)
    if not networks:
        return
    if any(
        modes[i] == HOST and (as_str(n.get("name")) or as_dict(n.get("labels")))
        for i, n in networks
    ):
        out.add("/networks", "Host networks may not have names or labels")
    if any(modes[i] == BRIDGE and as_str(n.get("name")) for i, n in networks):
        out.add("/networks", "Bridge networks may not have names")
    names = [n.get("name") for _, n in networks if isinstance(n.get("name"), str)]
    unnamed = sum(1 for i, n in networks if modes[i] == CONTAINER_MODE and not present(n, "name"))
    if unnamed > 1 or len(names) != len(set(names)):
        out.add("/networks", "Duplicate networks are not allowed")
    counts = Counter(modes)
    hosts, bridges, containers = counts[HOST], counts[BRIDGE], counts[CONTAINER_MODE]
    if not (
        (hosts <= 1 and bridges == 0 and containers == 0)
        or (hosts == 0 and bridges <= 1 and containers == 0)
        or (hosts == 0 and bridges == 0 and containers > 0)
    ):
        out.add(
            "/networks",
            "May specify a single host network, single bridge network, "
            "or else 1-to-n container networks",
        )
    if unnamed and default_network_name is None:
        out.add("/", MSG_NETWORK_NAME_REQUIRED)
    if container_type(view) == "DOCKER" and containers > 1:
        out.add("/", MSG_DOCKER_SINGLE_NETWORK)


def check_explicit_network_ports(app: Mapping[str, Any], out: Collector) -> None:
    """Ports that do not fit explicitly given ``networks``.

    When ``networks`` is not given (legacy ``docker.network``/``ipAddress``, or nothing),
    Marathon silently drops the ports that do not apply, so only explicit networks count.
    """
    if not non_empty_list(app.get("networks")):
        return
    modes = network_modes(app)
    container = as_dict(app.get("container")) or {}
    docker = as_dict(container.get("docker")) or {}
    mappings = container.get("portMappings") or docker.get("portMappings")
    if HOST in modes and non_empty_list(mappings):
        out.add("/", MSG_PORT_MAPPINGS_HOST)
    definitions = app.get("portDefinitions") or app.get("ports")
    if any(m != HOST for m in modes) and non_empty_list(definitions):
        out.add("/", MSG_PORT_DEFINITIONS_NON_HOST)


# --------------------------------------------------------------------------- ports


def check_ports(view: Mapping[str, Any], out: Collector) -> None:
    definitions = view.get("portDefinitions")
    if duplicate_names(definitions):
        out.add("/portDefinitions", "Port names must be unique.")
    fixed = [p for p in (d.get("port") for _, d in dicts(definitions)) if is_integral(p) and p != 0]
    if len(fixed) != len(set(fixed)):
        out.add("/portDefinitions", "Ports must be unique.")
    container = as_dict(view.get("container")) or {}
    mappings = container.get("portMappings")
    if duplicate_names(mappings):
        out.add("/container/portMappings", "Port names must be unique.")
    networks = dicts(view.get("networks"))
    modes = network_modes(view)
    network_names = [n["name"] for _, n in networks if isinstance(n.get("name"), str)]
    several_containers = sum(1 for m in modes if m == CONTAINER_MODE) > 1
    for index, mapping in dicts(mappings):
        here = f"/container/portMappings({index})"
        names = mapping.get("networkNames")
        if (
            several_containers
            and present(mapping, "hostPort")
            and not (isinstance(names, list) and len(names) == 1)
        ):
            out.add(here, MSG_NETWORK_NAMES_FOR_HOST_PORT)
        for name_index, name in enumerate(as_list(names)):
            if isinstance(name, str) and name not in network_names:
                out.add(
                    f"{here}/networkNames({name_index})",
                    f"is not one of ({','.join(network_names)})",
                )


def port_count(view: Mapping[str, Any]) -> int:
    """How many ports ``portIndex`` may address (Marathon's defaults included)."""
    container = as_dict(view.get("container")) or {}
    mappings = container.get("portMappings")
    if non_empty_list(mappings):
        return len(container["portMappings"])
    definitions = view.get("portDefinitions")
    if isinstance(definitions, list):
        return len(definitions)
    return 1  # the default port definition (host) or port mapping (other modes)


def port_names(view: Mapping[str, Any]) -> list[str]:
    """Names a readiness check's ``portName`` may use (Marathon's defaults included)."""
    container = as_dict(view.get("container")) or {}
    if isinstance(container.get("portMappings"), list):
        ports = container["portMappings"]
    elif isinstance(view.get("portDefinitions"), list):
        ports = view["portDefinitions"]
    else:
        ports = [{"name": "default"}]
    return [p["name"] for p in ports if isinstance(p, Mapping) and isinstance(p.get("name"), str)]


# --------------------------------------------------------------------------- container


def check_container(view: Mapping[str, Any], out: Collector) -> None:
    container = as_dict(view.get("container"))
    if container is None:
        return
    engine = container_type(view)
    docker = as_dict(container.get("docker"))
    if engine == "DOCKER" and not present(container, "docker"):
        out.add("/container/docker", "not defined")
    if engine == "DOCKER" and docker is not None and present(docker, "pullConfig"):
        out.add(
            "/container/docker/pullConfig", "pullConfig is not supported with Docker containerizer"
        )
    if engine == "MESOS" and docker is not None:
        pull = as_dict(docker.get("pullConfig"))
        secrets = as_dict(view.get("secrets")) or {}
        if (
            pull is not None
            and isinstance(pull.get("secret"), str)
            and pull["secret"] not in secrets
        ):
            out.add(
                "/container/docker/pullConfig",
                "pullConfig.secret must refer to an existing secret",
                hint="secrets: " + (", ".join(secrets) or "none"),
            )
    if engine == "DOCKER" and is_integral(view.get("gpus")) and view["gpus"] > 0:
        out.add("/", "GPU resources only work with the Mesos containerizer")
    for index, volume in dicts(container.get("volumes")):
        if "hostPath" in volume:
            for key in ("containerPath", "hostPath"):
                if not as_str(volume.get(key)):
                    out.add(f"/container/volumes({index})/{key}", "must not be empty")
