"""Property-based fuzz tests (hypothesis) over parsers and the HTTP endpoints.

They run in the regular test run with a fixed, derandomized budget and no example
database (`strategies.budget`), so every run explores the same inputs. A failure shows the
input as found; set ACME_FUZZ_SHRINK=1 to have hypothesis shrink it to a minimal one.
"""
