"""Each hostile case's attack is real: shown on the unprotected path.

``test_hostile`` shows that the plugin refuses every hostile case.  This
module is its control: the same files go to plain ``qemu-img`` (no byte
checks, no sandbox, nothing of the plugin) and each case's proof from
``tests/hostile_proofs.py`` must hold there.  A case whose proof stops
holding (a qemu update that no longer follows a VMDK extent, say) fails
here and must be fixed or given another proof.
"""

import json
import os
import shutil
import subprocess

import pytest
from oslo_utils.imageutils import format_inspector

from glance_convert import formats
from glance_convert.pipeline import inspection
from tests import hostile_corpus
from tests import hostile_proofs
from tests.functional.pipeline import test_hostile

HOSTILE = test_hostile.HOSTILE
PROOFS = hostile_proofs.PROOFS


def test_every_hostile_case_has_a_proof():
    names = {c.name for c in HOSTILE}
    assert names - set(PROOFS) == set(), 'cases without a proof'
    assert set(PROOFS) - names == set(), 'proofs without a case'


def test_canaries_only_where_qemu_reads_them():
    # A canary the unprotected qemu-img never opens makes every "no canary
    # read" assertion about that case empty.
    for case in HOSTILE:
        reads = PROOFS[case.name] is hostile_proofs.READS_HOST_FILE
        assert bool(case.canary_path) == reads, case.name


def _unprotected_convert(case, tmp_path, trace=False):
    """Plain qemu-img convert of the upload as claimed, to raw.

    Returns (exit code, output path, the paths it opened and whether it
    called connect(), when ``trace``).
    """
    out = str(tmp_path / 'unprotected.raw')
    cmd = ['qemu-img', 'convert', '-f',
           formats.qemu_driver(case.claimed_format), '-O', 'raw',
           case.path, out]
    log = str(tmp_path / 'strace.log')
    if trace:
        cmd = ['strace', '-f', '-qq', '-e',
               'trace=open,openat,openat2,connect', '-o', log] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(case.path))
    opened, connected = set(), False
    if trace:
        with open(log) as f:
            for line in f:
                if ' connect(' in line and 'AF_UNIX' not in line:
                    connected = True
                elif 'open' in line and '"' in line:
                    opened.add(line.split('"')[1])
    return proc, out, opened, connected


def _detected(path):
    """The format oslo.utils' inspector finds, or why it finds none."""
    try:
        return format_inspector.detect_file_format(path).NAME
    except Exception as exc:   # several formats at once, for one
        return 'error: %s' % exc


def _holds(case, tmp_path):
    """Whether the case's proof holds on the unprotected path, and why."""
    proof = PROOFS[case.name]
    if proof is hostile_proofs.READS_HOST_FILE:
        proc, out, opened, _ = _unprotected_convert(case, tmp_path, True)
        named = os.path.join(os.path.dirname(case.path),
                             os.path.basename(case.canary_path))
        return case.canary_path in opened or named in opened, opened
    if proof is hostile_proofs.REACHES_NETWORK:
        proc, _, _, connected = _unprotected_convert(case, tmp_path, True)
        return connected, proc.stderr
    if proof is hostile_proofs.EXHAUSTS:
        info = subprocess.run(
            ['qemu-img', 'info', '--output=json', '-f',
             formats.qemu_driver(case.claimed_format), case.path],
            capture_output=True, text=True, timeout=60, check=True)
        size = json.loads(info.stdout)['virtual-size']
        limit = case.policy.get('max_virtual_size',
                                inspection.Policy().max_virtual_size)
        return size > limit, (size, limit)
    if proof is hostile_proofs.CONFUSES_FORMAT:
        found = _detected(case.path)
        if found != case.claimed_format:
            return True, found
        proc, out, _, _ = _unprotected_convert(case, tmp_path)
        made = _detected(out) if proc.returncode == 0 else None
        return made not in (None, 'raw'), (found, made)
    proc, _, _, _ = _unprotected_convert(case, tmp_path)
    if proof is hostile_proofs.ACCEPTED_SILENTLY:
        return proc.returncode == 0, proc.stderr
    assert proof is hostile_proofs.QEMU_REFUSES, proof
    return proc.returncode != 0, proc.stderr


@pytest.mark.skipif(not shutil.which('strace'), reason='strace missing')
@pytest.mark.parametrize('case', HOSTILE, ids=str)
def test_attack_is_real_without_the_plugin(case, tmp_path, qemu_tools):
    holds, evidence = _holds(case, tmp_path)
    assert holds, '%s: %s does not hold: %r' % (
        case.name, PROOFS[case.name].says, evidence)


def test_a_proof_that_does_not_hold_is_caught(tmp_path, qemu_tools):
    # The control of the control: a benign image given an attack's proof
    # fails its check, for every kind of proof.
    benign = next(c for c in test_hostile.BENIGN
                  if c.claimed_format == 'qcow2')
    for proof in (hostile_proofs.READS_HOST_FILE,
                  hostile_proofs.REACHES_NETWORK, hostile_proofs.EXHAUSTS,
                  hostile_proofs.CONFUSES_FORMAT,
                  hostile_proofs.QEMU_REFUSES):
        fake = hostile_corpus.Case(
            benign.name, benign.path, benign.claimed_format, 'reject',
            canary_path=str(tmp_path / 'never-named.bin'))
        PROOFS[fake.name] = proof
        try:
            work = tmp_path / proof.name
            work.mkdir()
            holds, _ = _holds(fake, work)
        finally:
            del PROOFS[fake.name]
        assert not holds, proof.name
