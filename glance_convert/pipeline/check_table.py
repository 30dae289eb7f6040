"""Every safety check in one table, in the order an upload meets them.

The checks are defined where they are refused: the general ones and those
of the image's properties in :mod:`.checks`, a disk format's own in its
module under :mod:`glance_convert.formats`, a container's in its module
under :mod:`.containers`.  This table puts them together for the task's
metrics, ``glance-convert inspect`` and the documentation's security
table, so a new check or container needs no entry here.
"""

from __future__ import annotations

from glance_convert import formats
from glance_convert import units
from glance_convert.pipeline import checks
from glance_convert.pipeline import containers
from glance_convert.safety import Check

#: The checks before the disk is judged: properties, then containers.
UPLOAD_CHECKS: tuple[Check, ...] = checks.PROPERTY_CHECKS + tuple(
    check for row in containers.CONTAINERS.values() for check in row.checks)

#: Every check, in the order the pipeline runs them.
CHECKS: tuple[Check, ...] = UPLOAD_CHECKS + checks.DISK_CHECKS

_BY_NAME = {c.name: c for c in CHECKS}


def by_name(name: str) -> Check:
    """The check called ``name``; KeyError if there is none."""
    return _BY_NAME[name]


def matching(reason: str) -> Check | None:
    """The first check whose sentence ``reason`` is, or None."""
    return next((c for c in CHECKS if c.matches(reason)), None)


def stages_run(claimed: str, container: str | None = None
               ) -> tuple[str, ...]:
    """The stages an upload claiming ``claimed`` in ``container`` goes
    through before it is converted or stored.

    An upload in a container that has checks of its own (compressed,
    OVA: see their ``containers``) is unpacked first.  Every disk is judged
    from its bytes, converted or not (it reaches the store and the next
    reader); formats we convert are also read by ``qemu-img info`` and,
    where qemu implements it, ``qemu-img check``.  The image-property
    checks run in the task only: neither ``inspect`` nor ``convert`` has
    an image.
    """
    first = (checks.CONTAINER,) if any(
        container in (c.containers or ()) for c in CHECKS) else ()
    if not formats.is_convertible(claimed):
        return first + (checks.BYTES,)
    if formats.get(claimed).checkable:
        return first + (checks.BYTES, checks.INFO, checks.CHECK)
    return first + (checks.BYTES, checks.INFO)


def passed_reasons(claimed: str, max_virtual_size: int,
                   container: str | None = None) -> list[str]:
    """What an accepted upload claiming ``claimed`` was found not to do."""
    ran = set(stages_run(claimed, container))
    return [c.passed.format(format=claimed,
                            limit=units.human_size(max_virtual_size))
            for c in CHECKS
            if c.applies_to(claimed, container)
            and ran.intersection(c.stages)]
