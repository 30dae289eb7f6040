"""Configuration options of the ``[glance_convert]`` group.

Every option lives here, with its help text, so that
``oslo-config-generator --namespace glance_convert`` documents them all.
Glance's own settings that the plugin honours (``[image_format]
vmdk_allowed_types``, ``gpt_safety_checks_nonfatal``,
``require_image_format_match``, ``[DEFAULT] image_size_cap``) are read
through
:func:`glance_convert.flow.glance_conf.glance_setting`, so the plugin also
works where Glance's options are not registered (the CLI, unit tests).
"""

from oslo_config import cfg

from glance_convert import formats
from glance_convert import units

GROUP = 'glance_convert'

_format_opts = [
    cfg.StrOpt(
        'output_format',
        default='raw',
        choices=[(f.name, f.description) for f in formats.FORMATS.values()],
        deprecated_opts=[cfg.DeprecatedOpt('output_format',
                                           group='image_conversion')],
        help='Disk format, in Glance\'s names, that imported images are '
             'converted to. "vhd" is what qemu-img calls "vpc". The '
             '[image_conversion] output_format setting of Glance\'s in-tree '
             'plugin is read as a deprecated alias.'),
    cfg.ListOpt(
        'source_formats',
        default=list(formats.CONVERTIBLE),
        item_type=cfg.types.String(choices=formats.CONVERTIBLE),
        help='Claimed disk formats that are converted. An image claiming '
             'any other disk format passes through unconverted, with an '
             'info log line.'),
    cfg.ListOpt(
        'keep_formats',
        default=['iso'],
        help='Disk formats that are always kept as they are, even when '
             'listed in source_formats.'),
    cfg.BoolOpt(
        'record_properties',
        default=True,
        help='Record the original disk format and the conversion time on '
             'converted images as the extra properties '
             '"glance_convert_source_format" and '
             '"glance_convert_duration_s".'),
]

_output_opts = [
    cfg.StrOpt(
        'vmdk_subformat',
        default='monolithicSparse',
        choices=[
            ('monolithicSparse', 'One sparse file, writable in place.'),
            ('streamOptimized', 'Compressed, read sequentially; the '
                                'subformat of VMware OVF/OVA packages.'),
        ],
        help='Subformat of VMDK output. streamOptimized is what VMware '
             'imports; both are in Glance\'s default vmdk_allowed_types.'),
    cfg.StrOpt(
        'vhd_subformat',
        default='dynamic',
        choices=[
            ('dynamic', 'Grows as data is written; smaller files.'),
            ('fixed', 'The whole disk followed by a 512-byte footer; what '
                      'clouds such as Azure require.'),
        ],
        help='Subformat of VHD output.'),
    cfg.BoolOpt(
        'vhd_force_size',
        default=False,
        help='Keep the exact virtual size in VHD output (qemu-img '
             '"force_size") and round it up to a whole MiB, as clouds that '
             'require fixed VHDs expect.'),
    cfg.StrOpt(
        'vhdx_subformat',
        default='dynamic',
        choices=[
            ('dynamic', 'Blocks are allocated as data is written; smaller '
                        'files.'),
            ('fixed', 'Every block allocated up front, as Hyper-V does for '
                      'fixed-size disks.'),
        ],
        help='Subformat of VHDX output. fixed also rewrites uploads that '
             'are already VHDX, since they may be dynamic.'),
    cfg.StrOpt(
        'qcow2_compat',
        default='1.1',
        choices=[
            ('0.10', 'qcow2 version 2, for QEMU older than 1.1.'),
            ('1.1', 'qcow2 version 3 (zstd compression, lazy refcounts).'),
        ],
        help='qcow2 version of qcow2 output.'),
    cfg.IntOpt(
        'qcow2_cluster_size',
        default=65536,
        min=512, max=2 * units.MiB,
        help='Cluster size of qcow2 output, a power of two.'),
    cfg.StrOpt(
        'qcow2_compression',
        default='none',
        choices=[
            ('none', 'Not compressed.'),
            ('zlib', 'Readable by every QEMU; slow to write.'),
            ('zstd', 'Needs qcow2_compat = 1.1 and QEMU 5.1 or later to '
                     'read.'),
        ],
        help='Compress qcow2 output. Compressed output is never written '
             'out of order.'),
    cfg.StrOpt(
        'preallocation',
        default='off',
        choices=[
            ('off', 'No preallocation.'),
            ('metadata', 'qcow2 only: write all metadata up front.'),
            ('falloc', 'Reserve the space with fallocate().'),
            ('full', 'Write zeros over the whole disk.'),
        ],
        help='Preallocation of raw and qcow2 output ("metadata" is qcow2 '
             'only).'),
]

