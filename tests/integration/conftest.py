"""Fixtures: real glance-api servers, source images, a loopback web server.

Each server (gunicorn, sqlite, file store, no keystone) costs a few seconds
to start (db_sync + gunicorn), so servers are shared by the whole session,
one per plugin configuration, and stopped at the end.
"""

import pytest

from glance_convert import formats
from tests import fileserver
from tests import imagefactory
from tests.integration import glancetest


@pytest.fixture(scope='session')
def glance_servers(tmp_path_factory, qemu_tools):
    servers = glancetest.Servers(str(tmp_path_factory.mktemp('glance')))
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture(scope='session')
def source_dir(tmp_path_factory, qemu_tools):
    """A directory with source.<fmt> for every convertible format."""
    d = tmp_path_factory.mktemp('sources')
    for fmt in formats.CONVERTIBLE:
        imagefactory.make_image(d, fmt)
    return d


@pytest.fixture(scope='session')
def file_server(source_dir):
    """Serves source_dir on loopback for web-download."""
    with fileserver.FileServer(str(source_dir)) as server:
        yield server
