"""What the pipeline reads from the configuration, as one frozen value.

Built by :func:`glance_convert.flow.settings.from_conf` (which validates the
options and reads Glance's settings) or directly by the tests and tools;
the pipeline itself never reads the configuration.
"""

from __future__ import annotations

import dataclasses

from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs from the configuration."""

    target: str
    source_formats: tuple[str, ...]
    keep_formats: tuple[str, ...]
    policy: inspection.Policy
    inspect_limits: qemu_img.Limits
    convert_limits: qemu_img.Limits
    tuning: qemu_img.Tuning
    out_options: dict
    compressed: bool
    progress_interval: float
    parallel_workers: int = 1
    #: Tuning options the operator set; the others are chosen per source
    #: (``conversion.source_tuning``).
    tuning_set: frozenset = frozenset()
    signed_images: str = 'refuse'
    compressed_images: str = 'unpack'
    bare_compression: str = 'unpack'
    #: What decides how the guest boots (:mod:`.describe`): on or off,
    #: read from the disk and from the appliance, and the devices of
    #: Windows guests from another hypervisor.
    guest_properties: bool = True
    guest_from_disk: bool = True
    guest_from_appliance: bool = True
    windows_devices: str = 'boot-safe'
