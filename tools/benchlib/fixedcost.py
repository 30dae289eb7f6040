"""Where the plugin's fixed cost per import goes.

The fixed cost is what the plugin's whole step takes beyond one bare
``qemu-img convert`` of the same image: on a small image (64 MiB) it is
nearly all of the difference.  To say where it goes, the plugin's run is
timed phase by phase in the forked child: the functions of the pipeline
that make up a step are wrapped with timers (checks of the bytes, ``qemu-img
info`` and ``check``, the workspace ledger, the conversion, the output's
verification) and so is every process start.  The wrappers cost a few
microseconds per call.
"""

import functools
import time

#: (module, attribute, label) of what is timed, in pipeline order.
PHASES = (
    ('glance_convert.flow.settings', 'from_conf',
     'settings from the configuration'),
    ('glance_convert.flow.settings', 'host_workspace', 'workspace setup'),
    ('glance_convert.pipeline.inspection', 'inspect_bytes',
     'source bytes inspection'),
    ('glance_convert.pipeline.conversion', 'inspect_source',
     'source checks (bytes, qemu-img info || check)'),
    ('glance_convert.pipeline.qemu_img', 'info', '  qemu-img info'),
    ('glance_convert.pipeline.qemu_img', 'check', '  qemu-img check'),
    ('glance_convert.host.workspace', 'Workspace.slot', 'slot'),
    ('glance_convert.pipeline.conversion', '_reserve',
     'space reservation (ledger)'),
    ('glance_convert.host.ledger', 'Ledger.update_entry',
     'ledger: record qemu-img pid'),
    ('glance_convert.host.workspace', 'Workspace._release',
     'ledger: release'),
    ('glance_convert.host.ledger', 'Ledger._write',
     'ledger writes (in the above)'),
    ('glance_convert.pipeline.qemu_img', 'convert', 'qemu-img convert'),
    ('glance_convert.pipeline.parallel', 'convert_to_raw',
     'qemu-img convert over ranges'),
    ('glance_convert.pipeline.conversion', '_verify_output',
     'output verification'),
    ('glance_convert.pipeline.conversion', 'convert_image',
     'convert_image (all of it)'),
)

TIMES = {}


def _wrap(owner, name, label):
    original = getattr(owner, name)
    if isinstance(original, classmethod) or getattr(original, '__self__',
                                                    None) is owner:
        func = original.__func__

        @functools.wraps(func)
        def timed_cls(cls, *a, **kw):
            t0 = time.perf_counter()
            try:
                return func(cls, *a, **kw)
            finally:
                TIMES.setdefault(label, []).append(time.perf_counter() - t0)
        setattr(owner, name, classmethod(timed_cls))
        return

    @functools.wraps(original)
    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            TIMES.setdefault(label, []).append(time.perf_counter() - t0)
    setattr(owner, name, timed)


def start():
    """Wrap the phases with timers (call in the forked child)."""
    import importlib
    TIMES.clear()
    for module, attr, label in PHASES:
        try:
            owner = importlib.import_module(module)
        except ImportError:
            continue
        *path, name = attr.split('.')
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, name):
            continue   # the pipeline moved on; the phase is not timed
        _wrap(owner, name, label)


def collected():
    """{label: [total seconds, calls]} of this run."""
    return {label: [sum(ts), len(ts)] for label, ts in TIMES.items()}
