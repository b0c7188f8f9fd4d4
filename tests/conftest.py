"""Shared pytest fixtures. Model fixtures live in model_fixtures.py (a pytest plugin)."""

pytest_plugins = ["model_fixtures"]
