"""The four things the benchmark times, each a function of (src, dst dir).

(a) ``plugin``: glance-convert's whole conversion step, the task's
    ``execute`` (inspection, checks, conversion, output inspection) with a
    fake action wrapper, outside Glance.
(b) ``stock``: Glance's in-tree ``image_conversion`` task, executed with a
    fake action wrapper.
(c) ``copy``: ``cp --sparse=always`` of the equivalent raw image.
(d) ``qemu``: bare ``qemu-img convert`` with the argv the plugin ran,
    captured from the plugin's own warm-up run (so it cannot drift from the
    plugin's code), in the environment the plugin gives it, without its
    resource limits; for pairs the plugin converts with several processes,
    the one-process argv built by the plugin's ``qemu_img.convert_args``.
"""

import os
import subprocess
import sys
import uuid

from glance_convert import formats

#: argv of every process started in this (forked) process.
CAPTURED = []
#: (argv, seconds from Popen() to the end of communicate()/wait()).
TIMINGS = []


def start_capture():
    """Record argv and duration of every subprocess.Popen (forked child)."""
    import time
    original_init = subprocess.Popen.__init__
    original_communicate = subprocess.Popen.communicate
    original_wait = subprocess.Popen.wait

    def init(self, args, *a, **kw):
        argv = ([os.fsdecode(x) for x in args]
                if not isinstance(args, (str, bytes)) else [args])
        CAPTURED.append(argv)
        self._bench = (argv, time.perf_counter())
        original_init(self, args, *a, **kw)

    def done(self):
        info = getattr(self, '_bench', None)
        if info:
            TIMINGS.append((info[0], time.perf_counter() - info[1]))
            self._bench = None

    def communicate(self, *a, **kw):
        # The plugin waits in steps (communicate with a timeout): only
        # the call that returns ends the run.
        result = original_communicate(self, *a, **kw)
        done(self)
        return result

    def wait(self, *a, **kw):
        try:
            return original_wait(self, *a, **kw)
        finally:
            if self.returncode is not None:
                done(self)
    subprocess.Popen.__init__ = init
    subprocess.Popen.communicate = communicate
    subprocess.Popen.wait = wait


def timing_breakdown():
    """[(short command, seconds)] of the captured subprocesses."""
    out = []
    for argv, secs in TIMINGS:
        try:
            i = [os.path.basename(a) for a in argv].index('qemu-img')
            name = 'qemu-img ' + argv[i + 1]
        except (ValueError, IndexError):
            name = os.path.basename(argv[0])
        if any('oslo_concurrency.prlimit' in a for a in argv):
            name += ' (prlimit)'
        out.append((name, secs))
    return out


def qemu_convert_argv(captured):
    """The last ``qemu-img convert`` argv in ``captured``, unwrapped."""
    for argv in reversed(captured):
        for i, arg in enumerate(argv):
            if os.path.basename(arg) == 'qemu-img' and \
                    argv[i + 1:i + 2] == ['convert']:
                return argv[i:]
    return None


def fresh_link(src, run_dir):
    """A new name for ``src`` (hard link: same inode, same page cache).

    Both Glance's task and (maybe) the plugin consume their source; a link
    costs nothing and keeps the cached image intact.
    """
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, str(uuid.uuid4()))
    try:
        os.link(src, path)
    except OSError:
        subprocess.run(['cp', '--reflink=auto', '--sparse=always', src, path],
                       check=True)
    return path


# ---------------------------------------------------------------- (a) plugin

def plugin_real(src, claimed, target, work_dir, image_id,
                container_format='bare'):
    """The plugin's task ``execute``, as Glance's flow calls it.

    Everything but Glance: the settings and the workspace (slots and
    space reservations) come from the [glance_convert] options
    (output_format set to ``target``, work_dir to ``work_dir``) as in
    glance-api, progress goes to a silent status.  The task consumes
    ``src``.
    """
    from oslo_config import cfg
    from glance_convert import options
    from glance_convert.flow import task as tasks
    cfg.CONF.set_override('output_format', target, group=options.GROUP)
    cfg.CONF.set_override('work_dir', work_dir, group=options.GROUP)
    task = tasks.ConvertImage(
        'bench', 'import',
        _FakeActionWrapper(image_id, claimed, container_format), [],
        status=tasks.SilentStatus())
    return task.execute('file://' + src).split('file://')[-1]


# ----------------------------------------------------------------- (b) stock

class _FakeAction:
    """What Glance's ImportActionWrapper yields, minus the database."""

    def __init__(self, disk_format, container_format='bare'):
        self.image_disk_format = disk_format
        self.image_container_format = container_format
        self.image_extra_properties = {}
        self.attributes = {}
        self.properties = {}

    def set_image_extra_properties(self, properties):
        self.properties.update(properties)

    def set_image_attribute(self, **kwargs):
        self.attributes.update(kwargs)

    def remove_importing_stores(self, stores):
        pass

    def add_failed_stores(self, stores):
        pass


class _FakeActionWrapper:
    def __init__(self, image_id, disk_format, container_format='bare'):
        self.image_id = image_id
        self.action = _FakeAction(disk_format, container_format)

    def __enter__(self):
        return self.action

    def __exit__(self, *exc):
        return False


STOCK_TARGETS = ('raw', 'qcow2', 'vmdk')


