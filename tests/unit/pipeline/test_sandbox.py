"""The sandbox module without starting qemu-img.

The seccomp program is run through a small BPF interpreter here, so each
rule is checked on its own; the functional tests show the kernel agrees.
"""

import errno
import logging
import os
import struct

import pytest

from glance_convert import errors
from glance_convert.flow import settings as config_check
from glance_convert.cmd import check_config
from glance_convert.pipeline import sandbox

ALLOW = 0x7fff0000
KILL = 0x80000000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
USER_NOTIF = 0x7fc00000


def run_bpf(prog, nr, arch, args=()):
    """Return what the filter answers for one system call."""
    args = list(args) + [0] * (6 - len(args))
    data = struct.pack('<iI Q 6Q', nr, arch, 0, *args)
    pc, acc = 0, 0
    for _ in range(10000):
        code, jt, jf, k = prog[pc]
        if code == 0x20:                      # ld [k]
            acc = struct.unpack_from('<I', data, k)[0]
            pc += 1
        elif code in (0x15, 0x35, 0x45):      # jeq, jge, jset
            hit = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if hit else jf)
        elif code == 0x06:                    # ret k
            return k
        else:
            raise AssertionError('unknown opcode %#x' % code)
    raise AssertionError('no return')


@pytest.fixture(params=sorted(sandbox._TABLES))
def program(request):
    arch, table = sandbox._TABLES[request.param]
    prog, slots = sandbox.build_program(arch, table,
                                        request.param == 'x86_64')
    pid = 4242
    for slot in slots:
        code, jt, jf, _k = prog[slot]
        prog[slot] = (code, jt, jf, pid)
    return request.param, arch, table, prog, pid


def test_every_jump_lands_inside_and_every_path_returns(program):
    _machine, _arch, _table, prog, _pid = program
    assert len(prog) < 4096
    for pc, (code, jt, jf, _k) in enumerate(prog):
        if code in (0x15, 0x35, 0x45):
            assert pc + 1 + max(jt, jf) < len(prog)
    assert prog[-1][0] == 0x06


def test_sockets_and_escapes_are_refused(program):
    _machine, arch, table, prog, _pid = program
    for name in ('socket', 'connect', 'bind', 'ptrace', 'process_vm_readv',
                 'io_uring_setup', 'unshare', 'setns', 'keyctl', 'mount',
                 'open_by_handle_at', 'truncate', 'fchmodat', 'bpf',
                 'pidfd_open', 'perf_event_open'):
        assert run_bpf(prog, table[name], arch, [2]) == EPERM, name


def test_signals_only_to_itself(program):
    _machine, arch, table, prog, pid = program
    for name in sandbox._SELF_ONLY:
        assert run_bpf(prog, table[name], arch, [pid, 9]) == ALLOW, name
        assert run_bpf(prog, table[name], arch, [pid + 1, 9]) == EPERM
        assert run_bpf(prog, table[name], arch, [1, 9]) == EPERM
        # -1 (every process) and 0 (the process group)
        assert run_bpf(prog, table[name], arch, [0xffffffff, 9]) == EPERM
        assert run_bpf(prog, table[name], arch, [0, 9]) == EPERM


@pytest.fixture(params=sorted(sandbox._TABLES))
def launcher_program(request):
    arch, table = sandbox._TABLES[request.param]
    prog, threads, processes = sandbox.build_launcher_program(
        arch, table, request.param == 'x86_64')
    tid, pid = 5151, 5000
    for slots, value in ((threads, tid), (processes, pid)):
        for slot in slots:
            code, jt, jf, _k = prog[slot]
            prog[slot] = (code, jt, jf, value)
    return arch, table, prog, tid, pid


def test_launcher_signals_never_to_glance_api(launcher_program):
    """Landlock scopes the other targets; this refuses what it lets by."""
    arch, table, prog, tid, pid = launcher_program
    for name in sandbox._SELF_ONLY:
        assert run_bpf(prog, table[name], arch, [tid, 9]) == EPERM, name
        assert run_bpf(prog, table[name], arch, [pid, 9]) == EPERM, name
        # Its own pid (unknown here) and the rest: left to Landlock.
        assert run_bpf(prog, table[name], arch, [tid + 7, 9]) == ALLOW
    # Everything else is the forked child's program.
    assert run_bpf(prog, table['socket'], arch, [1]) == EPERM
    assert run_bpf(prog, table['clone3'], arch) == ENOSYS
    assert run_bpf(prog, 0 if arch == 0xC000003E else 63, arch) == ALLOW


@pytest.mark.parametrize('machine', sorted(sandbox._TABLES))
@pytest.mark.parametrize('launcher', [False, True])
def test_no_file_owner_to_signal(machine, launcher):
    """F_SETOWN(_EX), FIOSETOWN, SIOCSPGRP refused; other commands pass.

    The owner of an O_ASYNC file gets a signal on I/O, which no rule on
    kill() sees.
    """
    arch, table = sandbox._TABLES[machine]
    build = (sandbox.build_launcher_program if launcher
             else sandbox.build_program)
    prog = build(arch, table, machine == 'x86_64')[0]
    for nr, cmd in ((table['fcntl'], 8), (table['fcntl'], 15),
                    (table['ioctl'], 0x8901), (table['ioctl'], 0x8902)):
        assert run_bpf(prog, nr, arch, [3, cmd, 1234]) == EPERM, cmd
    for nr, cmd in ((table['fcntl'], 1), (table['fcntl'], 4),    # GETFD,SETFL
                    (table['ioctl'], 0x5401)):                   # TCGETS
        assert run_bpf(prog, nr, arch, [3, cmd, 0]) == ALLOW, cmd