_safety_opts = [
    cfg.StrOpt(
        'signed_images',
        default='refuse',
        choices=('refuse', 'passthrough'),
        help='What to do with an upload that has img_signature properties: '
             'Glance and Nova verify the signature over the stored bytes, '
             'which a conversion changes. "refuse" (the default) fails the '
             'import with a message saying so; "passthrough" stores the '
             'upload unconverted, its signature intact.'),
    cfg.StrOpt(
        'bare_compression',
        default='unpack',
        choices=('unpack', 'refuse'),
        help='What to do with an upload declared container_format=bare '
             'that is a gzip, bzip2, xz, zstd or one-file zip stream '
             '(recognised from its whole stream header, never from a '
             'name or a magic number alone). "unpack" (the default) '
             'treats it as container_format=compressed, with the same '
             'bounds and checks, as Glance\'s own image_decompression '
             'plugin does; "refuse" fails the import with a sentence '
             'that tells the user to set container_format=compressed.'),
    cfg.StrOpt(
        'compressed_images',
        default='unpack',
        choices=('unpack', 'keep'),
        help='What to do with an image whose container_format is '
             'compressed. "unpack" (the default) decompresses it, checks '
             'and converts the disk inside and stores it as bare: Nova '
             'cannot boot a compressed image. "keep" stores it as '
             'uploaded, still compressed, for clouds where Cinder (its '
             'allow_compression_on_image_upload) writes such images and '
             'decompresses them itself; they may reach the plugin through '
             'glance-download.'),
    cfg.IntOpt(
        'max_virtual_size',
        min=0,
        help='Largest virtual size, in bytes, of an image that is '
             'converted. Default: Glance\'s [DEFAULT] image_size_cap.'),
    cfg.IntOpt(
        'inspect_address_space_mb',
        default=1024, min=64,
        help='Address space limit, in MiB, of qemu-img while it inspects '
             'an untrusted image (CVE-2015-5162).'),
    cfg.IntOpt(
        'inspect_cpu_time',
        default=30, min=1,
        help='CPU time limit, in seconds, of qemu-img while it inspects '
             'an untrusted image.'),
    cfg.IntOpt(
        'inspect_timeout',
        default=60, min=1,
        help='Wall-clock limit, in seconds, of one qemu-img inspection; '
             'qemu-img is killed when it is exceeded.'),
    cfg.IntOpt(
        'convert_address_space_mb',
        default=2048, min=128,
        help='Address space limit, in MiB, of qemu-img convert.'),
    cfg.IntOpt(
        'convert_timeout',
        default=3600, min=0,
        help='Wall-clock limit, in seconds, of one conversion; qemu-img is '
             'killed when it is exceeded. 0 means no limit.'),
    cfg.StrOpt(
        'sandbox',
        default='auto',
        choices=[
            ('auto', 'Confine with every layer this host offers; what is '
                     'missing is logged once at start and reported by '
                     'glance-convert check-config.'),
            ('required', 'Refuse every conversion when no_new_privs, '
                         'Landlock or seccomp is missing.'),
            ('off', 'No confinement; for debugging only.'),
        ],
        help='Confinement of every qemu-img the plugin starts (Landlock, '
             'seccomp, no_new_privs): it may read only its own image and '
             'the system files it needs to run, write only its output, '
             'open no socket and signal no other process. This limits '
             'what a qemu-img compromised by a crafted image can reach.'),
]

_workspace_opts = [
    cfg.StrOpt(
        'work_dir',
        help='Directory where converted images are written before Glance '
             'uploads them. Default: the staging directory, where Glance\'s '
             'housekeeper also reaps files of deleted images.'),
    cfg.IntOpt(
        'reserved_space_mb',
        default=1024, min=0,
        help='Free space, in MiB, that conversions must leave in the work '
             'directory.'),
    cfg.IntOpt(
        'max_workspace_bytes',
        default=0, min=0,
        help='Most bytes that all conversions on this host may reserve in '
             'the work directory at once. 0 means only the free space '
             'limits them.'),
    cfg.IntOpt(
        'max_concurrent_conversions',
        default=2, min=0,
        help='Most conversions that run at once on this host, across all '
             'glance-api processes. 0 means no limit.'),
    cfg.IntOpt(
        'task_refresh_interval',
        default=300, min=1, max=3000,
        help='Seconds between two saves of a running import\'s task. Each '
             'save refreshes the task\'s updated_at; Glance lets a new '
             'import take over an import whose task has not been updated '
             'for an hour, so a long conversion, unpacking or wait keeps '
             'its lock this way.'),
    cfg.IntOpt(
        'slot_wait_timeout',
        default=600, min=0, max=3000,
        help='Seconds an import waits for a conversion slot (and for work '
             'space) before it fails. At most 3000: Glance lets a new '
             'import take over an import lock whose task has not been '
             'updated for an hour.'),
    cfg.IntOpt(
        'progress_interval',
        default=5, min=1,
        help='Seconds between progress updates of the task message during '
             'a conversion.'),
]

