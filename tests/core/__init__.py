"""Unit tests for the pure (no-IO) core of the webhook."""