THREAD = 0x003d0f00      # what pthread_create passes to clone
FORK = 0x01200011        # glibc's fork(): SIGCHLD, CHILD_SETTID|CLEARTID
VFORK = 0x00004111       # CLONE_VM | CLONE_VFORK | SIGCHLD


def test_threads_yes_processes_and_namespaces_no(program):
    _machine, arch, table, prog, _pid = program
    assert run_bpf(prog, table['clone'], arch, [THREAD]) == ALLOW
    for flags in (FORK, VFORK, 0x11, 0x00010000 ^ THREAD):
        assert run_bpf(prog, table['clone'], arch, [flags]) == EPERM, flags
    for name in ('fork', 'vfork'):
        if name in table:
            assert run_bpf(prog, table[name], arch) == EPERM, name
    for flag in (0x10000000, 0x20000, 0x40000000, 0x20000000):
        assert run_bpf(prog, table['clone'], arch, [THREAD | flag]) == EPERM
    assert run_bpf(prog, table['clone3'], arch) == ENOSYS


def test_launcher_hands_process_starts_to_its_gate(launcher_program):
    """The launcher's own start of qemu-img must pass once: the filter
    asks the supervisor, which lets exactly that one through."""
    arch, table, prog, _tid, _pid = launcher_program
    assert run_bpf(prog, table['clone'], arch, [THREAD]) == ALLOW
    for flags in (FORK, VFORK):
        assert run_bpf(prog, table['clone'], arch, [flags]) == USER_NOTIF
    for name in ('fork', 'vfork'):
        if name in table:
            assert run_bpf(prog, table[name], arch) == USER_NOTIF, name
    assert run_bpf(prog, table['clone'], arch,
                   [THREAD | 0x20000000]) == EPERM     # CLONE_NEWUTS


@pytest.mark.parametrize('machine', sorted(sandbox._TABLES))
@pytest.mark.parametrize('launcher', [False, True])
def test_other_processes_are_left_alone(machine, launcher):
    """Limits, priority, affinity, scheduling, I/O priority and memory
    placement: of the caller itself only (pid 0), as qemu-img, setpriv
    and prlimit use them (traced); never of another process."""
    arch, table = sandbox._TABLES[machine]
    build = (sandbox.build_launcher_program if launcher
             else sandbox.build_program)
    prog = build(arch, table, machine == 'x86_64')[0]
    for name in ('prlimit64', 'sched_setaffinity', 'sched_setscheduler',
                 'sched_setparam', 'sched_setattr', 'migrate_pages',
                 'move_pages'):
        assert run_bpf(prog, table[name], arch, [0, 7, 1]) == ALLOW, name
        assert run_bpf(prog, table[name], arch, [4242, 7, 1]) == EPERM
        assert run_bpf(prog, table[name], arch, [0xffffffff, 7]) == EPERM
    setpriority, ioprio_set = table['setpriority'], table['ioprio_set']
    assert run_bpf(prog, setpriority, arch, [0, 0, 5]) == ALLOW
    assert run_bpf(prog, setpriority, arch, [0, 4242, 5]) == EPERM
    for which in (1, 2):     # PRIO_PGRP, PRIO_USER: others too
        assert run_bpf(prog, setpriority, arch, [which, 0, 5]) == EPERM
    assert run_bpf(prog, ioprio_set, arch, [1, 0, 0x6000]) == ALLOW
    assert run_bpf(prog, ioprio_set, arch, [1, 4242, 0x6000]) == EPERM
    for which in (2, 3):     # IOPRIO_WHO_PGRP, IOPRIO_WHO_USER
        assert run_bpf(prog, ioprio_set, arch, [which, 0, 0]) == EPERM
    for name in ('kcmp', 'process_madvise', 'process_mrelease'):
        assert run_bpf(prog, table[name], arch, [0, 0]) == EPERM, name


def test_ordinary_calls_pass(program):
    machine, arch, _table, prog, _pid = program
    # read, write, openat, mmap, exit_group
    numbers = {'x86_64': (0, 1, 257, 9, 231),
               'aarch64': (63, 64, 56, 222, 94)}[machine]
    for nr in numbers:
        assert run_bpf(prog, nr, arch) == ALLOW, nr


def test_other_abis_are_killed(program):
    machine, arch, _table, prog, _pid = program
    assert run_bpf(prog, 1, 0x40000003) == KILL      # i386
    if machine == 'x86_64':
        assert run_bpf(prog, 0x40000000 | 41, arch) == EPERM  # x32 socket


# --- modes, findings ---------------------------------------------------------

