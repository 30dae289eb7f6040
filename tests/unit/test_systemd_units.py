"""The systemd units shipped in etc/systemd/ for the look-out service and
its timer alternative (doc/source/admin/recovery.rst)."""

import configparser
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

UNITS = pathlib.Path(__file__).parents[2] / 'etc' / 'systemd'
SERVICE = 'glance-convert-recover.service'
ONCE = 'glance-convert-recover-once.service'
TIMER = 'glance-convert-recover.timer'
#: The docs' example path of glance-api's environment.
SHIPPED_COMMAND = '/opt/glance/bin/glance-convert'


def _unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def test_the_service_follows_and_the_timer_runs_recover_often():
    service = _unit(SERVICE)['Service']
    assert service['ExecStart'].split()[1:3] == ['recover', '--follow']
    assert service['Restart'] == 'always'
    once = _unit(ONCE)['Service']
    assert once['Type'] == 'oneshot'
    assert once['ExecStart'].split()[1:] == [
        'recover', '--if-needed', '--config-dir', '/etc/glance']
    timer = _unit(TIMER)['Timer']
    assert timer['Unit'] == ONCE
    # Released within 10 s: the period plus a run that imports Glance.
    assert int(timer['OnUnitActiveSec'].rstrip('s')) <= 5
    for name in (SERVICE, ONCE):
        # Glance stages under /tmp by default: a private /tmp hides it.
        assert 'PrivateTmp' not in _unit(name)['Service'], name


def test_systemd_accepts_the_units(tmp_path):
    analyze = shutil.which('systemd-analyze')
    command = shutil.which('glance-convert') or os.path.join(
        os.path.dirname(sys.executable), 'glance-convert')
    if not analyze or not os.path.exists(command):
        pytest.skip('needs systemd-analyze and the glance-convert command')
    for name in (SERVICE, ONCE, TIMER):
        text = (UNITS / name).read_text()
        (tmp_path / name).write_text(text.replace(SHIPPED_COMMAND, command))
    result = subprocess.run(
        [analyze, 'verify', SERVICE, ONCE, TIMER], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120)
    # It exits 0 on values it ignores: any word it says is a fault.
    assert (result.returncode, result.stdout) == (0, ''), result.stdout
