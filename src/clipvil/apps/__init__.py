"""clipvil.apps: what a user runs that is not training — extract, predict, demo, score (thin, on the layers below)."""