def _layers(**available):
    return [sandbox.Layer(name, available.get(name, True), 'stops', 'detail',
                          'fix it')
            for name in (sandbox.NO_NEW_PRIVS, sandbox.LANDLOCK_FS,
                         sandbox.LANDLOCK_NET, sandbox.LANDLOCK_SCOPE,
                         sandbox.SECCOMP, sandbox.ONE_PROCESS,
                         sandbox.MINIMAL_ENV)]


@pytest.fixture
def host():
    """Mode auto, nothing logged yet; ``host(layer=False...)`` simulates a
    host without those layers.  The real host and mode come back after."""
    before = sandbox.mode()
    sandbox.configure(sandbox.AUTO)
    sandbox.probe_again()
    with pytest.MonkeyPatch.context() as patch:
        def set_layers(**available):
            patch.setattr(sandbox, 'layers', lambda: _layers(**available))
        yield set_layers
    sandbox.probe_again()
    sandbox.configure(before)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        sandbox.configure('maybe')


def test_auto_logs_missing_layers_once(host, caplog):
    host(**{sandbox.SECCOMP: False, sandbox.LANDLOCK_SCOPE: False})
    with caplog.at_level(logging.INFO):
        sandbox.configure(sandbox.AUTO)
        sandbox.configure(sandbox.AUTO)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and 'seccomp' in warnings[0].getMessage()
    assert len(infos) == 1 and 'landlock-scope' in infos[0].getMessage()
    assert sandbox.applied_layers() == [
        sandbox.NO_NEW_PRIVS, sandbox.LANDLOCK_FS, sandbox.LANDLOCK_NET,
        sandbox.ONE_PROCESS, sandbox.MINIMAL_ENV]


def test_required_refuses_without_an_essential_layer(host, tmp_path):
    host(**{sandbox.LANDLOCK_FS: False})
    sandbox.configure(sandbox.REQUIRED)
    out = tmp_path / 'out'
    with pytest.raises(sandbox.ConfinementUnavailable) as exc_info:
        sandbox.prepare(writes=[str(out)])
    assert isinstance(exc_info.value, errors.ConversionError)
    assert 'landlock-fs' in exc_info.value.detail
    assert not out.exists()


def test_required_accepts_a_missing_second_layer(host):
    host(**{sandbox.LANDLOCK_NET: False, sandbox.LANDLOCK_SCOPE: False,
            sandbox.SECCOMP: False, sandbox.LANDLOCK_FS: False})
    sandbox.configure(sandbox.OFF)
    assert sandbox.prepare().applied == []
    host(**{sandbox.LANDLOCK_NET: False, sandbox.LANDLOCK_SCOPE: False})
    sandbox.configure(sandbox.REQUIRED)
    confinement = sandbox.prepare()
    try:
        assert sandbox.LANDLOCK_NET not in confinement.applied
        assert sandbox.SECCOMP in confinement.applied
    finally:
        confinement.close()


@pytest.mark.skipif(sandbox.landlock_abi()[0] < 1, reason='no Landlock')
def test_output_is_created_before_the_run(host, tmp_path):
    sandbox.configure(sandbox.AUTO)
    out = tmp_path / 'out'
    confinement = sandbox.prepare(reads=[str(tmp_path / 'missing')],
                                  writes=[str(out)])
    try:
        assert out.exists() and out.stat().st_size == 0
        assert confinement.ruleset_fd is not None
        assert os.get_inheritable(confinement.ruleset_fd) is False
    finally:
        confinement.close()
    assert confinement.ruleset_fd is None


@pytest.mark.parametrize('mode,severity', [
    (sandbox.AUTO, config_check.WARNING),
    (sandbox.REQUIRED, config_check.ERROR)])
def test_findings_say_what_is_missing_and_what_to_do(host, mode, severity):
    host(**{sandbox.LANDLOCK_FS: False, sandbox.LANDLOCK_SCOPE: False})
    found = check_config.check_sandbox(mode)
    assert len(found) == 7
    by_severity = {}
    for f in found:
        by_severity.setdefault(f.severity, []).append(f)
    [bad] = by_severity[severity]
    assert 'landlock-fs' in bad.message and bad.fix
    scope = [f for f in found if 'landlock-scope' in f.message]
    assert scope[0].severity == config_check.OK and scope[0].fix


def test_findings_when_off(host):
    [finding] = check_config.check_sandbox(sandbox.OFF)
    assert finding.severity == config_check.WARNING
    assert 'auto' in finding.fix


def test_environment_is_minimal_unless_off(host, monkeypatch):
    """Confined, nothing of glance-api's environment; off, all of it."""
    monkeypatch.setenv('OS_PASSWORD', 'secret')
    extra = {'LC_ALL': 'C'}
    sandbox.configure(sandbox.AUTO)
    assert sandbox.environment(extra) == {'LC_ALL': 'C',
                                          'PATH': sandbox.CHILD_PATH}
    sandbox.configure(sandbox.OFF)
    env = sandbox.environment(extra)
    assert env['OS_PASSWORD'] == 'secret' and env['LC_ALL'] == 'C'
