"""Sharing: the data resource catalog, access decisions, Trino, publishing, the audit log, requests."""
