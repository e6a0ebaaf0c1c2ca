"""The Marathon source: follows Marathon (:mod:`.follower`, behind :class:`.source.MarathonSource`)
and translates its apps and tasks into the catalog (:mod:`.translate`)."""
