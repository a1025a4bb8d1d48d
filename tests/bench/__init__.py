"""Smoke tests of bench/: the load generator and its CPU figures, not speed."""
