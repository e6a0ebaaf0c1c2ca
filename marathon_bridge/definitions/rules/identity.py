"""Rules on ids, deprecated fields and the command: what an app is and how it starts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marathon_bridge.definitions.rules.base import (
    Collector,
    as_dict,
    as_list,
    container_type,
    duplicate_names,
    non_empty_list,
    present,
)
from marathon_bridge.definitions.schema import is_integral

RESERVED_ID_ENDINGS = ("restart", "tasks", "versions", ".", "..")
ID_SEGMENT = r"(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])"
MSG_CMD_ARGS_CONTAINER = (
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
)


def id_problems(app_id: str) -> tuple[list[str], list[str]]:
    """(type problems, semantic problems) of an app id string, Marathon's way."""
    segments = app_id.split("/")
    if not all(s in ("", "..") or re.fullmatch(ID_SEGMENT, s) for s in segments):
        return ["error.pattern"], []
    named = [s for s in segments if s]
    if not named:
        return [], ["Path must contain at least one path element"]
    if named[-1] in RESERVED_ID_ENDINGS:
        return [], [
            "must not end with any of the following reserved keywords: "
            + ", ".join(RESERVED_ID_ENDINGS)
        ]
    return [], []


def check_ids(app: Mapping[str, Any], out: Collector) -> None:
    app_id = app.get("id")
    if isinstance(app_id, str) and app_id:
        type_problems, semantic_problems = id_problems(app_id)
        for message in type_problems:
            out.add("/id", message, "type")
        for message in semantic_problems:
            out.add("/id", message)
    for index, dependency in enumerate(as_list(app.get("dependencies"))):
        if isinstance(dependency, str) and dependency:
            type_problems, semantic_problems = id_problems(dependency)
            for message in type_problems + semantic_problems:
                out.add(
                    f"/dependencies({index})",
                    message,
                    "type" if message in type_problems else "semantic",
                )


def check_legacy(app: Mapping[str, Any], out: Collector) -> None:
    container = as_dict(app.get("container")) or {}
    docker = as_dict(container.get("docker")) or {}
    ip_address = as_dict(app.get("ipAddress"))
    networks_given = non_empty_list(app.get("networks"))
    if present(docker, "network") and present(app, "networks"):
        out.add("/", "must not specify both container.docker.network and networks")
    if ip_address is not None and networks_given:
        out.add("/", "must not specify both networks and ipAddress")
    if (
        ip_address is not None
        and container_type(app) == "DOCKER"
        and present(ip_address, "discovery")
    ):
        out.add("/ipAddress", "ipAddress/discovery is not allowed for Docker containers")
    ports = as_list(app.get("ports"))
    fixed = [p for p in ports if is_integral(p) and p != 0]
    if len(fixed) != len(set(fixed)):
        out.add("/", "ports must be unique")
    if ip_address is not None and (ports or non_empty_list(app.get("portDefinitions"))):
        out.add("/", "cannot specify both an IP address and port")
    definitions = app.get("portDefinitions")
    if ports and isinstance(definitions, list) and definitions:
        same = [d.get("port", 0) if isinstance(d, Mapping) else None for d in definitions] == ports
        if not same:
            out.add("/", "cannot specify both ports and port definitions")
    if non_empty_list(docker.get("portMappings")) and present(container, "portMappings"):
        out.add("/container", "cannot specify both portMappings and docker.portMappings")
    discovery = as_dict(ip_address.get("discovery")) if ip_address is not None else None
    if discovery and non_empty_list(discovery.get("ports")) and present(container, "portMappings"):
        out.add("/", "container.portMappings and ipAddress.discovery.ports must not both be set")
    if non_empty_list(app.get("uris")) and non_empty_list(app.get("fetch")):
        out.add("/uris", "may not be set in conjunction with fetch")
    if container_type(app) == "MESOS":
        for key in ("network", "parameters", "portMappings"):
            value = docker.get(key)
            if value is not None and value != []:
                out.add(f"/container/docker/{key}", "must be empty")
    docker_mappings = docker.get("portMappings")
    if duplicate_names(docker_mappings):
        out.add("/container/docker/portMappings", "Port names must be unique.")


def check_command(app: Mapping[str, Any], view: Mapping[str, Any], out: Collector) -> None:
    has_cmd = present(app, "cmd")
    args = app.get("args")
    has_args = args is not None and args != []
    container = as_dict(view.get("container"))
    has_container = False
    if container is not None:
        engine = container_type(view)
        has_image = present(container, "docker") or present(container, "appc")
        has_container = engine in ("DOCKER", "MESOS") and has_image
    if not ((has_cmd != has_args) or (not (has_cmd and has_args) and has_container)):
        out.add("/", MSG_CMD_ARGS_CONTAINER)
    cmd = app.get("cmd")
    if isinstance(cmd, str) and len(cmd) == 1:
        out.add("/", "must not be an empty string")
