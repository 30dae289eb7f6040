"""check-config, inspect, convert and glance-api agree on output_format.

The CLI once read glance-api.conf and then glance-image-import.conf, the
opposite of glance-api: with ``output_format`` set differently in each,
check-config reported one format while glance-api converted to the other.
Here the two files (and a ``glance-api.conf.d`` file, which glance-api
looks for in the home directory and /etc, not in its config directory;
Glance before 33 does not read it at all) disagree on purpose, and every
command must name the format a real glance-api converts an import to.
"""

import json
import os
import subprocess
import sys

import pytest

from glance_convert.flow import compat
from glance_convert.testing import localglance
from tests import imagefactory
from tests.integration import glancetest


class _Server(localglance.GlanceServer):
    """A GlanceServer whose glance-api runs with HOME set to ``home``."""

    def __init__(self, base_dir, home, **kwargs):
        super().__init__(base_dir, **kwargs)
        self.home = home

    @property
    def env(self):
        return dict(super().env, HOME=str(self.home))


def _cli(args, home, cwd):
    env = dict(os.environ, HOME=str(home))
    env.pop('OS_GLANCE_CONFIG_DIR', None)
    proc = subprocess.run(
        [sys.executable, '-m', 'glance_convert.cmd'] + [str(a) for a in args],
        cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=300)
    assert 'Traceback' not in proc.stderr, proc.stderr
    return proc


def _qemu_format(path):
    out = subprocess.run(['qemu-img', 'info', '--output=json', path],
                         check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout)['format']


@pytest.mark.parametrize('conf_d, expected', [
    (None, 'vmdk'),      # glance-api.conf is read after the import conf
    # and glance-api.conf.d after both, where this Glance reads it
    ('vdi', 'vdi' if compat.api_prog() else 'vmdk'),
])
def test_every_command_names_what_glance_api_converts_to(
        tmp_path, qemu_tools, conf_d, expected):
    home = tmp_path / 'home'
    home.mkdir()
    if conf_d:
        d = home / 'glance-api.conf.d'
        d.mkdir()
        (d / 'site.conf').write_text('[glance_convert]\noutput_format = %s\n'
                                     % conf_d)
    source = imagefactory.make_image(tmp_path, 'qcow2')
    server = _Server(str(tmp_path / 'glance'), home,
                     plugin_conf={'output_format': 'qcow2'},
                     extra_conf={'glance_convert': {'output_format': 'vmdk'}})
    try:
        server.start()
        with open(server.import_conf_file) as f:
            assert 'output_format = qcow2' in f.read()
        with open(server.api_conf) as f:
            assert 'output_format = vmdk' in f.read()

        _, image, task = glancetest.run_import(server, source, 'qcow2',
                                               'glance-direct')
        assert image['status'] == 'active', task
        converted_by_glance_api = image['disk_format']
    finally:
        server.stop()

    proc = _cli(['check-config', '--json', '--config-dir', server.conf_dir],
                home, tmp_path)
    [options] = [f for f in json.loads(proc.stdout)
                 if f['check'] == 'options']
    check_config_says = options['message'].split('output_format = ')[1]

    proc = _cli(['inspect', '--json', '--config-dir', server.conf_dir,
                 '--disk-format', 'qcow2', source], home, tmp_path)
    assert proc.returncode == 0, proc.stderr
    inspect_says = json.loads(proc.stdout)['plugin_action']

    out = tmp_path / 'converted'
    proc = _cli(['convert', '--config-dir', server.conf_dir, '--disk-format',
                 'qcow2', '-o', out, source], home, tmp_path)
    assert proc.returncode == 0, proc.stderr

    assert converted_by_glance_api == expected
    assert check_config_says == '%s).' % expected
    assert inspect_says == 'convert to %s' % expected
    assert _qemu_format(str(out)) == {'vhd': 'vpc'}.get(expected, expected)
