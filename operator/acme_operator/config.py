"""The operator's settings, as given on the command line (or the matching env vars)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorConfig:
    database_url: str
    namespaces: tuple[str, ...] = ()
    health_listen: str = "127.0.0.1:8081"
    export_interval: float = 2.0
    acme_base_url: str | None = None
    # Re-read Secrets and re-sync the allow-list this often (catches admin edits, missed events).
    resync_interval: float = 30.0
    # Refresh each registration's status (accounts, counts) this often.
    status_interval: float = 10.0
    # HOST:PORT of the Prometheus /metrics listener; None: no listener.
    metrics_listen: str | None = None
    # Leader election (leader.py): several replicas, one active. Off: this one always acts.
    leader_election: bool = False
    lease_name: str = "acme-gateway-operator"
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    lease_renew_deadline: float = 10.0
    lease_retry_period: float = 2.0

    def account_url(self, account_id: str) -> str:
        """How an account is named in status and annotations: its ACME URL when known."""
        if self.acme_base_url:
            return f"{self.acme_base_url.rstrip('/')}/acme/acct/{account_id}"
        return account_id
