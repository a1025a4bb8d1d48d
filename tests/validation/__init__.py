"""Validation against real servers: BIND9 for DNS, real HTTP challenge servers on sockets."""
