"""Thin job entry points: ``python -m jobs.<name> --config FILE``."""
