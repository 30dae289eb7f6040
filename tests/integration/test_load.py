"""A busy Glance host: load, space, cancellation and crash (issue 4).

One real glance-api with 2 gunicorn workers on a private PostgreSQL (sqlite
cannot run imports concurrently), ``max_concurrent_conversions = 2`` and
``max_workspace_bytes`` sized between the images: the small ones fit two
at a time, the big one never does.  Conversions are raw -> qcow2 with zlib
compression of random data, the slowest thing qemu-img does per byte, so a
few dozen MiB keep a conversion running for seconds.

qemu-img processes are counted by sampling ``/proc/*/cmdline`` and keeping
only those whose arguments lie in this server's directory (other tests may
run qemu-img on the same machine at the same time).
"""

import os
import threading

import pytest

from glance_convert.testing import localglance
from tests import pgcluster
from glance_convert.host import procs
from glance_convert.host import workspace
from tests import proctools

pytestmark = pytest.mark.postgres

MiB = 1024 * 1024
SMALL = 40 * MiB        # two at once fit in WORKSPACE
BIG = 160 * MiB         # never fits in WORKSPACE
SLOW = 112 * MiB        # the image that is deleted or crashed mid-way
WORKSPACE = 128 * MiB
SLOTS = 2
N_SMALL = 8
TIMEOUT = 240           # for one batch of imports; a failure, not a limit


