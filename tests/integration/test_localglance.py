"""The harness itself: a plain Glance without the plugin, and PostgreSQL.

If these fail, the plugin's integration tests cannot be trusted.
"""

import os

import pytest

from glance_convert.testing import localglance
from tests import pgcluster
from tests.integration import glancetest


def test_plain_glance_direct_import_without_plugin(glance_servers,
                                                   source_dir, tmp_path):
    server = glance_servers.get(plugins=())
    source_path = source_dir / 'source.qcow2'

    client, image, task = glancetest.run_import(
        server, source_path, 'qcow2', 'glance-direct')

    assert task['status'] == 'success', task['message']
    assert image['status'] == 'active'
    assert image['disk_format'] == 'qcow2'
    out = tmp_path / 'downloaded'
    assert client.download(image['id'], str(out)) == \
        os.path.getsize(source_path)
    assert glancetest.file_hashes(out) == \
        glancetest.file_hashes(source_path)
    assert glancetest.leftovers(server, image['id']) == []


def test_client_reports_http_errors(glance_servers):
    client = glance_servers.get(plugins=()).client()
    with pytest.raises(localglance.GlanceHTTPError) as e:
        client.get_image('00000000-0000-0000-0000-000000000000')
    assert e.value.status == 404


def test_file_server_serves_only_its_directory(source_dir, file_server):
    url = file_server.url_for(source_dir / 'source.raw')
    assert url.startswith('http://127.0.0.1:')
    with pytest.raises(ValueError):
        file_server.url_for('/etc/passwd')


@pytest.mark.postgres
def test_postgres_cluster_runs_glance(tmp_path, source_dir, qemu_tools):
    pgcluster.require_server()
    import psycopg2  # noqa: F401  (psycopg2-binary: tox installs it)
    pg_dir = tmp_path / 'pg'
    with pgcluster.PostgresCluster(str(pg_dir)) as pg:
        assert pg.url.startswith('postgresql+psycopg2://postgres@/glance')
        server = localglance.GlanceServer(
            str(tmp_path / 'glance'), plugins=(), database_url=pg.url,
            workers=2)
        with server:
            client, image, task = glancetest.run_import(
                server, source_dir / 'source.vmdk', 'vmdk',
                'glance-direct')
            assert task['status'] == 'success', task['message']
            assert image['status'] == 'active'
        assert not server.running
    assert pg.process is None
    assert pg.run_dir is None
