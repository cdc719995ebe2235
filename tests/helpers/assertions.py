"""Assertion helpers for the tests: the package's own (``tinygpt.testing``), which
``tinygpt selftest`` uses as well, re-exported so test imports stay short.

``assert_close`` reports like llm.c's check_tensor: name, max |diff|, worst element.
Every comparison in the tests goes through ``host``, so the same suite runs on NumPy and
on CuPy (``TINYGPT_BACKEND=cupy``, or the fake CuPy in ``tests/fake_cupy`` on a CPU)."""

from tinygpt.testing import assert_close, host

__all__ = ["assert_close", "host"]
