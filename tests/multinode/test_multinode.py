"""The plugin on a multi-node Glance (issue 7).

Two glance-api nodes on 127.0.0.1, 2 gunicorn workers each, with their own
ports, staging, store and work directories, one shared lock directory, one
PostgreSQL database and a real Keystone; Glance's distributed import
(``worker_self_reference_url``) forwards an import to the node that holds
the staged data with the user's token.

The tests run in file order: the SIGKILL test comes last because it
restarts a node.
"""

import os
import threading

import pytest

from tests import imagefactory
from tests import proctools
from tests.multinode import conftest
from tests.multinode import nodes

pytestmark = pytest.mark.postgres

#: For one batch of imports: a failure, not a measured limit.
TIMEOUT = 300
N_CONCURRENT = 12
NOT_HERE = 'The staged image data was not found on this node.'


def _converted_on(node, image_id):
    return 'Converted image %s from raw to qcow2' % image_id in node.log_text()


def _stage(client, path):
    image = client.create_image('raw')
    client.stage(image['id'], path)
    return image['id']


def _check_identical(client, image_id, source, tmp_path):
    out = str(tmp_path / ('%s.qcow2' % image_id))
    client.download(image_id, out)
    try:
        assert imagefactory.info(out, 'qcow2')['format'] == 'qcow2'
        assert imagefactory.compare(source, 'raw', out, 'qcow2'), (
            'image %s differs from its source' % image_id)
    finally:
        os.unlink(out)


