"""Self-healing (issue 27): an import whose glance-api worker dies is
released by itself, with no operator and no other import.

Each host here runs ``glance-convert recover --follow`` beside glance-api,
as the shipped systemd unit does, and nothing else: no ``recover`` at
start, no import but the one a case kills.  A case finds the worker that
runs the import as the parent of its qemu-img, SIGKILLs it, and checks
that the image is released (queued, its formats back, its task failed
with a sentence, no file left in staging), that the qemu-img is gone and
that the user's retry works at once.  How long the release took is
printed; the wait itself is a generous time-out, not the promise.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from glance_convert.host import procs
from tests.faults import harness
from tests.faults.harness import say
from tests.faults.harness import wait_for

#: A time-out, not the promise: the look-out looks every 2 s and the
#: release takes well under a second; the test prints what it measured.
HEAL_TIMEOUT = 60


@pytest.fixture(scope='module')
def lone(pg, hosts_dir):
    """glance-api with one gunicorn worker, and the look-out service."""
    h = harness.Host(hosts_dir, pg, 'heal-lone', workers=1)
    with harness.running(h), h.lookout():
        yield h


@pytest.fixture(scope='module')
def pair(pg, hosts_dir):
    """glance-api with two gunicorn workers, and the look-out service."""
    h = harness.Host(hosts_dir, pg, 'heal-pair', workers=2)
    with harness.running(h), h.lookout():
        yield h


def _converting(host, source, fmt='qcow2'):
    """An import held in ``qemu-img convert``: (image id, qemu-img pid,
    the worker that runs it, found as qemu-img's parent)."""
    image_id = host.start_import(source, fmt, hold='convert')
    [qemu] = host.held_at('convert', image_id)
    # The worker records its qemu-img in the ledger just after starting
    # it; a kill before that would leave it to its own limits.
    wait_for(lambda: any(p[0] == qemu for e in host.ledger()[
        'entries'].values() for p in e.get('processes', [])),
        'qemu-img %d in the ledger' % qemu, log=host.log)
    worker = harness.parent_of(qemu)
    assert worker == host.worker_of(image_id), 'not the ledger\'s holder'
    assert harness.parent_of(worker) == host.master_pid(), 'not a worker'
    say('image %s converts in qemu-img %d of worker %d'
        % (image_id[:8], qemu, worker))
    return image_id, qemu, worker


def _kill_and_heal(host, image_id, qemu, worker, source):
    """SIGKILL the worker; check the release, by itself, and the retry."""
    before = host.client.get_image(image_id)
    assert before['status'] == 'importing', before
    host.kill_worker(worker)
    died = time.monotonic()
    # Read in the database: with one worker, the API answers only once
    # the server has started a new one, which takes longer than this.
    wait_for(lambda: host.import_lock_in_database(image_id) is None,
             'the lock of %s to be dropped in the database' % image_id,
             timeout=HEAL_TIMEOUT, log=host.lookout_tail, interval=0.2)
    say('released %.1f s after worker %d died'
        % (time.monotonic() - died, worker))
    host.wait_released(image_id)
    host.release(image_id)
    image, task = host.check_released(image_id)
    assert (image['disk_format'], image['container_format']) == (
        'qcow2', 'bare'), image
    assert 'interrupted' in task['message'], task
    # Gone or a zombie: the killed qemu-img's new parent may be slow to
    # reap it.
    assert procs.process_start_time(qemu) is None, (
        'qemu-img %d still runs:\n%s' % (qemu, host.lookout_tail()))
    assert host.releases_logged(image_id) == 1
    host.reimport(image_id, source)


@pytest.mark.quick
def test_lone_worker_killed_converting(lone, images):
    """1 worker: nothing but the look-out service can release it."""
    say('case: the only worker SIGKILLed while converting')
    source = images.qcow2(8)
    image_id, qemu, worker = _converting(lone, source)
    _kill_and_heal(lone, image_id, qemu, worker, source)
    [respawned] = lone.wait_workers(1)
    assert respawned != worker


def test_respawned_workers_killed_converting(pair, images):
    """2 workers: the one that ran the host's only import dies; then every
    worker is one the server respawned, and the one converting dies."""
    say('case: a worker SIGKILLed, then a respawned worker SIGKILLed')
    first = pair.wait_workers(2)
    source = images.qcow2(8)
    image_id, qemu, worker = _converting(pair, source)
    _kill_and_heal(pair, image_id, qemu, worker, source)
    for pid in pair.wait_workers(2):   # respawn every original worker
        if pid in first:
            pair.kill_worker(pid)
    respawned = wait_for(
        lambda: not set(pair.wait_workers(2)) & set(first)
        and pair.wait_workers(2), 'every worker respawned', log=pair.log)
    pair.wait_quiet()
    image_id, qemu, worker = _converting(pair, images.qcow2(4))
    assert worker in respawned
    _kill_and_heal(pair, image_id, qemu, worker, images.qcow2(4))
    pair.wait_quiet()
    pair.check_ledger()


def test_live_import_of_another_worker_is_left_alone(pair, images):
    """A worker dies while the other worker converts: only the dead
    worker's import is released, once, and the live one finishes."""
    say('case: a worker SIGKILLed while the other one converts')
    live_source, source = images.qcow2(2), images.qcow2(8)
    live, live_qemu, live_worker = _converting(pair, live_source)
    for _ in range(12):
        image_id, qemu, worker = _converting(pair, source)
        if worker != live_worker:
            break
        pair.release(image_id)   # same worker: let it finish, try again
        pair.check_succeeds(image_id)
    else:
        raise AssertionError('12 imports all went to worker %d'
                             % live_worker)
    live_task = pair.client.get_image(live)['os_glance_import_task']
    _kill_and_heal(pair, image_id, qemu, worker, source)
    image = pair.client.get_image(live)
    assert image['status'] == 'importing', image
    assert image.get('os_glance_import_task') == live_task, image
    assert pair.client.get_tasks(live)[-1]['status'] == 'processing'
    assert harness.parent_of(live_qemu) == live_worker
    assert pair.files_of(live), 'the live import lost its files'
    assert pair.releases_logged(live) == 0
    pair.release(live)
    pair.check_succeeds(live)
    pair.wait_quiet()
    pair.check_ledger()


def test_glance_api_restarted(pair, images):
    """glance-api stopped (SIGTERM) and started again, as ``systemctl
    restart`` does, with no ``recover`` at its start."""
    say('case: glance-api restarted while converting')
    source = images.qcow2(8)
    image_id, qemu, worker = _converting(pair, source)
    assert pair.import_lock_in_database(image_id)
    pair.server.stop()
    stopped = time.monotonic()
    pair.release(image_id)
    # Released while glance-api is down: nothing of it is needed.
    wait_for(lambda: pair.import_lock_in_database(image_id) is None,
             'the lock of %s to be dropped in the database' % image_id,
             timeout=HEAL_TIMEOUT, log=pair.lookout_tail, interval=0.2)
    say('released %.1f s after glance-api stopped, before its start'
        % (time.monotonic() - stopped))
    pair.start()
    image, task = pair.check_released(image_id)
    assert image['disk_format'] == 'qcow2', image
    assert procs.process_start_time(qemu) is None
    assert pair.releases_logged(image_id) <= 1
    pair.reimport(image_id, source)


def test_idle_look_out_reads_the_ledger_and_nothing_else(lone, images):
    """While no import runs, the look-out service reads the ledger once per
    look and makes no database query (not even a connection)."""
    if not shutil.which('strace'):
        pytest.skip('needs strace')
    say('case: the idle cost of the look-out service')
    lone.check_succeeds(lone.start_import(images.qcow2(2), 'qcow2'))
    lone.wait_quiet()
    pid = lone.lookout_process.pid
    trace = os.path.join(lone.base_dir, 'lookout.strace')
    seconds = 10
    tracer = subprocess.Popen(
        ['strace', '-f', '-qq', '-o', trace, '-e',
         'trace=openat,open,connect,sendto,sendmsg,recvfrom,write',
         '-p', str(pid)], stdin=subprocess.DEVNULL)
    time.sleep(seconds)
    tracer.terminate()
    tracer.wait(timeout=30)
    with open(trace) as f:
        calls = [re.sub(r'^\d+\s+', '', line) for line in f]
    ledger = [c for c in calls if lone.layout.ledger_path in c]
    others = [c for c in calls if c not in ledger]
    say('%d s idle: %d reads of the ledger, other calls: %s'
        % (seconds, len(ledger), others))
    assert ledger, 'the look-out did not look'
    assert len(ledger) <= seconds // 2 + 1, ledger
    assert others == [], others
    wait_for(lambda: lone.lookout_process.poll() is None, 'look-out alive')


@pytest.fixture(scope='module')
def under_uwsgi(pg, hosts_dir):
    """glance-api with two uWSGI workers (devstack's server), and the
    look-out service."""
    if not harness.uwsgi_binary():
        pytest.skip('uWSGI is not installed in this environment (tox -e '
                    'faults installs it; it builds from source: gcc and '
                    'the Python headers)')
    h = harness.Host(hosts_dir, pg, 'heal-uwsgi', workers=2, wsgi='uwsgi')
    with harness.running(h), h.lookout():
        yield h


def test_uwsgi_worker_killed_converting(under_uwsgi, images):
    """uWSGI: the worker converting dies, the master respawns it, and the
    respawned worker's import dies too."""
    say('case: a uWSGI worker SIGKILLed while converting, twice')
    host = under_uwsgi
    first = host.wait_workers(2)
    source = images.qcow2(8)
    image_id, qemu, worker = _converting(host, source)
    _kill_and_heal(host, image_id, qemu, worker, source)
    respawned = [pid for pid in host.wait_workers(2) if pid not in first]
    assert respawned, 'uWSGI did not respawn worker %d' % worker
    for _ in range(12):
        image_id, qemu, worker = _converting(host, images.qcow2(4))
        if worker in respawned:
            break
        host.release(image_id)
        host.check_succeeds(image_id)
    else:
        raise AssertionError('12 imports missed the respawned worker')
    _kill_and_heal(host, image_id, qemu, worker, images.qcow2(4))
    host.wait_quiet()
    host.check_ledger()
