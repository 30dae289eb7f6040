"""qemu-img tuning chosen from the options, per output format."""

import dataclasses

import pytest

from glance_convert.flow import settings as settings_mod
from glance_convert.pipeline import conversion
from glance_convert.pipeline import inspection
from glance_convert.pipeline import qemu_img


@pytest.fixture
def settings(load_conf):
    def load(text):
        return settings_mod.from_conf(load_conf(text))
    return load


def _argv(s):
    return qemu_img.convert_args('in', 'raw', 'out', s.target,
                                 out_options=s.out_options, tuning=s.tuning,
                                 compressed=s.compressed)


@pytest.mark.parametrize('target,setting,expected', [
    # Unset: -W for qcow2 output only (the benchmark's choice).
    ('qcow2', None, True),
    ('raw', None, False),
    ('vmdk', None, False),
    ('vdi', None, False),
    ('vhd', None, False),
    # Set: the operator's choice for every output.
    ('qcow2', 'false', False),
    ('raw', 'true', True),
])
def test_out_of_order_default_is_per_target(settings, target, setting,
                                            expected):
    text = '[glance_convert]\noutput_format = %s\n' % target
    if setting is not None:
        text += 'convert_out_of_order = %s\n' % setting
    s = settings(text)
    assert s.tuning.out_of_order is expected
    assert ('-W' in _argv(s)) is expected


@pytest.mark.parametrize('setting', [None, 'true'])
def test_compressed_qcow2_output_is_never_out_of_order(settings, setting):
    text = ('[glance_convert]\noutput_format = qcow2\n'
            'qcow2_compression = zlib\n')
    if setting is not None:
        text += 'convert_out_of_order = %s\n' % setting
    argv = _argv(settings(text))
    assert '-c' in argv
    assert '-W' not in argv


def test_other_tuning_defaults_are_qemu_img_defaults(settings):
    argv = _argv(settings('[glance_convert]\noutput_format = raw\n'))
    assert argv[argv.index('-m') + 1] == '8'
    assert '-t' not in argv and '-T' not in argv


COMPRESSED = inspection.SourceFacts('qcow2', 'qcow2', 1 << 30, 1 << 28,
                                    compressed_clusters=100)


@pytest.mark.parametrize('target,compression,m,out_of_order', [
    ('raw', 'none', '16', True),
    ('qcow2', 'none', '16', True),
    # Compressed output: never -W, but the source still decompresses.
    ('qcow2', 'zstd', '16', False),
    # -W only where the benchmark measured it.
    ('vmdk', 'none', '16', False),
    ('vdi', 'none', '16', False),
])
def test_compressed_qcow2_source_tuning(settings, target, compression, m,
                                        out_of_order):
    s = settings('[glance_convert]\noutput_format = %s\n'
                 'qcow2_compression = %s\n' % (target, compression))
    tuning = conversion.source_tuning('qcow2', COMPRESSED, s)
    argv = qemu_img.convert_args('in', 'qcow2', 'out', target,
                                 out_options=s.out_options, tuning=tuning,
                                 compressed=s.compressed)
    assert argv[argv.index('-m') + 1] == m
    assert ('-W' in argv) is out_of_order


def test_only_sources_with_compressed_clusters_are_tuned(settings):
    s = settings('[glance_convert]\noutput_format = raw\n')
    plain = dataclasses.replace(COMPRESSED, compressed_clusters=0)
    assert conversion.source_tuning('qcow2', plain, s) == s.tuning
    vmdk = dataclasses.replace(COMPRESSED, claimed='vmdk', detected='vmdk')
    assert conversion.source_tuning('vmdk', vmdk, s) == s.tuning


def test_explicit_tuning_wins_for_compressed_sources(settings):
    s = settings('[glance_convert]\noutput_format = raw\n'
                 'convert_coroutines = 4\nconvert_out_of_order = false\n')
    assert conversion.source_tuning('qcow2', COMPRESSED, s) == s.tuning
    assert s.tuning.coroutines == 4 and not s.tuning.out_of_order
