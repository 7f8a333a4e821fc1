"""The gateway service (not built yet: it lands with its own issue)."""
