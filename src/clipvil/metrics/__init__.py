"""clipvil.metrics."""
