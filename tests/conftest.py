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