_tuning_opts = [
    cfg.IntOpt(
        'parallel_workers',
        default=2, min=1, max=8,
        help='qemu-img processes that convert one VMDK (streamOptimized '
             'or monolithicSparse) or one qcow2 with compressed clusters '
             '(distribution cloud images) to raw, each over its own part '
             'of the disk. qemu-img converts these bound by the CPU '
             '(decompression, grain tables), so more processes put more '
             'cores to work. Such a conversion uses this many cores within '
             'its one conversion slot. 1 turns it off.'),
    cfg.IntOpt(
        'convert_coroutines',
        min=1, max=16,
        help='Parallel coroutines of qemu-img convert ("-m"). Unset (the '
             'default): qemu-img\'s own default, except for qcow2 sources '
             'with compressed clusters (distribution cloud images), which '
             'qemu decompresses in a thread pool: they get the most '
             'requests in flight. Set: this value for every source.'),
    cfg.BoolOpt(
        'convert_out_of_order',
        help='Allow out-of-order writes ("-W"). Unset (the default): for '
             'uncompressed qcow2 output, and for raw output of qcow2 '
             'sources with compressed clusters. true: for every output; '
             'false: never. Never used with compressed output, whatever '
             'the setting.'),
    cfg.StrOpt(
        'convert_source_cache',
        choices=('none', 'writeback', 'writethrough', 'directsync',
                 'unsafe'),
        help='qemu-img source cache mode ("-T"). Unset: qemu-img\'s '
             'default (writeback), which reads a just-staged upload from '
             'the page cache; "none" bypasses it.'),
    cfg.StrOpt(
        'convert_target_cache',
        choices=('none', 'writeback', 'writethrough', 'directsync',
                 'unsafe'),
        help='qemu-img target cache mode ("-t"). Unset: qemu-img\'s '
             'default, "unsafe", which never flushes: the work file is '
             'uploaded at once and discarded after a crash.'),
]

_metrics_opts = [
    cfg.StrOpt(
        'metrics_dir',
        help='Directory where every glance-api process of this host keeps '
             'its Prometheus metrics (prometheus_client\'s multi-process '
             'files; a few hundred KiB per process, kept after a process '
             'dies so that its counts survive). Unset (the default): no '
             'metrics are recorded. Must be local to the host and '
             'writable by glance-api; "glance-convert metrics" reads it. '
             'A full disk or an unwritable directory turns metrics off in '
             'that process, with an error in the log, and fails no '
             'import.'),
    cfg.StrOpt(
        'metrics_textfile',
        help='File that the metrics are written to, atomically, after '
             'each import, for node_exporter\'s textfile collector (its '
             '--collector.textfile.directory; the name must end in '
             '".prom"). Unset (the default): not written. Needs '
             'metrics_dir.'),
]

_guest_opts = [
    cfg.BoolOpt(
        'guest_properties',
        default=True,
        help='Set the image properties a converted guest needs to boot '
             'under Nova (hw_firmware_type, hw_machine_type, os_type, '
             'os_distro, os_version and, for Windows guests from another '
             'hypervisor, hw_disk_bus and hw_vif_model), read from the '
             'guest\'s disk and the appliance\'s metadata, plus '
             '"glance_convert_guest" saying what was found and where. '
             'Properties the user set are never changed. Without them '
             'Nova boots every image with BIOS firmware and virtio '
             'devices, so UEFI and Windows guests do not boot.'),
    cfg.BoolOpt(
        'guest_from_disk',
        default=True,
        help='Read the guest\'s own disk (partition table, filesystem '
             'signatures, the EFI system partition and os-release) for '
             'these properties: at most 4 MiB in 512 reads, usually tens '
             'of KiB. The disk wins '
             'over the appliance\'s metadata when they disagree: it is '
             'what boots.'),
    cfg.BoolOpt(
        'guest_from_appliance',
        default=True,
        help='Read the appliance\'s metadata (an OVA\'s OVF, a VMDK '
             'descriptor) for these properties, where the disk does not '
             'answer.'),
    cfg.StrOpt(
        'windows_devices',
        default='boot-safe',
        choices=[
            ('boot-safe', 'hw_disk_bus=sata (ide where the source '
                          'disk was on IDE and the guest boots with BIOS) '
                          'and hw_vif_model=e1000 (e1000e where the '
                          'source had one), which Windows drives without '
                          'added drivers.'),
            ('virtio', 'hw_disk_bus=virtio and hw_vif_model=virtio, '
                       'faster, for images that carry the virtio '
                       'drivers.'),
        ],
        help='Devices of Windows guests that come from another '
             'hypervisor (VMDK, VHD, VHDX, OVA). The plugin cannot '
             'inject drivers: a Windows guest without the virtio drivers '
             'stops at INACCESSIBLE_BOOT_DEVICE on virtio devices.'),
]

ALL_OPTS = (_format_opts + _output_opts + _safety_opts + _workspace_opts
            + _tuning_opts + _metrics_opts + _guest_opts)

CONF = cfg.CONF
CONF.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    """Options for oslo-config-generator."""
    return [(GROUP, ALL_OPTS)]