def _random_raw(path, nbytes):
    with open(path, 'wb') as f:
        for _ in range(nbytes // MiB):
            f.write(os.urandom(MiB))
    return path


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp('load-images')
    return {'small': _random_raw(d / 'small.raw', SMALL),
            'big': _random_raw(d / 'big.raw', BIG),
            'slow': _random_raw(d / 'slow.raw', SLOW)}


@pytest.fixture(scope='module')
def server(tmp_path_factory, qemu_tools):
    pgcluster.require_server()
    base = tmp_path_factory.mktemp('load')
    with pgcluster.PostgresCluster(str(base / 'pg')) as pg:
        srv = localglance.GlanceServer(
            str(base / 'glance'), database_url=pg.url, workers=2,
            plugin_conf={
                'output_format': 'qcow2',
                'qcow2_compression': 'zlib',
                'max_concurrent_conversions': SLOTS,
                'max_workspace_bytes': WORKSPACE,
                'reserved_space_mb': 0,
                'slot_wait_timeout': TIMEOUT,
                'progress_interval': 1,
            })
        try:
            srv.start()
            yield srv
        finally:
            srv.stop()


def ConvertSampler(base_dir):
    """Samples this server's conversions (one group named 'host')."""
    return proctools.ConversionSampler({'host': base_dir})


def _wait(predicate, what, timeout=TIMEOUT, server=None):
    return proctools.wait_for(predicate, what, timeout,
                              server.log_tail if server else None)


def _files_of(server, image_id):
    return [n for n in server.staging_files() if n.startswith(image_id)]


def _ledger(server):
    """The host's ledger as the plugin sees it (reaping on the way)."""
    return workspace.Workspace(
        server.staging_dir, lock_dir=server.lock_dir, max_concurrent=SLOTS,
        reserved_bytes=0, max_bytes=WORKSPACE).usage()


def _staged_image(client, path):
    image = client.create_image('raw')
    client.stage(image['id'], str(path))
    return image['id']


def _log_has(server, needle):
    with open(server.log_file, errors='replace') as f:
        return needle in f.read()


def test_concurrent_imports_respect_slots_and_space(server, images):
    client = server.client()
    small = [_staged_image(client, images['small']) for _ in range(N_SMALL)]
    big = _staged_image(client, images['big'])
    results = {}

    def wait(image_id):
        results[image_id] = client.wait_for_import(image_id, TIMEOUT)

    with ConvertSampler(server.base_dir) as sampler:
        for image_id in small[:4] + [big] + small[4:]:
            client.import_image(image_id, 'glance-direct')
        threads = [threading.Thread(target=wait, args=(i,))
                   for i in small + [big]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == N_SMALL + 1, 'some wait_for_import raised'

    print('qemu-img convert: peak %d concurrent over %d samples; seen %d '
          'of %d conversions' % (sampler.peak['host'], sampler.samples,
                                 len(sampler.seen['host']), N_SMALL))
    assert 1 <= sampler.peak['host'] <= SLOTS
    assert big not in sampler.seen['host']

    for image_id in small:
        image, task = results[image_id]
        assert task['status'] == 'success', task['message']
        assert image['status'] == 'active'
        assert image['disk_format'] == 'qcow2'
        assert image['virtual_size'] == SMALL

    image, task = results[big]
    assert task['status'] == 'failure'
    assert task['message'].startswith(
        'Not enough space to convert this image: it needs '), task['message']
    assert 'at most 128 MiB' in task['message'], task['message']
    assert image['status'] == 'queued'

    # Nothing leaks: no staged source, no work file, no reservation.
    # (The failed image keeps nothing either: it must be staged again.)
    assert server.staging_files() == []
    assert _ledger(server) == {'reservations': 0, 'reserved_bytes': 0,
                               'paths': []}


def test_deleting_the_image_stops_its_conversion(server, images):
    client = server.client()
    sampler = ConvertSampler(server.base_dir)
    image_id = _staged_image(client, images['slow'])
    client.import_image(image_id, 'glance-direct')
    pids = _wait(lambda: [p for p, i in sampler.current()['host'].items()
                          if i == image_id],
                 'the conversion to start', server=server)
    client.delete_image(image_id)

    _wait(lambda: not any(procs.process_start_time(p) for p in pids),
          'qemu-img to be killed', timeout=60, server=server)
    _wait(lambda: not _files_of(server, image_id),
          'the files of the deleted image to go', timeout=60, server=server)
    # It was stopped, not finished: no conversion was logged for it.
    assert not _log_has(server, 'Converted image %s' % image_id)
    with pytest.raises(localglance.GlanceHTTPError) as exc:
        client.get_image(image_id)
    assert exc.value.status == 404
    # The files go first, then the ledger entry: wait for both.
    _wait(lambda: _ledger(server)['paths'] == [],
          'the reservation to be released', timeout=30, server=server)


def test_sigkill_mid_conversion_leaves_nothing_after_restart(server, images):
    client = server.client()
    sampler = ConvertSampler(server.base_dir)
    image_id = _staged_image(client, images['slow'])
    client.import_image(image_id, 'glance-direct')
    _wait(lambda: [p for p, i in sampler.current()['host'].items()
                   if i == image_id],
          'the conversion to start', server=server)
    work_file = _wait(lambda: [n for n in _files_of(server, image_id)
                               if '.glance-convert.' in n],
                      'the work file', server=server)
    server.kill()
    # The crash left the staged source and the partial output behind.
    left = _files_of(server, image_id)
    assert image_id in left and work_file[0] in left

    server.start()
    # Any use of the plugin on the host reaps what the dead process held.
    other = _staged_image(client, images['small'])
    client.import_image(other, 'glance-direct')
    image, task = client.wait_for_import(other, TIMEOUT)
    assert task['status'] == 'success', task['message']

    assert _files_of(server, image_id) == []
    assert server.staging_files() == []
    image = client.get_image(image_id)
    assert 'os_glance_import_task' not in image
    assert image['status'] == 'queued'
    assert _ledger(server)['paths'] == []

    # The interrupted image can be imported again.
    client.stage(image_id, str(images['small']))
    client.import_image(image_id, 'glance-direct')
    image, task = client.wait_for_import(image_id, TIMEOUT)
    assert task['status'] == 'success', task['message']
    assert image['status'] == 'active'
    assert server.staging_files() == []


def _collect_messages(client, image_ids, stop, seen):
    """Poll the images' task messages until ``stop`` is set."""
    while not stop.is_set():
        for image_id in image_ids:
            try:
                for task in client.get_tasks(image_id):
                    seen.setdefault(image_id, []).append(task['message'])
            except localglance.GlanceHTTPError:
                pass
        stop.wait(0.1)


def test_task_messages_show_waiting_and_progress(server, images):
    """What an end user reads in GET /v2/images/{id}/tasks meanwhile."""
    client = server.client()
    slow = _staged_image(client, images['slow'])
    small = [_staged_image(client, images['small']) for _ in range(3)]
    seen, stop = {}, threading.Event()
    watcher = threading.Thread(target=_collect_messages,
                               args=(client, [slow] + small, stop, seen))
    watcher.start()
    try:
        client.import_image(slow, 'glance-direct')
        _wait(lambda: any(m.startswith('Converting: ')
                          for m in seen.get(slow, [])),
              'a progress message for the slow import', server=server)
        for image_id in small:
            client.import_image(image_id, 'glance-direct')
        results = {i: client.wait_for_import(i, TIMEOUT)
                   for i in [slow] + small}
    finally:
        stop.set()
        watcher.join()

    percents = [int(m.split()[1].rstrip('%')) for m in seen[slow]
                if m.startswith('Converting: ')]
    assert percents and all(0 <= p < 100 for p in percents), seen[slow]
    assert percents == sorted(percents), 'progress went backwards'
    waited = [m for i in small for m in seen.get(i, [])
              if m.startswith('Waiting for ')]
    # Two slots, one held by the slow image: at least one of the three
    # small imports had to wait, for a slot or for work space.
    assert waited, seen
    for image_id, (image, task) in results.items():
        assert task['status'] == 'success', task['message']
        assert image['status'] == 'active'
