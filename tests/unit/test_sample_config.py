"""The committed sample configuration is what the generator makes today."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, 'etc', 'glance-convert.conf.sample')
GENERATOR_CONF = os.path.join(ROOT, 'etc', 'oslo-config-generator',
                              'glance-convert.conf')
REGENERATE = ('oslo-config-generator --config-file '
              'etc/oslo-config-generator/glance-convert.conf')


def generate(output):
    if os.path.exists(GENERATOR_CONF):
        args = ['--config-file', GENERATOR_CONF]
    else:  # the same settings, should the generator config be missing
        args = ['--namespace', 'glance_convert', '--wrap-width', '79']
    subprocess.run([sys.executable, '-m', 'oslo_config.generator'] + args
                   + ['--output-file', str(output)], check=True, cwd=ROOT,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sample_is_up_to_date(tmp_path):
    fresh = tmp_path / 'glance-convert.conf.sample'
    generate(fresh)
    with open(SAMPLE) as f:
        committed = f.read()
    assert fresh.read_text() == committed, (
        '%s is out of date; regenerate it with: %s' % (SAMPLE, REGENERATE))


def test_sample_documents_every_option(tmp_path):
    from glance_convert import options
    with open(SAMPLE) as f:
        text = f.read()
    assert '[glance_convert]' in text
    for opt in options.ALL_OPTS:
        assert '\n#%s = ' % opt.name in text or '\n#%s =\n' % opt.name \
            in text, opt.name
