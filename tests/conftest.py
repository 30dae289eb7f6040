"""Fixtures shared by every test layer."""

import os
import shutil

import pytest

from tests import skips


_SKIPPED = []


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = (report.longrepr[2] if isinstance(report.longrepr, tuple)
                  else str(report.longrepr))
        _SKIPPED.append((report.nodeid, reason))


def _unexplained_skips():
    if os.environ.get('GLANCE_CONVERT_CHECK_SKIPS') != '1':
        return []
    return skips.unexplained(_SKIPPED, skips.read_allowlist())


def pytest_sessionfinish(session, exitstatus):
    if _unexplained_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    """List every skip with its reason, and those no line allows."""
    if not _SKIPPED:
        return
    terminalreporter.section('skips (%d)' % len(_SKIPPED))
    for nodeid, reason in _SKIPPED:
        terminalreporter.write_line('%s: %s' % (nodeid, reason))
    bad = _unexplained_skips()
    if bad:
        terminalreporter.write_line(
            '%d skip(s) not allowed by %s (the run fails): make the test '
            'run here, or add a line that says why it may skip'
            % (len(bad), os.path.relpath(skips.ALLOWLIST)), red=True)
        for nodeid, reason in bad:
            terminalreporter.write_line('  %s: %s' % (nodeid, reason),
                                        red=True)


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
def start_paths():
    """How each qemu-img of the test that ran was started
    (qemu_img.THREAD...)."""
    from glance_convert.pipeline import qemu_img
    seen = []

    def recording(runner):
        def run(args, limits, **options):
            result = runner(args, limits, **options)
            seen.append(result.started_by)
            return result
        return run

    with qemu_img.using(recording):
        yield seen
