"""Property-based fuzz tests (hypothesis) over parsers and the HTTP endpoints."""
