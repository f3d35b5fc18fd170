"""Small helpers shared by the sibling layers (data, metrics, ...): plain Python, no torch."""
