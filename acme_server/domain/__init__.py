"""The ACME domain core: statuses, the order/authorization/challenge state machine, identifier
rules and problem types.

Pure Python, no SQL and no HTTP: the web layer translates requests into calls here, the store
persists what these functions decide, and both can be tested without the other.
"""
