"""Helpers shared by test modules: test modules import from here (and their conftest), never from each
other, so a test module can be moved, split or deleted without breaking another."""
