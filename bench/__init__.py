"""Benchmarks of posctl: run ``python -m bench [--json FILE] [--quick]`` from the repository root.

Not tests: nothing here asserts a timing. See ``bench/__main__.py`` for what is measured.
"""
