"""`python -m acme_server.cli`."""

from acme_server.cli import main

main()
