"""Benchmarks (run as scripts; see bench/README.md). A package so tests can import helpers."""
