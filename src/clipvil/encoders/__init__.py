"""clipvil.encoders."""
