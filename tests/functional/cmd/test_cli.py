"""``glance-convert`` run as a subprocess on real image files."""

import json
import os
import pty
import subprocess
import sys

import pytest

from glance_convert.cmd import convert as convert_cmd
from glance_convert.cmd import common as cli
from glance_convert.pipeline import conversion
from glance_convert import errors
from glance_convert import formats
from glance_convert.host import layout
from glance_convert.host import watch
from tests import fakes
from tests import imagefactory

MiB = 1024 * 1024


def run(args, cwd, config_dir=None, stderr=subprocess.PIPE):
    """Run the CLI with a hermetic configuration (an empty dir by default).
    """
    if config_dir is None:
        config_dir = os.path.join(cwd, 'no-config')
        os.makedirs(config_dir, exist_ok=True)
    if args and args[0] != '--help':
        args = list(args) + ['--config-dir', str(config_dir)]
    env = dict(os.environ)
    env.pop('OS_GLANCE_CONFIG_DIR', None)
    return subprocess.run(
        [sys.executable, '-m', 'glance_convert.cmd'] + [str(a) for a in args],
        cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300)


@pytest.fixture
def images(tmp_path):
    d = tmp_path / 'images'
    d.mkdir()
    return {fmt: imagefactory.make_image(d, fmt)
            for fmt in ('raw', 'qcow2', 'vmdk', 'vhd', 'vhdx')}


@pytest.fixture
def backed(tmp_path):
    """A qcow2 whose backing file is a host file: must be refused."""
    path = tmp_path / 'images-evil' / 'backed.qcow2'
    path.parent.mkdir()
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw',
                    '-b', '/etc/hostname', str(path), '1M'], check=True)
    return str(path)


# --- inspect -----------------------------------------------------------------

