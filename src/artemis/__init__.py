"""Artemis: a service registry and discovery server, compatible with Ctrip's Artemis."""

__version__ = "0.1.0"