def plugin_setup():
    """Load the plugin's modules and options (parent, once).

    Glance loads a plugin once per process (stevedore), not per import; a
    forked run that imported them itself would pay 10-15 ms of imports
    that no import in Glance pays.  Settings are still read per run, as
    the task does.
    """
    from oslo_config import cfg
    from glance_convert.flow import settings as settings_mod
    from glance_convert.pipeline import parallel  # noqa: F401
    from glance_convert.flow import task as tasks  # noqa: F401
    from glance_convert.host import workspace  # noqa: F401
    settings_mod.from_conf(cfg.CONF)


def stock_setup():
    """Register the Glance options the stock task reads (parent, once)."""
    from glance.common import config  # noqa: F401  image_format, wsgi
    from glance.async_.flows.plugins import image_conversion  # noqa: F401
    from oslo_config import cfg
    cfg.CONF.set_override('python_interpreter', sys.executable,
                          group='wsgi')


def stock(src, claimed, target):
    """Run Glance's task; it converts next to ``src`` and deletes ``src``."""
    from oslo_config import cfg
    from glance.async_.flows.plugins import image_conversion
    cfg.CONF.set_override('output_format', target, group='image_conversion')
    image_id = os.path.basename(src)
    task = image_conversion._ConvertImage(
        None, 'bench', 'import', _FakeActionWrapper(image_id, claimed), [])
    result = task.execute('file://' + src)
    return result.split('file://')[-1]


# ------------------------------------------------------------ (c), (d)

def copy(raw, dst):
    subprocess.run(['cp', '--sparse=always', raw, dst], check=True)
    return dst


def qemu_env():
    """The environment the plugin gives qemu-img (LC_ALL, MALLOC_ARENA_MAX).

    Part of how the plugin runs qemu-img, so (d) gets it too: with glibc's
    default arenas, a cold-cache conversion took up to 1.4x as long here,
    which would flatter the plugin in a/d.
    """
    env = dict(os.environ)
    try:
        from glance_convert.pipeline import qemu_img
        env.update(getattr(qemu_img, '_ENV', {}))
    except ImportError:
        pass
    return env


def bare_qemu(argv_template, src, dst):
    """Run a captured argv with the placeholders {SRC} and {DST} filled."""
    argv = [a.replace('{SRC}', src).replace('{DST}', dst)
            for a in argv_template]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   env=qemu_env())
    return dst


def template_from(argv):
    """A captured ``qemu-img convert`` argv with {SRC}/{DST} for its two
    positional file names (always the last two arguments)."""
    return list(argv[:-2]) + ['{SRC}', '{DST}']


def is_parallel_argv(argv):
    """True for one range of pipeline.parallel (not a whole image)."""
    return bool(argv) and '--target-image-opts' in argv


def single_convert_template(claimed, target, src):
    """The one-process ``qemu-img convert`` argv the plugin would run.

    Built by the plugin's own code (``qemu_img.convert_args`` with the
    settings of the [glance_convert] options and the tuning it chooses for
    this source), for the pairs where the plugin runs several qemu-img
    over ranges instead: (d) stays "one bare qemu-img with the same
    options".
    """
    from oslo_config import cfg
    from glance_convert.pipeline import conversion
    from glance_convert import options
    from glance_convert.flow import settings as settings_mod
    from glance_convert.pipeline import qemu_img
    cfg.CONF.set_override('output_format', target, group=options.GROUP)
    settings = settings_mod.from_conf()
    facts, _info = conversion.inspect_source(src, claimed, settings)
    tuning = getattr(conversion, 'source_tuning', None)
    args = qemu_img.convert_args(
        '{SRC}', formats.qemu_driver(claimed), '{DST}',
        formats.qemu_driver(target), out_options=settings.out_options,
        tuning=(tuning(claimed, facts, settings) if tuning
                else settings.tuning),
        compressed=settings.compressed)
    return ['qemu-img'] + args


def parallel_step(src, claimed, target, work_dir, image_id, workers):
    """The plugin's step with the conversion done by pipeline.parallel:
    the same source checks, N qemu-img processes over disjoint ranges, the
    same output verification."""
    import dataclasses
    from oslo_config import cfg
    from glance_convert.pipeline import conversion
    from glance_convert.pipeline import inspection
    from glance_convert import options
    from glance_convert.flow import settings as settings_mod
    from glance_convert.pipeline import parallel
    from glance_convert.pipeline import qemu_img
    if target != 'raw':
        raise ValueError('the parallel prototype writes raw only')
    cfg.CONF.set_override('output_format', target, group=options.GROUP)
    settings = settings_mod.from_conf()
    facts, info = conversion.inspect_source(src, claimed, settings)
    virtual_size = int(info.get('virtual-size') or facts.virtual_size)
    dst = os.path.join(work_dir, '%s.parallel.raw' % image_id)
    limits = dataclasses.replace(settings.convert_limits,
                                 file_size=virtual_size + 64 * 1024 * 1024)
    parallel.convert_to_raw(src, formats.qemu_driver(claimed), dst,
                            virtual_size, workers=workers,
                            tuning=settings.tuning, limits=limits)
    inspection.verify_output(dst, target)
    out_info = qemu_img.info(dst, 'raw', settings.inspect_limits)
    if int(out_info['virtual-size']) < virtual_size:
        raise RuntimeError('parallel output is too short')
    return dst
