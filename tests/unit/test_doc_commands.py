"""The glance-convert command lines the documentation shows are valid.

Every ``glance-convert SUBCOMMAND ...`` in the README and in doc/source,
in code blocks and inline, is parsed by the command's own argument parser,
so a renamed option or sub-command cannot stay in the docs.  Synopsis
lines (with ``[...]``) and a sub-command named alone in prose are left
out; placeholders get example values.
"""

import glob
import os
import re
import shlex

import pytest

from glance_convert.cmd import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
COMMAND = re.compile(
    r'(?:^|[\s`=-])(?:[\w./-]*/)?glance-convert'
    r'((?:[ \t]+(?:inspect|convert|check-config|recover|metrics))\b'
    r'(?:[^\n`\\]|\\\n)*)', re.M)
PLACEHOLDERS = {'FMT': 'qcow2', 'FILE': 'image.img', 'OUT': 'out.img'}


def documented_commands():
    files = [os.path.join(ROOT, 'README.rst')] + sorted(glob.glob(
        os.path.join(ROOT, 'doc', 'source', '**', '*.rst'), recursive=True))
    found = []
    for path in files:
        with open(path) as f:
            text = f.read()
        # Inline literals may wrap; make each one line.
        text = re.sub(r'``(.+?)``', lambda m: '``%s``' % ' '.join(
            m.group(1).split()), text, flags=re.S)
        for match in COMMAND.finditer(text):
            line = re.sub(r'\\\n\s*', ' ', match.group(1)).strip()
            if '[' in line or '...' in line:
                continue
            line = re.split(r'\s+#|\s+\(|[.;,]\s*$', line)[0].strip()
            if len(line.split()) > 1:
                found.append((os.path.relpath(path, ROOT), line))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_full_command_lines():
    shown = {line.split()[0] for _, line in COMMANDS}
    assert {'inspect', 'check-config', 'recover'} <= shown


def parses(line):
    argv = [PLACEHOLDERS.get(word, word) for word in shlex.split(line)]
    try:
        main.build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


@pytest.mark.parametrize('where, line', COMMANDS)
def test_documented_command_parses(where, line):
    assert parses(line), '%s: "glance-convert %s" does not parse' % (
        where, line)


def test_a_renamed_option_would_be_caught(capsys):
    assert not parses('check-config --config-folder /etc/glance')
    assert not parses('inspect --disk-format qcow2')    # no FILE
    assert not parses('recover --dry-run --config-dir')
