"""The describe phase: which copy of the guest it reads, and what it
returns, on disks built with the real tools and converted by qemu-img."""

import dataclasses
import os
import subprocess

import pytest

from glance_convert.guest import hints
from glance_convert.pipeline import describe
from tests import guestdisks
from tests.hostile_corpus import pipeline_settings

IMAGE_ID = 'd35c71be-0000-4000-8000-000000000023'
LINUX_UEFI = {'hw_firmware_type': 'uefi', 'hw_machine_type': 'q35',
              'os_type': 'linux', 'os_distro': 'debian', 'os_version': '12'}


@pytest.fixture(scope='module')
def copies(tmp_path_factory, qemu_tools):
    """{format: path} of one Debian UEFI guest."""
    d = tmp_path_factory.mktemp('describe')
    raw = str(d / 'guest.raw')
    guestdisks.linux_uefi(raw, str(d))
    made = {'raw': raw}
    # zstd-compressed clusters: what the qcow2 tables reader leaves to
    # qemu-img.
    made['qcow2c'] = str(d / 'guest-zstd.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', '-c',
                    '-o', 'compression_type=zstd', raw, made['qcow2c']],
                   check=True)
    for fmt, driver in (('qcow2', 'qcow2'), ('vdi', 'vdi'),
                        ('vhdx', 'vhdx'), ('ploop', 'parallels')):
        out = str(d / ('guest.' + fmt))
        subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', driver,
                        raw, out], check=True)
        made[fmt] = out
    return made


def _image(copies, name):
    fmt = 'qcow2' if name == 'qcow2c' else name
    return describe.Image(copies[name], fmt, os.path.getsize(copies['raw']))


def _describe(copies, output, source, tmp_path, settings=None, **kw):
    return describe.describe(
        _image(copies, output), _image(copies, source),
        settings=settings or pipeline_settings(
            'qcow2' if output == 'qcow2c' else output), image_id=IMAGE_ID,
        work_dir=str(tmp_path), **kw)


@pytest.mark.parametrize('output, source, read_from', [
    ('raw', 'vhdx', 'output'),
    ('vdi', 'raw', 'source'),
    ('qcow2', 'vhdx', 'output qcow2 (tables)'),
    ('vdi', 'qcow2', 'output vdi (tables)'),
    ('ploop', 'vhdx', 'output ploop (tables)'),
    ('qcow2c', 'vhdx', 'output qcow2 (qemu-img)'),
])
def test_the_cheapest_copy_is_read_and_says_the_same(copies, tmp_path,
                                                     output, source,
                                                     read_from):
    guest = _describe(copies, output, source, tmp_path)
    assert guest.read_from == read_from
    assert {k: v for k, v in guest.properties.items()
            if k != describe.RECORD} == LINUX_UEFI
    assert 'os-release' in guest.properties[describe.RECORD]
    # The qemu-img dd scratch file never stays.
    assert os.listdir(tmp_path) == []


def test_what_the_user_set_is_left_out(copies, tmp_path):
    guest = _describe(copies, 'raw', 'raw', tmp_path, user_properties={
        'os_distro': 'ubuntu', describe.RECORD: 'mine'})
    assert 'os_distro' not in guest.properties
    assert describe.RECORD not in guest.properties
    assert guest.decided['os_distro'] == 'debian'
    assert guest.properties['hw_firmware_type'] == 'uefi'


def test_the_options_turn_each_part_off(copies, tmp_path):
    settings = pipeline_settings('raw')
    off = dataclasses.replace(settings, guest_properties=False)
    assert _describe(copies, 'raw', 'raw', tmp_path, off) is None
    # Without the disk, only the appliance's hints decide.
    ovf = hints.Hints('ovf (VMware)', firmware='bios', os_type='linux')
    no_disk = dataclasses.replace(settings, guest_from_disk=False)
    guest = _describe(copies, 'raw', 'raw', tmp_path, no_disk,
                      appliance=ovf)
    assert guest.facts is None and guest.read_from == ''
    assert guest.decided == {'hw_firmware_type': 'bios', 'os_type': 'linux'}
    # With the disk, the disk wins over the appliance.
    guest = _describe(copies, 'raw', 'raw', tmp_path, settings,
                      appliance=ovf)
    assert guest.decided['hw_firmware_type'] == 'uefi'
    assert 'ovf (VMware) said bios' in guest.record
    no_hints = dataclasses.replace(settings, guest_from_appliance=False)
    guest = _describe(copies, 'raw', 'raw', tmp_path, no_hints,
                      appliance=ovf)
    assert 'said bios' not in guest.record


def test_an_iso_gets_no_record(tmp_path):
    iso = tmp_path / 'x.iso'
    iso.write_bytes(bytes(64 * 1024))
    image = describe.Image(str(iso), 'iso', 0)
    guest = describe.describe(image, image, settings=pipeline_settings('raw'),
                              image_id=IMAGE_ID, work_dir=str(tmp_path))
    assert guest.properties == {}
