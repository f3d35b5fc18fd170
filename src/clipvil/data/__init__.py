"""clipvil.data."""
