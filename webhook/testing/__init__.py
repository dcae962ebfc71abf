"""Fakes shipped beside the real thing: used by the tests, the dev mode and the benchmarks.

Rules: nothing here is imported by the production code paths; every fake is a real HTTP server on a
loopback socket (no mocked transports), never sleeps to wait for something, and records what it received.

May import: only `webhook.testing` itself (a fake never borrows the code it stands in for). Only the
dev mode (`webhook/dev.py`), the tests and the benchmarks import it.
"""
