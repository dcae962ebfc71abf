"""What operators see: Prometheus metrics with bounded label sets, the decision log, log configuration
and the OpenAPI description of the HTTP surface.

Owns: telemetry and self-description. May import: `core` only (and the package version).
"""
