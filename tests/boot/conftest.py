"""Fixtures of the boot proof: the two guests, built once per session,
their copies in other formats, and (for the imports) the integration
suite's glance-api servers."""

import os
import secrets

import pytest

from tests import bootable
from tests import imagefactory
from tests.boot import machine
# The integration suite's servers, shared with it rather than re-made.
from tests.integration.conftest import glance_servers  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'quick: the boot proof\'s cases that the README\'s test '
        'command runs (tox -e boot-quick)')
    config.addinivalue_line(
        'markers', 'disk_facts: a guest whose firmware only its own disk '
        'tells (no appliance metadata): it boots from the stored image '
        'only if the plugin read the disk')


@pytest.fixture(scope='session')
def boot_tools():
    """Fail (not skip) clearly when qemu-system, a firmware or a disk tool
    is missing: a skipped boot proof would look like a pass."""
    absent = machine.missing() + bootable.missing_tools()
    if absent:
        pytest.fail('missing %s: install them (bindep -b test, or '
                    './tools/run-tests)' % ', '.join(absent), pytrace=False)


class Guest:
    """A guest disk (raw) and the line it prints when it boots."""

    def __init__(self, name, path, line):
        self.name, self.path, self.line = name, path, line
        self._copies = {}

    def as_format(self, fmt, options=None):
        """This disk converted by qemu-img to ``fmt`` (cached)."""
        key = (fmt, tuple(sorted((options or {}).items())))
        if key not in self._copies:
            out = '%s.%s%s' % (os.path.splitext(self.path)[0], fmt,
                               ''.join('.%s-%s' % kv for kv in key[1]))
            self._copies[key] = imagefactory.convert(
                self.path, 'raw', out, fmt, options)
        return self._copies[key]


@pytest.fixture(scope='session')
def guests(tmp_path_factory, boot_tools, qemu_tools):
    """{'uefi': Guest, 'bios': Guest}; each line is new every session, so
    that no console left from another run can pass for this one."""
    d = tmp_path_factory.mktemp('guests')
    token = secrets.token_hex(4)
    made = {}
    for name, build in (('uefi', bootable.make_uefi_disk),
                        ('bios', bootable.make_bios_disk)):
        line = 'glance-convert %s guest %s booted' % (name, token)
        made[name] = Guest(name, build(d / ('%s.raw' % name), line), line)
    return made
