"""clipvil.models."""
