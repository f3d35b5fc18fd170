"""clipvil.train."""
