"""Revocation information for relying parties (CRL, OCSP, the issuer certificate) on a
plain-HTTP listener of its own, and ACME Renewal Information (RFC 9773)."""
