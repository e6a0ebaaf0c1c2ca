"""The test kit: what the tests and the benchmarks share (not shipped with the package).

pytest finds it through ``pythonpath`` in setup.cfg; the benchmarks run from the repository
root as modules (``python -m bench.bench_render``). One module per need:

- :mod:`testkit.waiting`: ``wait_until``, the one way to wait for a condition.
- :mod:`testkit.ports`: ``free_port`` / ``free_ports``, loopback ports chosen by the OS.
"""

from __future__ import annotations

from testkit.ports import free_port, free_ports
from testkit.waiting import WaitTimeout, wait_until

__all__ = ["WaitTimeout", "free_port", "free_ports", "wait_until"]
