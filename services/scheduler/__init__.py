"""The scheduler service: reminders and human-handoff timers, persisted and fired exactly once.

See `README.md` in this folder for the exactly-once mechanism across replicas.
"""
