"""Parley's services: small packages that share only `schemas` and `services.common`."""
