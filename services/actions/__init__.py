"""The actions service (not built yet: it lands with its own issue)."""
