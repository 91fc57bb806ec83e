"""Test support: local stand-ins for external services (no network in tests)."""
