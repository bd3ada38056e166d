"""Exit codes of the client commands, and what makes each one.

    0  done (for `watch` and `register`: stopped by SIGINT or SIGTERM)
    1  a node refused the request (its error code and message), answered an HTTP error status,
       or, read back after a write, does not show what it wrote
    2  wrong usage (click's: an unknown option, a malformed value)
    3  no node could be reached, or none answered something readable
    4  refused by artemis before anything was sent: an unknown target without --force, a
       confirmation not given
    5  nothing to change: the target is already as asked (nothing was sent)

Every failure is one line on stderr, `artemis: ...`, never a traceback. `Stop` and its kinds are
the command's own refusals (4, 5); the client's ArtemisError tree gives 1 and 3 (in target.run).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Exit", "NotAsWritten", "NothingToChange", "Refused", "Stop"]


class Exit(IntEnum):
    DONE = 0
    NODE_REFUSED = 1
    USAGE = 2
    UNREACHABLE = 3
    REFUSED = 4
    UNCHANGED = 5


class Stop(Exception):
    """The command stops on its own, with `code` and a one-line message."""

    code = Exit.REFUSED


class Refused(Stop):
    """Refused before anything was sent: an unknown target, a confirmation not given."""

    code = Exit.REFUSED


class NothingToChange(Stop):
    """The target already is as asked: nothing was sent."""

    code = Exit.UNCHANGED


class NotAsWritten(Stop):
    """Read back after a write, the node does not show what was written."""

    code = Exit.NODE_REFUSED
