"""Applying an HAProxy model to a running HAProxy: runtime API changes or a validated reload.

- :mod:`.applier`: the decide-and-reload core (:class:`Applier`);
- :mod:`.runtime_plan`: the runtime API commands for one backend (pure);
- :mod:`.drains`: servers leaving: drained, then deleted or kept as tombstones;
- :mod:`.validation`: ``haproxy -c`` on candidates, finding and bisecting the apps at fault;
- :mod:`.ports`: probing the ports new listeners need;
- :mod:`.model_subsets`: a model without some apps or frontends (pure);
- :mod:`.config_file`: the config file and its candidates; :mod:`.results`: what an apply did.
"""

from __future__ import annotations

from .applier import Applier
from .results import ApplyCounters, ApplyResult

__all__ = ["Applier", "ApplyCounters", "ApplyResult"]
