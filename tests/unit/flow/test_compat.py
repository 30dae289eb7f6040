"""The one place that knows Glance release numbers."""

from importlib import metadata

import pytest

from glance_convert.flow import compat


@pytest.mark.parametrize('version, prog', [
    ('30.2.0', None), ('31.1.0', None), ('32.0.0', None),
    ('33.0.0', 'glance-api'), ('34.0.0.0b1', 'glance-api'),
])
def test_which_releases_read_glance_api_conf_d(monkeypatch, version, prog):
    monkeypatch.setattr(compat.metadata, 'version', lambda name: version)
    assert compat.api_prog() == prog


def test_without_glance_the_newest_behaviour(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(compat.metadata, 'version', missing)
    assert compat.glance_major() is None
    assert compat.api_prog() == 'glance-api'
