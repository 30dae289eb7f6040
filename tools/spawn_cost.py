#!/usr/bin/env python3
"""What one qemu-img start costs the plugin, by how it is started.

Any ``preexec_fn`` makes Python fork() instead of vfork(): the cost then
grows with the memory of the calling process (a glance-api worker holds a
few hundred MiB).  The plugin starts qemu-img from a launcher thread that
confines itself, through ``setpriv`` and ``prlimit``, without a
``preexec_fn``; where it cannot, a forked child sets everything up.  This
prints the median of N starts of ``qemu-img info`` on a small qcow2 for
each way, all measured in interleaved rounds in the same run, without and
with a heap of --heap-mb MiB in this process, and the medians of the
paired differences (which cancel most of a shared host's drift):

* confined against ``sandbox = off`` (the cost of confinement), each
  through the launcher path and through the fork;
* the fork against the launcher path.

The launcher path also pays for its process gate (the seccomp user
notification that lets the launcher start qemu-img and nothing after
it); that part is measured alone too, paired against the same filter
installed without a gate, on ``/bin/true`` started from a fresh thread.

    python tools/spawn_cost.py [--heap-mb 300] [-n 40]
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from glance_convert.pipeline import qemu_img
from glance_convert.pipeline import sandbox


def interleaved(fns, n):
    """{name: [seconds]} of each callable, run in turn n times."""
    for fn in fns.values():
        fn()
    seen = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            seen[name].append(time.perf_counter() - t0)
    return seen


def _ms(values):
    return statistics.median(values) * 1000


def _paired(seen, a, b):
    return _ms([y - x for x, y in zip(seen[a], seen[b])])


def _variant(mode, fork, fn):
    """``fn`` under sandbox ``mode``, its qemu-img forced onto the fork
    path or not (through the same qemu_img.using wrapper either way)."""
    def started(runner):
        def run(args, limits, **options):
            return runner(args, limits, **dict(options, fork=fork))
        return run

    def run():
        sandbox.configure(mode)
        try:
            with qemu_img.using(started):
                fn()
        finally:
            sandbox.configure(sandbox.AUTO)
    return run


def measure(img, n):
    args = ['qemu-img', 'info', '-f', 'qcow2', '--output=json', img]
    limits = qemu_img.Limits(address_space=1 << 30, cpu_time=30, timeout=60)

    def info():
        qemu_img.info(img, 'qcow2', limits)

    fns = {
        'bare vfork': lambda: subprocess.run(args, capture_output=True),
        'bare fork': lambda: subprocess.run(args, capture_output=True,
                                            preexec_fn=os.getpid),
        'off, vfork': _variant(sandbox.OFF, False, info),
        'off, fork': _variant(sandbox.OFF, True, info),
        'confined, launcher': _variant(sandbox.AUTO, False, info),
        'confined, fork': _variant(sandbox.AUTO, True, info),
    }
    seen = interleaved(fns, n)
    confinement = sandbox.prepare(reads=[img])
    path = qemu_img.start_path(confinement)
    confinement.close()
    rows = [
        ('subprocess.run, no preexec_fn (vfork)', _ms(seen['bare vfork'])),
        ('subprocess.run, a preexec_fn (fork)', _ms(seen['bare fork'])),
        ('qemu_img.info, sandbox = off, setpriv+prlimit (vfork)',
         _ms(seen['off, vfork'])),
        ('qemu_img.info, sandbox = off, preexec_fn (fork)',
         _ms(seen['off, fork'])),
        ('qemu_img.info, confined, launcher thread (vfork)',
         _ms(seen['confined, launcher'])),
        ('qemu_img.info, confined, preexec_fn (fork)',
         _ms(seen['confined, fork'])),
        ('  confinement cost, launcher path (paired)',
         _paired(seen, 'off, vfork', 'confined, launcher')),
        ('  confinement cost, fork path (paired)',
         _paired(seen, 'off, fork', 'confined, fork')),
        ('  fork minus launcher, confined (paired)',
         _paired(seen, 'confined, launcher', 'confined, fork')),
        ('  plugin minus bare vfork, confined (paired)',
         _paired(seen, 'bare vfork', 'confined, launcher')),
        ('  of which building the ruleset (parent)',
         _ms(interleaved({'prepare': lambda: sandbox.prepare(
             reads=[img], executable='/usr/bin/qemu-img').close()},
             n * 10)['prepare'])),
    ]
    if sandbox.process_gate_usable():
        gate = interleaved(_gate_variants(), n * 2)
        rows.append(('  of which the process gate, launcher (paired)',
                     _paired(gate, 'no gate', 'gate')))
    return path, rows


def _gate_variants():
    """Start /bin/true from a new thread that installs the launcher's
    filter: with the process gate, and the same filter letting process
    starts through without one."""
    import ctypes
    import platform
    import threading
    table, _why = sandbox.seccomp_table()
    arch, numbers = table
    prog, _threads, _processes = sandbox.build_launcher_program(
        arch, numbers, platform.machine() == 'x86_64')
    ungated = [(c, jt, jf, sandbox._RET_ALLOW
                if c == 0x06 and k == sandbox._RET_USER_NOTIF else k)
               for c, jt, jf, k in prog]
    libc = ctypes.CDLL(None, use_errno=True)

    def compiled(insns):
        filters = (sandbox._SockFilter * len(insns))(
            *[sandbox._SockFilter(*i) for i in insns])
        fprog = sandbox._SockFprog(len(insns), filters)
        return filters, fprog

    programs = {True: compiled(prog), False: compiled(ungated)}

    def start(gated):
        _filters, fprog = programs[gated]
        found = {}
        ready = threading.Event()

        def launcher():
            libc.prctl(38, 1, 0, 0, 0)
            if gated:
                fd = libc.syscall(
                    ctypes.c_long(numbers['seccomp']), ctypes.c_uint(1),
                    ctypes.c_uint(sandbox._SECCOMP_FILTER_FLAG_NEW_LISTENER),
                    ctypes.byref(fprog))
                found['gate'] = sandbox.ProcessGate(int(fd), libc.gettid())
            else:
                libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0)
            ready.set()
            subprocess.run(['/bin/true'])

        thread = threading.Thread(target=launcher)
        thread.start()
        ready.wait()
        if gated:
            found['gate'].admit_one(lambda: not thread.is_alive())
        thread.join()

    return {'gate': lambda: start(True), 'no gate': lambda: start(False)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--heap-mb', type=int, default=300)
    parser.add_argument('-n', type=int, default=40)
    args = parser.parse_args()
    print('confinement layers: %s' % ', '.join(sandbox.applied_layers()))
    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, 'disk.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', img,
                        '1G'], check=True)
        path, rows = measure(img, args.n)
        heap = bytearray(args.heap_mb << 20)
        for i in range(0, len(heap), 4096):  # touch it: resident
            heap[i] = 1
        _path, rows_big = measure(img, args.n)
    print('a confined qemu-img starts here through: %s' % path)
    width = max(len(name) for name, _ in rows) + 2
    print('%-*s %10s %12s' % (width, 'median of %d starts' % args.n,
                              'small', '+%d MiB' % args.heap_mb))
    for (name, small), (_, big) in zip(rows, rows_big):
        print('%-*s %8.2f ms %10.2f ms' % (width, name, small, big))


if __name__ == '__main__':
    main()
