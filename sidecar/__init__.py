"""marathon-sidecar: keeps a node-local HAProxy in step with Marathon."""

from __future__ import annotations
