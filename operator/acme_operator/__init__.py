"""acme-gateway's Kubernetes operator: CRDs in, store rows out; issued certificates back as Secrets."""
