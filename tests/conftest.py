"""The root of the test tree: registers the shared plugins under tests/plugins/.

Tests are imported with `--import-mode=importlib` (set in pyproject) instead of `__init__.py`
files: same-named modules in different folders cannot collide, and no test module can import
another, so whatever tests share lives in a plugin (`pythonpath = ["tests"]` makes them
importable as `plugins.*`): fixtures reach tests by name, plain helpers by import.
"""
from __future__ import annotations

# Imported here, at a shallow stack, not first by hypothesis's own plugin at the end of a
# session that ran no hypothesis test: CPython 3.11.7 then fails to compile its (rewritten)
# modules with "SystemError: AST constructor recursion depth mismatch" after the tests passed.
import hypothesis  # noqa: F401

pytest_plugins = ("plugins.configs", "plugins.mosquitto", "plugins.browser")
