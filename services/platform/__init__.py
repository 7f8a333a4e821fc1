"""Composition roots that wire several services together: the embedded platform
(`parley run`, `parley shell`), the gateway worker's process, and the adapters that give the
gateway its view of the other services (trackers from the dialogue's SQL archive, the NLU
model). Services never import each other; only these modules (and `services/cli.py`) do."""
