"""marathon-publisher: writes the service catalog into ZooKeeper, nerve- and synapse-compatible.

`plan` computes each service's diff (pure), `writer` commits it in fenced transactions,
`leadership` runs kazoo's election on the writing client, `publisher` ties them together.
"""
