"""Observation: structured logs, Prometheus metrics, and the wrapper that logs and measures every region call."""
