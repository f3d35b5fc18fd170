"""Small helpers shared by every layer above: atomic file writes, the device/distributed set-up, the
state-dict comparison, the official answer normalisation — one of each."""
