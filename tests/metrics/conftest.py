"""Fixtures of the metrics test: a PostgreSQL cluster (two workers import
at once), source images."""

import pytest

from tests import pgcluster
from tests.faults import harness


@pytest.fixture(scope='session')
def pg(tmp_path_factory, qemu_tools):
    yield from pgcluster.running(tmp_path_factory.mktemp('metrics-pg'))


@pytest.fixture(scope='session')
def images(tmp_path_factory):
    return harness.Images(tmp_path_factory.mktemp('metrics-images'))
