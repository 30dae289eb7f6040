"""One version: the package metadata is setup.cfg's, tag or no tag."""

import configparser
import importlib.metadata
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def setup_cfg_version():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, 'setup.cfg'))
    return cfg['metadata']['version']


def test_setup_cfg_has_a_release_version():
    assert re.fullmatch(r'\d+\.\d+\.\d+', setup_cfg_version())


def test_installed_metadata_has_the_setup_cfg_version():
    # pbr alone would make it 0.1.0.devN on an untagged commit.
    assert importlib.metadata.version('glance-convert') == \
        setup_cfg_version()
