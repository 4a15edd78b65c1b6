"""Benchmark scripts (``make bench``); not part of the test run or the package."""
