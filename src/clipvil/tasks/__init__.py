"""clipvil.tasks."""
