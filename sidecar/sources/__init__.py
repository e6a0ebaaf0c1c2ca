"""Where the service catalog comes from: one interface (:mod:`.base`), one folder per source."""
