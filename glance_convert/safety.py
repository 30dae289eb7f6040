"""What one safety check is: a named reason to refuse an upload.

The type lives below the formats and containers so that each of them can
define its own checks next to the parser that finds the fault;
:mod:`glance_convert.pipeline.checks` collects them into the one table
that the pipeline, ``glance-convert inspect`` and the docs read.
"""

from __future__ import annotations

import dataclasses
import re

from glance_convert import errors

# Where a check runs, in pipeline order.
PROPERTIES = 'image properties'  # what the user set on the image (task)
CONTAINER = 'container'          # a compressed or OVA upload, unpacked
BYTES = 'bytes'                  # our header parsers and format_inspector
INFO = 'qemu-img info'
CHECK = 'qemu-img check'
CONVERT = 'qemu-img convert'
OUTPUT = 'output'                # the converted file, inspected again
STAGES = (PROPERTIES, CONTAINER, BYTES, INFO, CHECK, CONVERT, OUTPUT)

_ANY = None


@dataclasses.dataclass(frozen=True)
class Check:
    """One reason to refuse an upload."""

    name: str                   # stable identifier
    sentence: str               # the refusal, with {placeholders}
    description: str            # what is checked, one line
    stages: tuple[str, ...]     # where it runs (see STAGES)
    passed: str                 # shown by ``inspect`` when it passes
    advisory: str = ''          # the advisory or CVE it answers
    #: Claimed formats it applies to; None: every claimed format.
    formats: tuple[str, ...] | None = _ANY
    #: format_inspector safety checks (``SafetyCheck.name``) it covers.
    inspector_checks: tuple[str, ...] = ()
    #: Container formats it applies to; None: every container format.
    containers: tuple[str, ...] | None = _ANY

    @property
    def stage(self) -> str:
        return ', '.join(self.stages)

    def say(self, **fields) -> str:
        """The sentence for the end user, placeholders filled in."""
        return self.sentence.format(**fields)

    def reject(self, detail: str | None = None, **fields):
        """Refuse the upload: ``ImageRejected`` with this check's sentence.

        ``detail`` goes to the operator's log only.
        """
        raise errors.ImageRejected(self.say(**fields), detail)

    def matches(self, reason: str) -> bool:
        """True if ``reason`` is this check's sentence, filled in."""
        parts = re.split(r'\{\w+\}', self.sentence)
        return re.fullmatch('.+'.join(map(re.escape, parts)),
                            reason) is not None

    def applies_to(self, claimed: str, container: str | None = None
                   ) -> bool:
        return ((self.formats is None or claimed in self.formats)
                and (self.containers is None
                     or container in self.containers))


def shown(value) -> str:
    """A value from the upload, fit for the user's sentence (or not)."""
    value = str(value)
    ok = value.isascii() and value.isalnum() and len(value) <= 32
    return value if ok else 'unrecognised'
