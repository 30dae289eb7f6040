"""Fixtures shared by every test layer."""

import shutil

import pytest


@pytest.fixture(scope='session')
def qemu_tools():
    """Fail (not skip) clearly when qemu-img or qemu-io is missing.

    They come from Debian's qemu-utils (see bindep.txt); tools/run-tests
    installs it.  A skipped functional suite would look like a pass.
    """
    missing = [t for t in ('qemu-img', 'qemu-io') if not shutil.which(t)]
    if missing:
        pytest.fail('%s not found: install qemu-utils (apt-get install '
                    'qemu-utils) or run ./tools/run-tests'
                    % ', '.join(missing), pytrace=False)


@pytest.fixture
def load_conf(tmp_path):
    """Build a ConfigOpts with the plugin's options from a config text."""
    from oslo_config import cfg

    from glance_convert import options

    def load(text):
        path = tmp_path / 'glance-image-import.conf'
        path.write_text(text)
        conf = cfg.ConfigOpts()
        conf.register_opts(options.ALL_OPTS, group=options.GROUP)
        conf(['--config-file', str(path)], project='glance')
        return conf
    return load


@pytest.fixture
def start_paths(monkeypatch):
    """How each qemu-img of the test was started (qemu_img.THREAD...)."""
    seen = []
    from glance_convert.pipeline import qemu_img
    real = qemu_img._start

    def recording(*a, **kw):
        started = real(*a, **kw)
        seen.append(started[1])
        return started

    monkeypatch.setattr(qemu_img, '_start', recording)
    return seen
