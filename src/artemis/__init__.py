"""Artemis: a service registry and discovery server, compatible with Ctrip's Artemis.

`__version__` is the one source of the version: the distribution's (pyproject.toml reads it from
here) and `artemis --version`'s.
"""

__version__ = "0.1.0"
