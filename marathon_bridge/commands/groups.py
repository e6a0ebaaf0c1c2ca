"""Deployment groups as the commands meet them: the live members of a file's group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marathon_bridge.deploy import absolute_id
from marathon_bridge.deployment_groups import GROUP_LABEL, base_id, group_of, order_members


def live_members(client: Any, app: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The running apps of the deployment group whose base id ``app`` has, oldest first ([] when
    none runs, and for an app that is itself a member: ``<id>-blue``/``<id>-green``)."""
    app_id = absolute_id(str(app.get("id") or ""))
    group = group_of(app)
    if not group or base_id(app_id) != app_id:
        return []
    apps = client.list_apps(
        embed=["apps.counts", "apps.deployments"], label=f"{GROUP_LABEL}=={group}"
    )
    return order_members(apps)
