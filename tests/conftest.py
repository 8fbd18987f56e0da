"""The root of the test tree: registers the shared plugins under tests/plugins/.

Tests are imported with `--import-mode=importlib` (set in pyproject) instead of `__init__.py`
files: same-named modules in different folders cannot collide, and no test module can import
another, so whatever tests share lives in a plugin (`pythonpath = ["tests"]` makes them
importable as `plugins.*`): fixtures reach tests by name, plain helpers by import.
"""
from __future__ import annotations

pytest_plugins = ("plugins.configs", "plugins.mosquitto")
