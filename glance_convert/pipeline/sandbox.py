"""Confinement of every qemu-img the plugin starts.

qemu-img parses bytes an attacker chose, and its block drivers have had
memory-safety bugs; a compromised qemu-img must find nothing to steal and
no way out.  Three kernel features any unprivileged user has, prepared
here before qemu-img starts: ``no_new_privs``; Landlock (read only the
image and the system directories, write only its own output); and a
seccomp program built here (no sockets, no other process, no new
process, no namespaces, io_uring, mount or ownership changes).  A
launcher thread applies them to itself before it starts qemu-img, or a
forked child does between fork and exec (:class:`Confinement`).  What
each layer stops, what stays open and why ctypes rather than a library:
the security documentation's confinement page.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import logging as std_logging
import os
import platform
import select
import shutil
import stat
import struct
import subprocess
import sys
import threading
from typing import Callable

from oslo_log import log as logging

from glance_convert import errors

LOG = logging.getLogger(__name__)

AUTO, REQUIRED, OFF = 'auto', 'required', 'off'
MODES = (AUTO, REQUIRED, OFF)

# Layer names, as check-config and inspect report them.
NO_NEW_PRIVS = 'no_new_privs'
LANDLOCK_FS = 'landlock-fs'
LANDLOCK_NET = 'landlock-net'
LANDLOCK_SCOPE = 'landlock-scope'
SECCOMP = 'seccomp'
ONE_PROCESS = 'one-process'
MINIMAL_ENV = 'minimal-environment'
#: Without these qemu-img is not confined as documented; ``required``
#: refuses to run without them.  The other layers are second lines.
ESSENTIAL = (NO_NEW_PRIVS, LANDLOCK_FS, SECCOMP, ONE_PROCESS, MINIMAL_ENV)

#: The whole environment of a confined qemu-img, besides what the caller
#: adds (``LC_ALL``...): glance-api's may hold credentials (OS_PASSWORD, a
#: database URL, a proxy with a password).  qemu-img is started by its
#: full path; this PATH only serves a program that execs another.
CHILD_PATH = '/usr/bin:/bin'

# --- Landlock (include/uapi/linux/landlock.h) --------------------------------
_SYS_LANDLOCK_CREATE_RULESET = 444   # the same number on every architecture
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
_FS_ABI1_ALL = (1 << 13) - 1         # execute ... make_sym
FS_REFER = 1 << 13                   # ABI 2
FS_TRUNCATE = 1 << 14                # ABI 3
FS_IOCTL_DEV = 1 << 15               # ABI 5
_FILE_ONLY = (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE
              | FS_IOCTL_DEV)
NET_BIND_TCP = 1 << 0                # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

#: What a program needs to run: read and execute, never write.
SYSTEM_DIRS = ('/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64',
               '/libx32')
SYSTEM_FILES = ('/etc/ld.so.cache',)
#: Devices qemu-img (and a shell) open: read, and /dev/null also write.
READ_DEVICES = ('/dev/urandom', '/dev/random', '/dev/zero')
RW_DEVICES = ('/dev/null',)


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [('allowed_access', ctypes.c_uint64),
                ('parent_fd', ctypes.c_int32)]


# --- seccomp ----------------------------------------------------------------
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_SECCOMP = 21
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
# seccomp(2) and user notification (include/uapi/linux/seccomp.h)
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_GET_NOTIF_SIZES = 3
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_NOTIF_RECV = 0xC0502100        # _IOWR('!', 0, struct seccomp_notif)
_NOTIF_SEND = 0xC0182101        # _IOWR('!', 1, struct seccomp_notif_resp)
_NOTIF_SIZE = 80                # id, pid, flags, struct seccomp_data
_USER_NOTIF_FLAG_CONTINUE = 1
_RET_ALLOW = 0x7fff0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_RET_USER_NOTIF = 0x7fc00000
# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
# struct seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8 i (the low
# 32 bits first: both supported architectures are little-endian).
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16
_X32_SYSCALL_BIT = 0x40000000
# Namespace flags of clone(); CLONE_NEWTIME exists only for clone3/unshare.
_CLONE_NEW_ANY = 0x7E020000

#: Syscall numbers per machine: (audit arch, {name: number}).
_TABLES = {
    'x86_64': (0xC000003E, dict(
        socket=41, connect=42, bind=49, ptrace=101, process_vm_readv=310,
        process_vm_writev=311, kcmp=312, pidfd_open=434, pidfd_getfd=438,
        pidfd_send_signal=424, perf_event_open=298, bpf=321,
        userfaultfd=323, keyctl=250, add_key=248, request_key=249,
        io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
        unshare=272, setns=308, mount=165, umount2=166, pivot_root=155,
        chroot=161, open_tree=428, move_mount=429, fsopen=430, fsconfig=431,
        fsmount=432, fspick=433, mount_setattr=442, truncate=76,
        open_by_handle_at=304, name_to_handle_at=303, chmod=90, fchmod=91,
        fchmodat=268, fchmodat2=452, chown=92, fchown=93, lchown=94,
        fchownat=260, setxattr=188, lsetxattr=189, fsetxattr=190,
        removexattr=197, lremovexattr=198, fremovexattr=199,
        kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129,
        rt_tgsigqueueinfo=297, clone=56, clone3=435, fcntl=72, ioctl=16,
        fork=57, vfork=58, seccomp=317, prlimit64=302, setpriority=141,
        sched_setaffinity=203, sched_setscheduler=144, sched_setparam=142,
        sched_setattr=314, ioprio_set=251, migrate_pages=256,
        move_pages=279, process_madvise=440, process_mrelease=448)),
    'aarch64': (0xC00000B7, dict(
        socket=198, connect=203, bind=200, ptrace=117, process_vm_readv=270,
        process_vm_writev=271, kcmp=272, pidfd_open=434, pidfd_getfd=438,
        pidfd_send_signal=424, perf_event_open=241, bpf=280,
        userfaultfd=282, keyctl=219, add_key=217, request_key=218,
        io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
        unshare=97, setns=268, mount=40, umount2=39, pivot_root=41,
        chroot=51, open_tree=428, move_mount=429, fsopen=430, fsconfig=431,
        fsmount=432, fspick=433, mount_setattr=442, truncate=45,
        open_by_handle_at=265, name_to_handle_at=264, fchmod=52,
        fchmodat=53, fchmodat2=452, fchown=55, fchownat=54, setxattr=5,
        lsetxattr=6, fsetxattr=7, removexattr=14, lremovexattr=15,
        fremovexattr=16, kill=129, tkill=130, tgkill=131,
        rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, clone=220,
        clone3=435, fcntl=25, ioctl=29, seccomp=277, prlimit64=261,
        setpriority=140, sched_setaffinity=122, sched_setscheduler=119,
        sched_setparam=118, sched_setattr=274, ioprio_set=30,
        migrate_pages=238, move_pages=239, process_madvise=440,
        process_mrelease=448)),
}
#: Denied outright (EPERM).
_DENIED = (
    'socket', 'connect', 'bind', 'ptrace', 'process_vm_readv',
    'process_vm_writev', 'kcmp', 'pidfd_open', 'pidfd_getfd',
    'pidfd_send_signal', 'perf_event_open', 'bpf', 'userfaultfd', 'keyctl',
    'add_key', 'request_key', 'io_uring_setup', 'io_uring_enter',
    'io_uring_register', 'unshare', 'setns', 'mount', 'umount2',
    'pivot_root', 'chroot', 'open_tree', 'move_mount', 'fsopen',
    'fsconfig', 'fsmount', 'fspick', 'mount_setattr', 'truncate',
    'open_by_handle_at', 'name_to_handle_at', 'chmod', 'fchmod',
    'fchmodat', 'fchmodat2', 'chown', 'fchown', 'lchown', 'fchownat',
    'setxattr', 'lsetxattr', 'fsetxattr', 'removexattr', 'lremovexattr',
    'fremovexattr', 'process_madvise', 'process_mrelease')
#: Allowed only on the caller itself: (argument, value) pairs that must
#: all hold.  pid 0 is the calling thread; qemu-img (and setpriv, prlimit)
#: use these only so (``prlimit64(0, RLIMIT_STACK...)``, traced), while
#: another pid would let it cripple a glance-api worker of the same user:
#: lower its file limit, renice it, pin it to one CPU, make it SCHED_IDLE,
#: starve its I/O, move its memory.
_OWN_ONLY = {
    'prlimit64': ((0, 0),),
    'setpriority': ((0, 0), (1, 0)),        # PRIO_PROCESS, who = 0
    'sched_setaffinity': ((0, 0),),
    'sched_setscheduler': ((0, 0),),
    'sched_setparam': ((0, 0),),
    'sched_setattr': ((0, 0),),
    'ioprio_set': ((0, 1), (1, 0)),         # IOPRIO_WHO_PROCESS, who = 0
    'migrate_pages': ((0, 0),),
    'move_pages': ((0, 0),),
}
#: System calls that start a process (clone without CLONE_THREAD too):
#: qemu-img starts threads, never a process, so a confined qemu-img is
#: one process, and nothing it starts can outlive it.
_NEW_PROCESS = ('fork', 'vfork')
_CLONE_THREAD = 0x00010000
#: Allowed only when the first argument is the process's own pid (a child
#: started by fork), or is not the pid of glance-api nor the tid of the
#: thread that started it (started by a launcher thread, see
#: :meth:`Confinement.restrict_thread`).
_SELF_ONLY = ('kill', 'tkill', 'tgkill', 'rt_sigqueueinfo',
              'rt_tgsigqueueinfo')
#: Commands refused to fcntl and ioctl: naming the owner of a file makes
#: the kernel signal it on I/O (O_ASYNC, SIGIO or any F_SETSIG signal),
#: a way to signal a chosen process that no kill() rule sees.
_F_SETOWN, _F_SETOWN_EX = 8, 15
_FIOSETOWN, _SIOCSPGRP = 0x8901, 0x8902
_OFF_ARG1 = _OFF_ARG0 + 8


class _SockFilter(ctypes.Structure):
    _fields_ = [('code', ctypes.c_uint16), ('jt', ctypes.c_uint8),
                ('jf', ctypes.c_uint8), ('k', ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort),
                ('filter', ctypes.POINTER(_SockFilter))]


try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _LIBC.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                            ctypes.c_ulong, ctypes.c_ulong]
    _LIBC.syscall.restype = ctypes.c_long
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _LIBC = None


class ConfinementUnavailable(errors.ConversionError):
    """``sandbox = required`` and this host cannot confine qemu-img."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """One confinement layer and whether this host provides it."""

    name: str
    available: bool
    stops: str        # what it stops
    detail: str       # what was found
    fix: str = ''     # how to get it, when missing

    @property
    def essential(self) -> bool:
        return self.name in ESSENTIAL


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def landlock_abi() -> tuple[int, str]:
    """(Landlock ABI version, or 0 with the reason it is unavailable)."""
    if _LIBC is None:
        return 0, 'not Linux'
    abi = _LIBC.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), None,
                        ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if abi >= 1:
        return int(abi), 'ABI %d' % abi
    code = ctypes.get_errno()
    if code == errno.EOPNOTSUPP:
        return 0, 'built into the kernel but not enabled at boot'
    if code == errno.ENOSYS:
        return 0, ('the kernel has no Landlock (older than 5.13 or built '
                   'without it), or a seccomp profile of the container '
                   'refuses its system calls')
    return 0, 'landlock_create_ruleset failed: %s' % _errno_name(code)


def seccomp_table() -> tuple[tuple | None, str]:
    """(audit arch and syscall table, or None with the reason)."""
    if _LIBC is None:
        return None, 'not Linux'
    machine = platform.machine()
    table = _TABLES.get(machine)
    if table is None:
        return None, 'no syscall table for the %s architecture' % machine
    if _LIBC.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        return None, ('the kernel has no seccomp (%s)'
                      % _errno_name(ctypes.get_errno()))
    return table, 'filter for %s' % machine


_PROBE_LOCK = threading.Lock()
_PROBED: list[Layer] | None = None


def layers() -> list[Layer]:
    """The confinement layers and whether this host provides each one."""
    global _PROBED
    with _PROBE_LOCK:
        if _PROBED is None:
            _PROBED = _probe()
        return list(_PROBED)


def probe_again() -> None:
    """Forget what was found and logged about this host.

    The probes (:func:`landlock_abi`, :func:`seccomp_table`,
    :func:`process_gate_usable`) run once per process, and what they find
    is logged once per mode.  A test that simulates another host replaces
    a probe, calls this, and calls it again once the probe is back.
    """
    global _PROBED
    with _PROBE_LOCK:
        _PROBED = None
        _LOGGED.clear()
        _GATE_USABLE.clear()
        _PROGRAMS.clear()


def _probe() -> list[Layer]:
    abi, why = landlock_abi()
    table, seccomp_why = seccomp_table()
    kernel = platform.release()
    seccomp_fix = ('run on x86_64 or aarch64 with a kernel built with '
                   'CONFIG_SECCOMP_FILTER; in a container, allow prctl and '
                   'seccomp in its seccomp profile')
    newer = ('a kernel with a higher Landlock ABI (this one, %s, has %s)'
             % (kernel, why))
    not_enabled = abi == 0 and 'not enabled' in why
    landlock_fix = (
        'add "landlock" to the kernel\'s lsm= boot parameter (see '
        '/sys/kernel/security/lsm)' if not_enabled else
        'run a kernel with Landlock (5.13 or later; Debian 12, Ubuntu '
        '22.04/24.04 and RHEL 9 kernels have it) and, in a container, '
        'allow the landlock_* system calls in its seccomp profile')
    return [
        Layer(NO_NEW_PRIVS, _LIBC is not None,
              'privileges gained through exec (setuid, file capabilities)',
              'prctl(PR_SET_NO_NEW_PRIVS)' if _LIBC else 'not Linux',
              'run on Linux'),
        Layer(LANDLOCK_FS, abi >= 1,
              'reading any file but its image and system files, writing '
              'any file but its output, listing directories, reading /proc '
              'of other processes; ptrace of other processes',
              why, landlock_fix),
        Layer(LANDLOCK_NET, abi >= 4,
              'TCP bind and connect (second layer behind seccomp)',
              why, 'seccomp already refuses every socket; %s would add '
              'this layer (Landlock ABI 4, Linux 6.7)' % newer),
        Layer(LANDLOCK_SCOPE, abi >= 6,
              'signals to and abstract unix sockets of other processes '
              '(second layer behind seccomp)',
              why, 'seccomp already refuses both; %s would add this layer '
              '(Landlock ABI 6, Linux 6.12)' % newer),
        Layer(SECCOMP, table is not None,
              'sockets of every family, ptrace, signals to other processes, '
              'changing the limits, priority, CPU affinity, scheduling or '
              'I/O priority of other processes, kcmp, '
              'namespaces, io_uring, keyrings, mounts, open_by_handle_at, '
              'chmod/chown/xattr changes, truncate by path',
              seccomp_why, seccomp_fix),
        Layer(ONE_PROCESS, table is not None,
              'starting processes (fork, vfork, clone; threads pass): nothing '
              'qemu-img starts can outlive it, write its output after the '
              'check or fork-bomb the glance user',
              'seccomp filter' if table is not None else seccomp_why,
              seccomp_fix),
        Layer(MINIMAL_ENV, _LIBC is not None,
              "reading glance-api's environment (credentials, tokens)",
              'PATH=%s, LC_ALL=C' % CHILD_PATH, 'run on Linux'),
    ]


# --- mode -------------------------------------------------------------------

_MODE = AUTO
_LOGGED: set = set()


def configure(mode: str) -> None:
    """Set the mode (the ``sandbox`` option) and log once what is missing."""
    global _MODE
    if mode not in MODES:
        raise ValueError('sandbox must be one of %s, not %r'
                         % (', '.join(MODES), mode))
    _MODE = mode
    if mode in _LOGGED:
        return
    _LOGGED.add(mode)
    if mode == OFF:
        LOG.warning('[glance_convert] sandbox = off: qemu-img runs '
                    'unconfined, with every right of this process.')
        return
    found = layers()
    missing = [layer for layer in found if not layer.available]
    for layer in missing:
        level = std_logging.WARNING if layer.essential else std_logging.INFO
        LOG.log(level, 'qemu-img confinement: %s is not available (%s); '
                'it stops %s. To get it: %s.', layer.name, layer.detail,
                layer.stops, layer.fix)
    if not missing:
        LOG.info('qemu-img confinement: %s',
                 ', '.join(layer.name for layer in found))


def mode() -> str:
    return _MODE


def applied_layers() -> list[str]:
    """The layers each qemu-img run gets now (empty when off)."""
    if _MODE == OFF:
        return []
    return [layer.name for layer in layers() if layer.available]


def missing_essential() -> list[Layer]:
    return [layer for layer in layers()
            if layer.essential and not layer.available]


# --- the seccomp program ----------------------------------------------------

def _insn(code, k, jt=0, jf=0):
    return (code, jt, jf, k)


def _head(arch: int, table: dict, x32_check: bool) -> list[tuple]:
    """The checks common to both programs: ABI, denied calls, file owners.
    """
    prog = [_insn(_LD_W_ABS, _OFF_ARCH),
            _insn(_JEQ_K, arch, 1, 0),
            _insn(_RET_K, _RET_KILL_PROCESS),   # another ABI (int 0x80...)
            _insn(_LD_W_ABS, _OFF_NR)]
    deny = _RET_ERRNO | errno.EPERM
    if x32_check:
        prog += [_insn(_JGE_K, _X32_SYSCALL_BIT, 0, 1),
                 _insn(_RET_K, deny)]
    for name in _DENIED:
        if name in table:
            prog += [_insn(_JEQ_K, table[name], 0, 1), _insn(_RET_K, deny)]
    for name, commands in (('fcntl', (_F_SETOWN, _F_SETOWN_EX)),
                           ('ioctl', (_FIOSETOWN, _SIOCSPGRP))):
        prog += [_insn(_JEQ_K, table[name], 0, 5),
                 _insn(_LD_W_ABS, _OFF_ARG1),
                 _insn(_JEQ_K, commands[0], 2, 0),
                 _insn(_JEQ_K, commands[1], 1, 0),
                 _insn(_RET_K, _RET_ALLOW),
                 _insn(_RET_K, deny)]
    for name, conditions in _OWN_ONLY.items():
        prog += _own_only(table[name], conditions, deny)
    return prog


def _own_only(nr: int, conditions, deny: int) -> list[tuple]:
    """Allow ``nr`` only when every (argument, value) pair holds.

    Only the low 32 bits are compared: the kernel reads these arguments
    (pid, which, who) as ``int``.
    """
    body = []
    last = 2 * len(conditions) + 1       # index of the refusal in body
    for arg, value in conditions:
        body.append(_insn(_LD_W_ABS, _OFF_ARG0 + 8 * arg))
        body.append(_insn(_JEQ_K, value, 0, last - len(body) - 1))
    body += [_insn(_RET_K, _RET_ALLOW), _insn(_RET_K, deny)]
    return [_insn(_JEQ_K, nr, 0, len(body))] + body


def _tail(table: dict, new_process: int) -> list[tuple]:
    """Process creation: ``new_process`` answers fork, vfork and clone
    without CLONE_THREAD; threads pass.

    clone with a namespace flag: refused; clone3 (flags in memory that
    BPF cannot read): ENOSYS, so the C library falls back to clone.
    """
    deny = _RET_ERRNO | errno.EPERM
    prog = []
    for name in _NEW_PROCESS:
        if name in table:   # aarch64 has clone only
            prog += [_insn(_JEQ_K, table[name], 0, 1),
                     _insn(_RET_K, new_process)]
    return prog + [
        _insn(_JEQ_K, table['clone3'], 0, 1),
        _insn(_RET_K, _RET_ERRNO | errno.ENOSYS),
        _insn(_JEQ_K, table['clone'], 0, 5),
        _insn(_LD_W_ABS, _OFF_ARG0),
        _insn(_JSET_K, _CLONE_NEW_ANY, 2, 0),
        _insn(_JSET_K, _CLONE_THREAD, 2, 0),
        _insn(_RET_K, new_process),
        _insn(_RET_K, deny),
        _insn(_RET_K, _RET_ALLOW)]     # a thread, and the rest


def build_program(arch: int, table: dict, x32_check: bool
                  ) -> tuple[list[tuple], list[int]]:
    """The filter of a forked child as (code, jt, jf, k), and the pid slots.

    The pid slots hold 0 until the child writes its own pid there (the
    only thing the child computes): signals and sigqueue calls are allowed
    to that pid alone.
    """
    prog = _head(arch, table, x32_check)
    deny = _RET_ERRNO | errno.EPERM
    pid_slots = []
    for name in _SELF_ONLY:
        prog += [_insn(_JEQ_K, table[name], 0, 4),
                 _insn(_LD_W_ABS, _OFF_ARG0)]
        pid_slots.append(len(prog))
        prog += [_insn(_JEQ_K, 0, 1, 0),
                 _insn(_RET_K, deny),
                 _insn(_RET_K, _RET_ALLOW)]
    return prog + _tail(table, deny), pid_slots


def build_launcher_program(arch: int, table: dict, x32_check: bool
                           ) -> tuple[list[tuple], list[int], list[int]]:
    """The filter a launcher thread applies to itself, and its slots.

    Its child's pid is not known in advance, so signals are left to
    Landlock's scoping (ABI 6), which refuses every target outside the
    domain, except one: the launcher thread, which is inside it, and a
    signal to a thread of glance-api acts on the whole process.  So
    signals naming the launcher's tid (``thread_slots``) or glance-api's
    pid (``process_slots``) are refused here.

    Starting a process is not refused but handed to a supervisor (user
    notification): the launcher's own start of qemu-img must pass, and a
    filter cannot tell it from qemu-img's.  The supervisor lets exactly
    that one through and closes the notification descriptor, after which
    the kernel answers every further attempt with ENOSYS
    (:class:`ProcessGate`).
    """
    prog = _head(arch, table, x32_check)
    deny = _RET_ERRNO | errno.EPERM
    thread_slots, process_slots = [], []
    for name in _SELF_ONLY:
        prog += [_insn(_JEQ_K, table[name], 0, 5),
                 _insn(_LD_W_ABS, _OFF_ARG0)]
        thread_slots.append(len(prog))
        prog.append(_insn(_JEQ_K, 0, 2, 0))
        process_slots.append(len(prog))
        prog += [_insn(_JEQ_K, 0, 1, 0),
                 _insn(_RET_K, _RET_ALLOW),
                 _insn(_RET_K, deny)]
    return (prog + _tail(table, _RET_USER_NOTIF), thread_slots,
            process_slots)


class _Program:
    """A filter in C memory, built once.

    A forked child patches its own copy (fork copied the memory); a
    launcher thread patches a copy made for it (:meth:`patched`).
    """

    def __init__(self, prog: list[tuple], pid_slots=(), thread_slots=(),
                 process_slots=()):
        self.pid_slots = list(pid_slots)
        self.thread_slots = list(thread_slots)
        self.process_slots = list(process_slots)
        self.filters = (_SockFilter * len(prog))(
            *[_SockFilter(*insn) for insn in prog])
        self.fprog = _SockFprog(len(prog), self.filters)
        self.address = ctypes.addressof(self.fprog)

    def raw(self) -> bytes:
        return bytes(self.filters)

    def patched(self, tid: int, pid: int) -> tuple:
        """(a copy with the launcher's tid and pid, keep-alive, address)."""
        filters = (_SockFilter * len(self.filters)).from_buffer_copy(
            self.filters)
        for slot in self.thread_slots:
            filters[slot].k = tid
        for slot in self.process_slots:
            filters[slot].k = pid
        fprog = _SockFprog(len(filters), filters)
        return (filters, fprog), ctypes.addressof(fprog)


_PROGRAMS: dict = {}


def _program(launcher: bool = False) -> _Program | None:
    """The filter of a forked child, or of a launcher thread; built once."""
    if launcher not in _PROGRAMS:
        table, _why = seccomp_table()
        if table is None:
            return None
        arch, numbers = table
        x32 = platform.machine() == 'x86_64'
        if launcher:
            prog, threads, processes = build_launcher_program(arch, numbers,
                                                              x32)
            _PROGRAMS[launcher] = _Program(prog, thread_slots=threads,
                                           process_slots=processes)
        else:
            prog, slots = build_program(arch, numbers, x32)
            _PROGRAMS[launcher] = _Program(prog, pid_slots=slots)
    return _PROGRAMS[launcher]


# --- one run ----------------------------------------------------------------

def _open_path(path: str) -> int | None:
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None


def _add_rule(ruleset: int, path: str, access: int) -> None:
    fd = _open_path(path)
    if fd is None:
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_ONLY
        rule = _PathBeneath(access, fd)
        if _LIBC.syscall(ctypes.c_long(_SYS_LANDLOCK_ADD_RULE),
                         ctypes.c_int(ruleset),
                         ctypes.c_int(_RULE_PATH_BENEATH),
                         ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, 'landlock_add_rule(%s): %s'
                          % (path, os.strerror(code)))
    finally:
        os.close(fd)


def _ruleset(abi: int, reads, writes, executables) -> int:
    """A Landlock ruleset fd (close-on-exec) for one qemu-img run."""
    fs = _FS_ABI1_ALL
    if abi >= 2:
        fs |= FS_REFER
    if abi >= 3:
        fs |= FS_TRUNCATE
    if abi >= 5:
        fs |= FS_IOCTL_DEV
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack('=QQQ', fs, net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    buf = ctypes.create_string_buffer(attr, 24)
    fd = _LIBC.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), buf,
                       ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, 'landlock_create_ruleset: %s'
                      % os.strerror(code))
    fd = int(fd)
    try:
        run = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE
        for path in SYSTEM_DIRS + SYSTEM_FILES:
            _add_rule(fd, path, run)
        for path in executables:
            if path:
                _add_rule(fd, path, FS_READ_FILE | FS_EXECUTE)
        for path in READ_DEVICES:
            _add_rule(fd, path, FS_READ_FILE)
        for path in RW_DEVICES:
            _add_rule(fd, path, FS_READ_FILE | FS_WRITE_FILE)
        for path in reads:
            _add_rule(fd, path, FS_READ_FILE)
        for path in writes:
            _add_rule(fd, path, FS_READ_FILE | FS_WRITE_FILE
                      | (FS_TRUNCATE if abi >= 3 else 0))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _create_empty(path: str) -> None:
    """Create ``path`` empty if missing, with qemu-img's mode (0644).

    Landlock grants rights on existing files only; writing into a file the
    parent made needs no right on its directory.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_CLOEXEC, 0o644))
    except FileExistsError:
        pass


class Confinement:
    """What one qemu-img run is confined by, prepared in the parent.

    Applied either by a forked child between fork and exec
    (:meth:`child_setup`), or by a short-lived launcher thread to itself
    before it starts qemu-img without a fork (:meth:`restrict_thread`):
    no_new_privs, Landlock domains and seccomp filters (set without TSYNC)
    belong to one thread and are inherited by the processes it starts.
    Both only make system calls; :meth:`close` releases the ruleset once
    the child has started.
    """

    def __init__(self, applied: list[str], ruleset_fd: int | None,
                 program: _Program | None):
        self.applied = applied
        self.ruleset_fd = ruleset_fd
        self.program = program
        self.nnp = bool(applied)
        self.listener: int | None = None

    @property
    def thread_safe(self) -> bool:
        """True when a launcher thread may apply it (nothing is lost).

        The forked child's seccomp rule "signals only to itself" needs the
        child's pid; a launcher thread does not know it, so it needs
        Landlock's signal scoping (ABI 6) for that, and seccomp for what
        the scoping lets through (the launcher thread itself).
        """
        return (self.ruleset_fd is not None and self.program is not None
                and LANDLOCK_SCOPE in self.applied
                and process_gate_usable())

    def child_setup(self) -> None:
        if not self.nnp:
            return
        failed = self._apply(os.getpid, None)
        if failed:
            _die(failed)

    def restrict_thread(self, caller_tid: int) -> ProcessGate | None:
        """Confine the calling thread for good; it then starts qemu-img.

        ``caller_tid``: the kernel thread id of the thread that asked; the
        same id here means green threads sharing one kernel thread
        (eventlet), which this must never restrict: :class:`NotAThread`.
        Returns the gate through which the caller lets the one process
        start pass (:class:`ProcessGate`), or None without seccomp.
        Raises :class:`ThreadNotConfined` when a
        layer cannot be applied.
        """
        tid = gettid()
        if tid is None or tid == caller_tid:
            raise NotAThread('not a separate kernel thread')
        if not self.nnp:
            return None
        failed = self._apply(None, tid)
        if failed:
            raise ThreadNotConfined('%s%s failed: %s' % (
                FAILED_PREFIX, failed, os.strerror(ctypes.get_errno())))
        if self.listener is None:
            return None
        return ProcessGate(self.listener, tid)

    def _apply(self, child_pid, launcher_tid) -> str | None:
        """Apply every layer; the name of the call that failed, or None."""
        if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return 'prctl(PR_SET_NO_NEW_PRIVS)'
        if self.ruleset_fd is not None:
            if _LIBC.syscall(ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF),
                             ctypes.c_int(self.ruleset_fd),
                             ctypes.c_uint32(0)) != 0:
                return 'landlock_restrict_self'
        if self.program is not None:
            if launcher_tid is None:
                pid = child_pid()
                for slot in self.program.pid_slots:
                    self.program.filters[slot].k = pid
                address = self.program.address
            else:
                _keep, address = _program(launcher=True).patched(
                    launcher_tid, os.getpid())
                fd = _LIBC.syscall(
                    ctypes.c_long(seccomp_table()[0][1]['seccomp']),
                    ctypes.c_uint(_SECCOMP_SET_MODE_FILTER),
                    ctypes.c_uint(_SECCOMP_FILTER_FLAG_NEW_LISTENER),
                    ctypes.c_void_p(address))
                if fd < 0:
                    return 'seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)'
                self.listener = int(fd)   # close-on-exec, as the kernel
                return None               # makes it
            if _LIBC.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER,
                           address, 0, 0) != 0:
                return 'prctl(PR_SET_SECCOMP)'
        return None

    def close(self) -> None:
        if self.ruleset_fd is not None:
            os.close(self.ruleset_fd)
            self.ruleset_fd = None


class ProcessGate:
    """Lets a launcher thread start qemu-img, and no process after it.

    The launcher's filter hands every process start to a supervisor
    through a seccomp notification descriptor.  The caller's thread,
    unrestricted, is that supervisor for one answer: it lets the start
    made by the launcher thread itself (the kernel names the thread)
    continue, and closes the descriptor.  From then on the kernel answers
    fork, vfork and clone (but threads) with ENOSYS for the launcher's
    child and everything it executes: qemu-img stays one process.
    """

    def __init__(self, listener: int, launcher_tid: int):
        self.listener = listener
        self.launcher_tid = launcher_tid

    def admit_one(self, gave_up: Callable[[], bool]) -> None:
        """Answer the first start, then close the gate.

        The first start can only be the launcher's (nothing else is in
        its sandbox yet); it continues if the kernel names the launcher
        thread, and is refused otherwise.  Either way the gate closes at
        once: a second start is answered by the kernel (ENOSYS), never by
        this thread, which may need the GIL that a start holds (Python's
        fork fallback when vfork fails holds it).  ``gave_up``: true once
        the launcher ended without starting anything: stop waiting.
        """
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        try:
            while not gave_up():
                if not poller.poll(100):
                    continue
                request = bytearray(_NOTIF_SIZE)
                try:
                    fcntl.ioctl(self.listener, _NOTIF_RECV, request, True)
                except OSError:     # the start was interrupted: wait on
                    continue
                ident, tid = struct.unpack_from('=QI', request)
                ours = tid == self.launcher_tid
                answer = bytearray(struct.pack(
                    '=QqiI', ident, 0, 0 if ours else -errno.EPERM,
                    _USER_NOTIF_FLAG_CONTINUE if ours else 0))
                with contextlib.suppress(OSError):
                    fcntl.ioctl(self.listener, _NOTIF_SEND, answer, True)
                return
        finally:
            self.close()

    def close(self) -> None:
        """Close the gate: every process start is refused from now on."""
        listener, self.listener = self.listener, None
        if listener is not None:
            os.close(listener)


_GATE_USABLE: list = []


def process_gate_usable() -> bool:
    """True where a launcher thread can use a :class:`ProcessGate`.

    The kernel must have seccomp user notification (5.0) with
    ``SECCOMP_USER_NOTIF_FLAG_CONTINUE`` (5.5); and Python must release
    the GIL while its ``vfork()`` waits for the child's exec (3.12, and
    3.11 from 3.11.7, where it was backported; verified here with
    3.11.7): before that, the launcher would hold the GIL while the
    supervisor, a Python thread, needs it to answer.  For the same
    reason, ``subprocess`` must use vfork (its ``_USE_VFORK`` switch):
    a plain fork holds the GIL.
    """
    if not getattr(subprocess, '_USE_VFORK', True):
        return False
    if not _GATE_USABLE:
        version = sys.version_info[:3]
        python_ok = version >= (3, 12) or (3, 11, 7) <= version < (3, 12)
        kernel_ok = False
        table, _why = seccomp_table()
        if table is not None and python_ok:
            sizes = ctypes.create_string_buffer(6)
            kernel_ok = (_LIBC.syscall(
                ctypes.c_long(table[1]['seccomp']),
                ctypes.c_uint(_SECCOMP_GET_NOTIF_SIZES), ctypes.c_uint(0),
                sizes) == 0 and _kernel_at_least(5, 5))
        _GATE_USABLE.append(python_ok and kernel_ok)
    return _GATE_USABLE[0]


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(part) for part in
                      platform.release().split('-')[0].split('.')[:2])
    except ValueError:
        return False
    return found >= (major, minor)


class NotAThread(RuntimeError):
    """The launcher shares its kernel thread with its caller."""


class ThreadNotConfined(Exception):
    """A launcher thread could not confine itself (message: why)."""


def gettid() -> int | None:
    """The kernel id of the calling thread (not Python's, which a green
    thread library may replace)."""
    try:
        return int(_LIBC.gettid())
    except (AttributeError, TypeError):  # pragma: no cover - glibc < 2.30
        return None


#: Exit code of a child that could not confine itself; its stderr starts
#: with :data:`FAILED_PREFIX`.
EXIT_NOT_CONFINED = 126
FAILED_PREFIX = 'glance-convert: cannot confine qemu-img: '


def _die(what: str) -> None:
    """In the child: say why on stderr and exit without running qemu-img."""
    code = ctypes.get_errno()
    os.write(2, ('%s%s failed: %s\n' % (FAILED_PREFIX, what,
                                        os.strerror(code))).encode())
    os._exit(EXIT_NOT_CONFINED)


def prepare(reads=(), writes=(), executable: str | None = None,
            helpers=()) -> Confinement:
    """The confinement of one qemu-img run under the current mode.

    ``reads``: the files it may read (its image); ``writes``: the files it
    may write (its output), created empty here if missing; ``helpers``:
    programs that exec qemu-img in the same process (setpriv, prlimit),
    allowed to run like ``executable``.  Raises
    :class:`ConfinementUnavailable` in ``required`` mode when an essential
    layer is missing.
    """
    if _MODE == OFF:
        return Confinement([], None, None)
    missing = missing_essential()
    if missing and _MODE == REQUIRED:
        reason = '; '.join('%s: %s (to get it: %s)' % (
            layer.name, layer.detail, layer.fix) for layer in missing)
        LOG.error('[glance_convert] sandbox = required, but qemu-img cannot '
                  'be confined on this host: %s', reason)
        raise ConfinementUnavailable(
            'Image conversion is not available on this cloud right now; '
            'please contact the cloud operator.',
            'sandbox = required: ' + reason)
    applied = applied_layers()
    ruleset = None
    if LANDLOCK_FS in applied:
        for path in writes:
            _create_empty(path)
        ruleset = _ruleset(landlock_abi()[0], reads, writes,
                           [executable, *helpers])
    program = None
    if SECCOMP in applied:
        program = _program()
        _program(launcher=True)   # built here, not in a restricted thread
    return Confinement(applied, ruleset, program)


def environment(extra: dict) -> dict:
    """The environment of one qemu-img run: ``extra`` and
    :data:`CHILD_PATH` only when confined; off, glance-api's with
    ``extra``."""
    if MINIMAL_ENV in applied_layers():
        return dict(extra, PATH=CHILD_PATH)
    return dict(os.environ, **extra)


def resolve(name: str, env: dict) -> str | None:
    """The file ``name`` runs from under ``env``'s PATH, as exec finds it."""
    return shutil.which(name, path=env.get('PATH', os.defpath))
