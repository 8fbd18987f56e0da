"""Helpers and fixtures shared by the test tree, registered in tests/conftest.py."""
