"""Local simulators of the external services, served over HTTPS on loopback.

Written from shared/api-notes.md and shared/specs/ alone: nothing here imports the product's
clients, so a protocol mistake in a client is not silently mirrored here.
"""
