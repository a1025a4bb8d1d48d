"""Suite-wide fixtures: real BIND9 and PostgreSQL servers, and running ACME gateways."""

pytest_plugins = ["tests.infra.fixtures", "tests.gateway_fixtures"]
