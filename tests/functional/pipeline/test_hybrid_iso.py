"""Installer ISOs: ISO 9660 plus an MBR or GPT, made by xorriso.

Every mainstream distribution's installer ISO is such a hybrid, so that it
also boots from a USB stick.  format_inspector reports two formats for it;
claimed as ``iso`` it must pass through, as Glance's own upload path lets
it, while an ISO hiding any other image format stays refused.
"""

import shutil
import subprocess

import pytest
from oslo_utils.imageutils import format_inspector as fi

from glance_convert import errors
from glance_convert.pipeline import checks
from glance_convert.pipeline import inspection
from tests import fakes
from tests import imagefactory

POLICY = inspection.Policy()
# xorriso options for the two layouts distributions use: an MBR partition
# table (Debian, Fedora) and a GPT (Ubuntu since 20.10).
LAYOUTS = {
    'mbr': ['-append_partition', '2', '0xef'],
    'gpt': ['-appended_part_as_gpt', '-append_partition', '2',
            'C12A7328-F81F-11D2-BA4B-00A0C93EC93B'],
}


@pytest.fixture(params=sorted(LAYOUTS))
def hybrid(request, tmp_path):
    if not shutil.which('xorriso'):
        pytest.fail('xorriso not found: install it (see bindep.txt)',
                    pytrace=False)
    tree = tmp_path / 'tree'
    tree.mkdir()
    (tree / 'README').write_text('an installer\n')
    esp = tmp_path / 'efi.img'
    esp.write_bytes(bytes(1440 * 1024))
    iso = tmp_path / ('hybrid-%s.iso' % request.param)
    # The EFI system partition image comes last, after its partition type.
    options = LAYOUTS[request.param] + [str(esp)]
    subprocess.run(['xorriso', '-as', 'mkisofs', '-quiet', '-o', str(iso),
                    '-V', 'INSTALLER', '-J', '-R'] + options + [str(tree)],
                   check=True, stderr=subprocess.DEVNULL)
    return str(iso)


def test_format_inspector_alone_refuses_the_hybrid(hybrid):
    """The failure this answers: two formats, so refused as ambiguous."""
    with pytest.raises(fi.ImageFormatError, match='Multiple formats'):
        fi.detect_file_format(hybrid)


def test_hybrid_claimed_as_iso_is_accepted(hybrid):
    facts = inspection.inspect_bytes(hybrid, 'iso', POLICY)
    assert facts.detected == 'iso'


@pytest.mark.parametrize('claimed', ['raw', 'qcow2'])
def test_hybrid_claimed_as_anything_else_is_still_refused(hybrid, claimed):
    with pytest.raises(errors.ImageRejected) as exc_info:
        inspection.inspect_bytes(hybrid, claimed, POLICY)
    assert checks.MULTIPLE.matches(exc_info.value.reason)


def test_hybrid_passes_through_the_task_untouched(hybrid, tmp_path):
    staging = tmp_path / 'staging'
    staging.mkdir()
    image = fakes.FakeImage('iso')
    staged = staging / image.image_id
    shutil.copyfile(hybrid, staged)
    task, _ = fakes.make_task(image, staging, target='raw')
    assert task.execute('file://%s' % staged) == 'file://%s' % staged
    assert (image.disk_format, image.container_format) == ('iso', 'bare')
    with open(staged, 'rb') as a, open(hybrid, 'rb') as b:
        assert a.read() == b.read()


def test_an_iso_hiding_a_qcow2_is_still_refused(hybrid, tmp_path,
                                                qemu_tools):
    """A qcow2 header in the MBR's boot code area (it fits: the partition
    table starts at byte 446) makes three formats: refused, claimed as iso
    or not."""
    qcow2 = imagefactory.make_image(tmp_path, 'qcow2')
    with open(qcow2, 'rb') as f:
        header = f.read(104)
    with open(hybrid, 'r+b') as f:
        f.write(header)
    for claimed in ('iso', 'qcow2'):
        with pytest.raises(errors.ImageRejected) as exc_info:
            inspection.inspect_bytes(hybrid, claimed, POLICY)
        assert checks.MULTIPLE.matches(exc_info.value.reason), \
            exc_info.value.reason