def test_inspect_json_reports_sizes_verdict_and_space(tmp_path, images):
    proc = run(['inspect', images['qcow2'], '--json'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report['detected_format'] == 'qcow2'
    assert report['claimed_format'] == 'qcow2'
    assert report['virtual_size'] == imagefactory.DEFAULT_SIZE
    assert report['file_size'] == os.path.getsize(images['qcow2'])
    assert report['verdict'] == 'accepted'
    assert report['plugin_action'] == 'convert to raw'
    assert set(report['space_needed']) == set(formats.CONVERTIBLE)
    # Sparse raw: the allocated data (measured), not the virtual size.
    data = sum(length for _o, length, _p in imagefactory.DEFAULT_PATTERNS)
    assert data <= report['space_needed']['raw'] < imagefactory.DEFAULT_SIZE
    for need in report['space_needed'].values():
        assert need >= os.path.getsize(images['qcow2']) // 2


def test_inspect_text(tmp_path, images):
    proc = run(['inspect', images['vhd']], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Detected format:  vhd' in proc.stdout
    assert 'Verdict:          accepted' in proc.stdout
    assert 'Space needed to convert to:' in proc.stdout


def test_inspect_detects_vhdx(tmp_path, images):
    proc = run(['inspect', images['vhdx'], '--json'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report['detected_format'] == report['claimed_format'] == 'vhdx'
    assert report['virtual_size'] == imagefactory.DEFAULT_SIZE
    assert report['verdict'] == 'accepted'
    assert 'the VHDX has no log to replay' in report['reasons']
    assert 'qemu-img check found no corruption' in report['reasons']


def test_inspect_vhdx_with_a_log_is_refused(tmp_path, images):
    from tests import hostile_corpus
    path = hostile_corpus.vhdx_needing_log_replay(
        str(tmp_path / 'log.vhdx'), images['qcow2'])
    proc = run(['inspect', path, '--json'], tmp_path)
    assert proc.returncode == cli.EXIT_REJECTED, proc.stderr
    report = json.loads(proc.stdout)
    assert report['detected_format'] == 'vhdx'
    assert report['reasons'] == [
        'Image rejected: the VHDX image was not closed cleanly: its log '
        'holds writes that must be replayed first']


def test_inspect_wrong_claim_is_refused_with_exit_2(tmp_path, images):
    proc = run(['inspect', images['vmdk'], '--disk-format', 'qcow2',
                '--json'], tmp_path)
    assert proc.returncode == cli.EXIT_REJECTED
    report = json.loads(proc.stdout)
    assert report['verdict'] == 'rejected'
    assert report['detected_format'] == 'vmdk'
    assert report['space_needed'] == {}
    assert report['reasons'][0].startswith('Image rejected: ')


def test_inspect_hostile_image_gives_the_plugins_reason(tmp_path, backed):
    proc = run(['inspect', backed, '--json'], tmp_path)
    assert proc.returncode == cli.EXIT_REJECTED, proc.stderr
    report = json.loads(proc.stdout)
    with pytest.raises(errors.ImageRejected) as exc_info:
        conversion.inspect_source(backed, 'qcow2', fakes.settings())
    assert report['reasons'] == [str(exc_info.value)]
    assert 'backing file' in report['reasons'][0]


def test_inspect_iso_is_checked_and_passes_through(tmp_path):
    iso = tmp_path / 'x.iso'
    iso.write_bytes(b'\0' * 32768 + b'\x01CD001\x01' + b'\0' * 4088)
    proc = run(['inspect', iso, '--disk-format', 'iso', '--json'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report['verdict'] == 'accepted'
    assert report['plugin_action'] == 'pass through (not converted)'
    assert 'the data is a iso image, as claimed' in report['reasons']
    # Only the bytes are judged: qemu-img never reads an unconverted format.
    assert not [r for r in report['reasons'] if 'qemu-img' in r]
    assert report['space_needed'] == {}


def test_inspect_refuses_an_unconverted_format_like_the_plugin(tmp_path,
                                                               backed):
    """A qcow2 with a backing file, claimed as iso: stored unconverted, yet
    refused, by inspect (which once said "unchecked") and the plugin."""
    proc = run(['inspect', backed, '--disk-format', 'iso', '--json'],
               tmp_path)
    assert proc.returncode == cli.EXIT_REJECTED, proc.stderr
    report = json.loads(proc.stdout)
    with pytest.raises(errors.ImageRejected) as exc_info:
        conversion.convert_image(backed, 'iso', image_id='x',
                                 work_dir=str(tmp_path),
                                 settings=fakes.settings())
    assert report['reasons'] == [str(exc_info.value)]
    assert 'not iso as claimed' in report['reasons'][0]


def test_inspect_reasons_name_the_checks_that_ran(tmp_path, images):
    """qemu-img check runs for qcow2, not for vhd (qemu has none)."""
    ran = {}
    for fmt in ('qcow2', 'vhd'):
        proc = run(['inspect', images[fmt], '--json'], tmp_path)
        assert proc.returncode == 0, proc.stderr
        ran[fmt] = json.loads(proc.stdout)['reasons']
    assert 'qemu-img check found no corruption' in ran['qcow2']
    assert 'qemu-img check found no corruption' not in ran['vhd']
    assert 'no backing file' in ran['vhd']


def test_inspect_missing_file_is_a_clear_error(tmp_path):
    proc = run(['inspect', tmp_path / 'nope.qcow2'], tmp_path)
    assert proc.returncode == cli.EXIT_FAILED
    assert 'no such file' in proc.stderr
    assert 'Traceback' not in proc.stderr


# --- convert -----------------------------------------------------------------

@pytest.mark.parametrize('source,target', [('qcow2', 'raw'),
                                           ('vhd', 'qcow2'),
                                           ('raw', 'vmdk'),
                                           ('vmdk', 'vhd'),
                                           ('vhdx', 'qcow2'),
                                           ('vhd', 'vhdx')])
def test_convert(tmp_path, images, source, target):
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    out = out_dir / ('disk.' + target)
    proc = run(['convert', images[source], '--disk-format', source,
                '--to', target, '-o', out], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Converted' in proc.stdout
    assert imagefactory.info(out, target)['format'] == \
        {'vhd': 'vpc'}.get(target, target)
    assert imagefactory.compare(out, target, images[source], source)
    assert os.listdir(out_dir) == ['disk.' + target]  # no work files left


def test_convert_uses_the_configured_options(tmp_path, images):
    config_dir = tmp_path / 'etc'
    config_dir.mkdir()
    (config_dir / 'glance-api.conf').write_text(
        '[glance_convert]\noutput_format = vhd\nvhd_subformat = fixed\n'
        'vhd_force_size = true\n')
    src = imagefactory.make_image(tmp_path, 'qcow2', name='odd.qcow2',
                                  size=4 * MiB + 512)
    proc = run(['convert', src, '--disk-format', 'qcow2'], tmp_path,
               config_dir=config_dir)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / 'odd.vhd'  # default name, in the current directory
    assert imagefactory.info(out, 'vhd')['virtual-size'] == 5 * MiB
    assert os.path.getsize(out) == 5 * MiB + 512


def test_convert_refusal_exit_2_same_sentence_no_output(tmp_path, backed):
    out = tmp_path / 'out.raw'
    proc = run(['convert', backed, '--disk-format', 'qcow2', '--to', 'raw',
                '-o', out], tmp_path)
    assert proc.returncode == cli.EXIT_REJECTED
    with pytest.raises(errors.ImageRejected) as exc_info:
        conversion.inspect_source(backed, 'qcow2', fakes.settings())
    assert proc.stderr.splitlines()[0] == \
        'glance-convert: %s' % exc_info.value
    assert not out.exists()
    assert [n for n in os.listdir(tmp_path) if 'glance-convert' in n] == []


def test_convert_mismatched_claim_is_refused(tmp_path, images):
    proc = run(['convert', images['vmdk'], '--disk-format', 'raw',
                '--to', 'qcow2',
                '-o', tmp_path / 'x.qcow2'], tmp_path)
    assert proc.returncode == cli.EXIT_REJECTED
    assert proc.stderr.startswith('glance-convert: Image rejected: ')
    assert not (tmp_path / 'x.qcow2').exists()


def test_convert_will_not_overwrite_without_force(tmp_path, images):
    out = tmp_path / 'taken.raw'
    out.write_bytes(b'keep me')
    args = ['convert', images['qcow2'], '--disk-format', 'qcow2', '--to',
            'raw', '-o', out]
    proc = run(args, tmp_path)
    assert proc.returncode == cli.EXIT_FAILED
    assert 'use --force' in proc.stderr
    assert out.read_bytes() == b'keep me'
    proc = run(args + ['--force'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert imagefactory.compare(out, 'raw', images['qcow2'], 'qcow2')


def test_convert_same_format_passes_through(tmp_path, images):
    out = tmp_path / 'same.qcow2'
    proc = run(['convert', images['qcow2'], '--disk-format', 'qcow2',
                '--to', 'qcow2', '-o', out], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'nothing written' in proc.stdout
    assert not out.exists()


def test_convert_invalid_options_exit_1(tmp_path, images):
    config_dir = tmp_path / 'etc'
    config_dir.mkdir()
    (config_dir / 'glance-api.conf').write_text(
        '[glance_convert]\npreallocation = metadata\n')
    proc = run(['convert', images['qcow2'], '--disk-format', 'qcow2',
                '--to', 'raw', '-o', tmp_path / 'o.raw'], tmp_path,
               config_dir=config_dir)
    assert proc.returncode == cli.EXIT_FAILED
    assert 'preallocation = metadata' in proc.stderr
    assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('args', [
    [],
    ['frobnicate'],
    ['convert'],
    ['convert', 'x', '--to', 'aki', '--disk-format', 'raw'],
])
def test_usage_errors_exit_64(tmp_path, args):
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, '-m', 'glance_convert.cmd']
                          + args, cwd=str(tmp_path), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)
    assert proc.returncode == cli.EXIT_USAGE
    assert 'usage:' in proc.stderr


def test_unsupported_claimed_format(tmp_path, images):
    proc = run(['convert', images['raw'], '--disk-format', 'iso', '--to',
                'raw'], tmp_path)
    assert proc.returncode == cli.EXIT_FAILED
    assert 'converts only' in proc.stderr


def test_installed_console_script(tmp_path, images):
    script = os.path.join(os.path.dirname(sys.executable), 'glance-convert')
    if not os.path.exists(script):
        pytest.skip('package not installed in this environment')
    proc = subprocess.run([script, '--help'], stdout=subprocess.PIPE,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for command in ('inspect', 'convert', 'check-config'):
        assert command in proc.stdout


def test_progress_bar_on_a_terminal(tmp_path):
    """On a TTY the bar is drawn, from 0% to the source's allocated size."""
    src = imagefactory.make_image(tmp_path, 'qcow2', name='big.qcow2',
                                  size=16 * MiB, pattern_offsets=[
                                      (i * MiB, MiB, 0x11 + i)
                                      for i in range(0, 16, 2)])
    out = tmp_path / 'big.raw'
    allocated = os.stat(src).st_blocks * 512
    config_dir = tmp_path / 'no-config'
    config_dir.mkdir()
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'glance_convert.cmd', 'convert', src,
             '--disk-format', 'qcow2', '--to', 'raw', '-o', str(out),
             '--config-dir', str(config_dir)],
            cwd=str(tmp_path), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = None
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.communicate(timeout=300)
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert imagefactory.compare(out, 'raw', src, 'qcow2')
    tty_text = b''.join(chunks).decode()
    assert tty_text.startswith('\r[')
    assert '  0%' in tty_text
    assert tty_text.rstrip('\r\n').endswith(
        '[%s] 100%%  %.1f / %.1f MiB read'
        % ('#' * 30, allocated / MiB, allocated / MiB))
    assert tty_text.endswith('\n')
    assert 'Traceback' not in tty_text


def test_progress_bar_rendering():
    class Stream:
        def __init__(self):
            self.text = ''

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    stream = Stream()
    bar = convert_cmd.ProgressBar(total=10 * MiB, stream=stream, width=10)
    bar.update(5 * MiB)
    assert stream.text == '\r[#####-----]  50%  5.0 / 10.0 MiB read'
    bar.update(20 * MiB)  # reads beyond the allocated size are capped
    assert stream.text.endswith('[##########] 100%  10.0 / 10.0 MiB read')
    bar.finish()
    assert stream.text.endswith('\n')


# --- check-config ------------------------------------------------------------

def test_check_config_good(tmp_path):
    staging = tmp_path / 'staging'
    staging.mkdir()
    config_dir = tmp_path / 'etc'
    config_dir.mkdir()
    (config_dir / 'glance-api.conf').write_text(
        '[DEFAULT]\nnode_staging_uri = file://%s\n[wsgi]\n'
        'python_interpreter = %s\n[oslo_concurrency]\nlock_path = %s\n'
        '[glance_store]\nfilesystem_thin_provisioning = True\n'
        % (staging, sys.executable, staging))
    (config_dir / 'glance-image-import.conf').write_text(
        '[image_import_opts]\nimage_import_plugins = [glance_convert]\n')
    (config_dir / 'policy.yaml').write_text('"upload_image": "role:admin"\n')
    proc = run(['check-config'], tmp_path, config_dir=config_dir)
    assert proc.returncode == 0, proc.stdout
    assert '[ OK ] qemu-img: qemu-img ' in proc.stdout
    if '0 warning(s)' not in proc.stdout:  # unless the shipped timer runs
        assert '0 error(s), 1 warning(s).' in proc.stdout
        assert '[WARN] self-healing: No glance-convert recover --follow ' \
            'runs' in proc.stdout

    # With the look-out service of this work area running, all is well.
    with watch.following(layout.Layout(str(staging), str(staging))):
        proc = run(['check-config'], tmp_path, config_dir=config_dir)
        assert '0 error(s), 0 warning(s).' in proc.stdout, proc.stdout
        assert '[ OK ] self-healing: glance-convert recover --follow ' \
            'runs' in proc.stdout
        proc = run(['check-config', '--json'], tmp_path,
                   config_dir=config_dir)
    found = json.loads(proc.stdout)
    assert {f['severity'] for f in found} == {'ok'}


def test_check_config_broken(tmp_path):
    config_dir = tmp_path / 'etc'
    config_dir.mkdir()
    (config_dir / 'glance-api.conf').write_text(
        '[DEFAULT]\nnode_staging_uri = file://%s\n[wsgi]\n'
        'python_interpreter = /nonexistent/python\n[glance_convert]\n'
        'output_format = raw\npreallocation = metadata\n'
        % (tmp_path / 'missing-staging'))
    proc = run(['check-config'], tmp_path, config_dir=config_dir)
    assert proc.returncode == cli.EXIT_FAILED
    fails = [line for line in proc.stdout.splitlines()
             if line.startswith('[FAIL]')]
    checks = sorted(line.split(']')[1].split(':')[0].strip()
                    for line in fails)
    assert checks == ['options', 'plugin', 'work_dir'], proc.stdout
    assert proc.stdout.count('fix: ') >= len(fails)


def test_check_config_missing_dir(tmp_path):
    proc = run(['check-config'], tmp_path, config_dir=tmp_path / 'nothing')
    assert proc.returncode == cli.EXIT_FAILED
    assert 'does not exist' in proc.stdout