def _wait_all(clients_and_ids):
    """wait_for_import for every (client, image id) at once."""
    results, errors = {}, {}

    def wait(client, image_id):
        try:
            results[image_id] = client.wait_for_import(image_id, TIMEOUT)
        except Exception as e:  # noqa: BLE001 - reported below
            errors[image_id] = e

    threads = [threading.Thread(target=wait, args=ci)
               for ci in clients_and_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def _wait_for(predicate, what, node=None, timeout=TIMEOUT):
    return proctools.wait_for(predicate, what, timeout,
                              node.log_tail if node else None,
                              interval=0.02)


def test_import_through_other_node_converts_where_staged(
        node_a, node_b, token, images, tmp_path):
    a, b = node_a.client(), node_b.client()
    image_id = _stage(a, images['small'])
    assert node_a.files_of(image_id) == [image_id]
    assert node_b.files_of(image_id) == []

    b.import_image(image_id, 'glance-direct')
    image, task = b.wait_for_import(image_id, TIMEOUT)

    assert task['status'] == 'success', task['message']
    assert image['status'] == 'active'
    assert image['disk_format'] == 'qcow2'
    # Node B forwarded the call; node A, which has the data, converted.
    assert 'Proxying POST request to host %s' % node_a.url in (
        node_b.log_text())
    assert _converted_on(node_a, image_id)
    assert not _converted_on(node_b, image_id)
    assert node_a.files_of(image_id) == []
    assert node_b.files_of(image_id) == []
    _check_identical(b, image_id, images['small'], tmp_path)


def test_concurrent_imports_on_both_nodes(node_a, node_b, token, images,
                                          tmp_path):
    clients = {node_a.name: node_a.client(),
               node_b.name: node_b.client()}
    pair = (node_a, node_b)
    staged_on = {}
    for i in range(N_CONCURRENT):
        node = pair[i % 2]
        staged_on[_stage(clients[node.name], images['small'])] = node
    # Half of the imports go through the node without the data.
    via = {image_id: pair[(i // 2) % 2]
           for i, image_id in enumerate(staged_on)}

    with nodes.ConvertSampler(pair) as sampler:
        for image_id, node in via.items():
            clients[node.name].import_image(image_id, 'glance-direct')
        results = _wait_all([(clients[node.name], image_id)
                             for image_id, node in via.items()])

    print('qemu-img convert peaks %s (total %d) over %d samples; seen %s'
          % (sampler.peak, sampler.peak_total, sampler.samples,
             {k: len(v) for k, v in sampler.seen.items()}))
    for node in pair:
        assert sampler.peak[node.name] <= conftest.SLOTS, (
            '%s ran %d conversions at once'
            % (node.name, sampler.peak[node.name]))
        # Every conversion ran on the node holding its data.
        mine = {i for i, n in staged_on.items() if n is node}
        assert sampler.seen[node.name] <= mine
        for image_id in mine:
            assert _converted_on(node, image_id)
    # The sampler saw conversions overlap, so the bound above was tested:
    # 6 imports per node started together keep each node's slots full.
    assert max(sampler.peak.values()) == conftest.SLOTS, (
        'conversions never overlapped: the sampler proves nothing')
    # The nodes share a lock directory but not their slots.
    assert sampler.peak_total > conftest.SLOTS, (
        'never more than %d conversions on both nodes together: do the '
        'nodes share their slots?' % conftest.SLOTS)

    for image_id, (image, task) in results.items():
        assert task['status'] == 'success', task['message']
        assert image['status'] == 'active'
        assert image['disk_format'] == 'qcow2'
    for image_id in list(results)[:2]:
        _check_identical(clients[node_a.name], image_id, images['small'],
                         tmp_path)
    for node in pair:
        assert node.staging_files() == [], node.name
        assert node.work_files() == [], node.name


def test_staged_data_not_on_this_node_fails_clearly(
        cluster, node_a, images):
    # A node that wrongly believes it is node A (the same
    # worker_self_reference_url, as when every node is given the load
    # balancer's URL) runs imports of data staged on A itself.
    stray = cluster.start_node('node-stray', self_url=node_a.url,
                               workers=1)
    try:
        client = stray.client()
        image_id = _stage(node_a.client(), images['small'])
        client.import_image(image_id, 'glance-direct')
        image, task = client.wait_for_import(image_id, TIMEOUT)
        assert task['status'] == 'failure'
        assert task['message'] == NOT_HERE
        assert image['status'] == 'queued'
        assert 'os_glance_import_task' not in image
        assert stray.files_of(image_id) == []
        # The data is still where Glance put it, untouched.
        assert node_a.files_of(image_id) == [image_id]
    finally:
        stray.stop()
    # Deleting the image through the node that has the data removes it.
    node_a.client().delete_image(image_id)
    assert node_a.files_of(image_id) == []


def test_sigkill_of_one_node_mid_conversion(node_a, node_b, images,
                                            tmp_path):
    a, b = node_a.client(), node_b.client()
    victim = _stage(a, images['slow'])
    others = [_stage(b, images['small']) for _ in range(3)]

    with nodes.ConvertSampler((node_a, node_b)) as sampler:
        for image_id in others:
            b.import_image(image_id, 'glance-direct')
        a.import_image(victim, 'glance-direct')

        def converting():
            return (victim in sampler.current()[node_a.name].values()
                    and any(n.startswith(victim + '.glance-convert.')
                            for n in node_a.work_files()))

        _wait_for(converting, 'the conversion of %s on node A' % victim,
                  node_a)
        node_a.kill()
        results = _wait_all([(b, image_id) for image_id in others])

    # Node B's imports did not notice.
    for image_id in others:
        image, task = results[image_id]
        assert task['status'] == 'success', task['message']
        assert image['status'] == 'active'
        assert _converted_on(node_b, image_id)
    _check_identical(b, others[0], images['small'], tmp_path)
    assert node_b.staging_files() == []
    assert node_b.work_files() == []

    # The killed import left its staged data and work files, and the
    # image is stuck in 'importing' under the dead task's import lock.
    assert victim in node_a.files_of(victim)
    assert any(n.startswith(victim + '.glance-convert.')
               for n in node_a.files_of(victim))
    stuck = b.get_image(victim)
    assert stuck['status'] == 'importing'
    assert 'os_glance_import_task' in stuck

    node_a.start()
    # The next import on the restarted node recovers the dead one.
    fresh = _stage(a, images['small'])
    a.import_image(fresh, 'glance-direct')
    image, task = a.wait_for_import(fresh, TIMEOUT)
    assert task['status'] == 'success', task['message']

    image = a.get_image(victim)
    assert image['status'] == 'queued'
    assert 'os_glance_import_task' not in image
    assert node_a.files_of(victim) == []
    dead_task = a.get_tasks(victim)[-1]
    assert dead_task['status'] == 'failure'
    assert 'interrupted' in dead_task['message'].lower(), dead_task

    # ... and the image can be imported again, through either node.
    a.stage(victim, images['slow'])
    b.import_image(victim, 'glance-direct')
    image, task = b.wait_for_import(victim, TIMEOUT)
    assert task['status'] == 'success', task['message']
    assert image['status'] == 'active'
    _check_identical(a, victim, images['slow'], tmp_path)
    for node in (node_a, node_b):
        assert node.staging_files() == [], node.name
        assert node.work_files() == [], node.name
