"""Benchmark commands: they print figures; they are not tests."""
