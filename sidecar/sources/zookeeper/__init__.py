"""The ZooKeeper source: the catalog a publisher wrote (or nerve registered), watched per service.

`layout` holds the paths, names and JSON (pure); `watcher` keeps one DataWatch plus one
ChildrenWatch per service and hands "service X now has instances [...]" to a callback.
"""
