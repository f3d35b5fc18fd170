"""Fixtures of the task tests: `vqa_world` lives in tests/conftest.py (shared with the CLI tests)."""
