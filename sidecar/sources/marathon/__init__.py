"""The Marathon source: follows Marathon and translates its apps and tasks into the catalog."""

from __future__ import annotations

from .source import MarathonSource
from .translate import MarathonTranslator, catalog_from_apps

__all__ = ["MarathonSource", "MarathonTranslator", "catalog_from_apps"]
