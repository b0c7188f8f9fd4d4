"""Runtime implementations behind one interface (:mod:`.base`)."""
