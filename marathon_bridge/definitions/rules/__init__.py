"""Marathon's validation rules on a well-typed app, one module per subject: :mod:`.identity` (ids,
deprecated fields, cmd/args/container), :mod:`.networking` (networks, ports, container),
:mod:`.checks` (health and readiness checks, constraints, scheduling, secrets)."""
