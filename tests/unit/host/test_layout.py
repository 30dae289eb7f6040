"""The work-file naming rule and the one file remover."""

import logging
import os

import pytest

from glance_convert.host import layout
from tests.unit.host.hosttools import IMAGE


def test_a_work_file_is_a_name_the_layout_accepts(tmp_path):
    path = layout.work_file(str(tmp_path), IMAGE, 'part')
    assert os.path.basename(path) == IMAGE + '.glance-convert.part'
    lay = layout.Layout(str(tmp_path), None)
    assert lay.is_work_file(path)
    assert lay.check_work_file(IMAGE, path) == path


def test_remove_removes_and_ignores_what_is_gone(tmp_path):
    path = tmp_path / 'x'
    path.write_bytes(b'x')
    layout.remove(str(path))
    assert not path.exists()
    layout.remove(str(path))            # gone already
    layout.remove(None)                 # nothing to remove


def test_remove_logs_instead_of_hiding_the_error_being_cleaned_up(
        tmp_path, caplog):
    where = tmp_path / 'a-directory'
    where.mkdir()
    # What a plain unlink does on the way out of a failure: its own error
    # would replace the one the user must be shown.
    with pytest.raises(ValueError, match='the real reason'):
        try:
            raise ValueError('the real reason')
        finally:
            layout.remove(str(where))
    with pytest.raises(OSError):
        os.unlink(str(where))
    assert any(r.levelno == logging.ERROR and str(where) in r.getMessage()
               for r in caplog.records)
