"""Skips are visible, and each one a CI run takes is explained.

A skip that happens on every run hides untested code while the run looks
green.  ``tests/allowed_skips.txt`` lists the skips that may happen, each
with the reason it is acceptable; under the test command
(``GLANCE_CONVERT_CHECK_SKIPS=1``, set by tox.ini) a skip that no line
allows fails the run.
"""

import dataclasses
import fnmatch
import os

ALLOWLIST = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         'allowed_skips.txt')


@dataclasses.dataclass(frozen=True)
class Allowed:
    pattern: str   # an fnmatch pattern of test node ids
    why: str


def read_allowlist(path=ALLOWLIST):
    """The allowed skips: ``PATTERN | WHY`` lines; ``#`` starts a comment."""
    allowed = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            pattern, sep, why = (part.strip() for part in line.partition('|'))
            if not sep or not pattern or not why:
                raise ValueError('%s:%d: expected "PATTERN | WHY", got %r'
                                 % (path, number, line))
            allowed.append(Allowed(pattern, why))
    return allowed


def unexplained(skipped, allowed):
    """The ``(nodeid, reason)`` pairs of ``skipped`` that no line allows."""
    return [(nodeid, reason) for nodeid, reason in skipped
            if not any(fnmatch.fnmatchcase(nodeid, a.pattern)
                       for a in allowed)]
