"""Prometheus metrics (served on the internal metrics port, never on the node port)."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("control_api_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("control_api_request_seconds", "HTTP request latency", ["route"])
AUTH_FAILURES = Counter("control_api_auth_failures_total", "Rejected signatures", ["reason"])
EVENTS = Counter("control_api_events_published_total", "Events published", ["event_type"])
