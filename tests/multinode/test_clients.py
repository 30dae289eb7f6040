"""Imports through the clients operators and users run (issue 14).

``glance`` (python-glanceclient) and ``openstack`` (python-openstackclient)
talk to a glance-api node found through a real Keystone's catalog, with
Keystone credentials in ``OS_*`` variables, exactly as a user's shell has
them.  The command lines below are the ones the documentation gives, run
as written (split like a shell would, in a directory holding the named
file); a change here must be made in the docs too.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import fileserver
from tests import imagefactory
from tests.multinode import nodes
from tests.unit.pipeline import test_ova

pytestmark = pytest.mark.postgres

IMAGE_FILE = 'cirros-0.6.2-x86_64-disk.img'

# -- the documented command lines, run exactly as written ------------------
# Placeholders in <> are filled in by the tests.
GLANCE_DIRECT = (
    'glance image-create-via-import --name cirros --disk-format qcow2 '
    '--container-format bare --import-method glance-direct '
    '--file cirros-0.6.2-x86_64-disk.img')
GLANCE_WEB = (
    'glance image-create-via-import --name cirros --disk-format qcow2 '
    '--container-format bare --import-method web-download --uri <URL>')
GLANCE_SHOW = 'glance image-show <ID>'
GLANCE_TASKS = 'glance image-tasks <ID>'
OPENSTACK_DIRECT = (
    'openstack image create --import --disk-format qcow2 '
    '--container-format bare --file cirros-0.6.2-x86_64-disk.img cirros')
OPENSTACK_CREATE = (
    'openstack image create --disk-format qcow2 --container-format bare '
    'cirros')
OPENSTACK_WEB = 'openstack image import --method web-download --uri <URL> <ID>'
OPENSTACK_SHOW = 'openstack image show <ID>'
# The operator (admin: Glance's tasks API is admin-only) lists the
# failed tasks and reads one (the import task's type, api_image_import, is
# not a filter the API takes); a user has glance image-tasks.
OPENSTACK_TASKS = 'openstack image task list --status failure'
OPENSTACK_TASK_SHOW = 'openstack image task show <TASK_ID>'
# The user guide's compressed upload and OVA.
COMPRESSED_FILE = 'fedora-coreos.qcow2.xz'
# (openstack image create refuses --container-format compressed.)
GLANCE_COMPRESSED = (
    'glance image-create-via-import --name fcos --disk-format qcow2 '
    '--container-format compressed '
    '--property glance_convert_source_sha256=<SHA256> '
    '--import-method glance-direct --file fedora-coreos.qcow2.xz')
OVA_FILE = 'appliance.ova'
OPENSTACK_OVA = (
    'openstack image create --import --disk-format vmdk '
    '--container-format ova --file appliance.ova appliance')

VERIFIED = (GLANCE_DIRECT, GLANCE_WEB, GLANCE_SHOW, GLANCE_TASKS,
            OPENSTACK_DIRECT, OPENSTACK_CREATE, OPENSTACK_WEB,
            OPENSTACK_SHOW, OPENSTACK_TASKS, OPENSTACK_TASK_SHOW,
            GLANCE_COMPRESSED, OPENSTACK_OVA)

REFUSED = 'Image rejected: qcow2 images with a backing file are not allowed'
TIMEOUT = 300
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def fill(command, **values):
    for key, value in values.items():
        command = command.replace('<%s>' % key.upper(), value)
    assert '<' not in command, command
    return command


def documented_commands(paths):
    """Client command lines in the literal blocks of reStructuredText files.

    Backslash continuations are joined, a ``$`` prompt and a trailing
    ``# comment`` dropped, whitespace collapsed and every placeholder
    (``<IMAGE>``, ``ID``) written ``<X>``.
    """
    found = []
    for path in paths:
        with open(path) as f:
            lines = f.read().splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            text = line.strip()
            if text.startswith('$ '):
                text = text[2:]
            i += 1
            if not (line[:1].isspace()
                    and re.match(r'(glance|openstack) \S', text)):
                continue
            while text.endswith('\\') and i < len(lines):
                text = text[:-1] + ' ' + lines[i].strip()
                i += 1
            found.append((path, _normal(text.split(' #')[0])))
    return found


def _normal(command):
    # Placeholders: <ANYTHING> or a bare upper-case word such as ID.
    return ' '.join('<X>' if re.fullmatch(r'<[^>]*>|[A-Z][A-Z_]*', word)
                    else word for word in command.split())


def test_documented_client_commands_are_the_verified_ones():
    docs = [os.path.join(ROOT, 'README.rst')]
    for root, _dirs, names in os.walk(os.path.join(ROOT, 'doc', 'source')):
        docs += [os.path.join(root, n) for n in names if n.endswith('.rst')]
    found = documented_commands([d for d in docs if os.path.isfile(d)])
    assert found, 'the docs show no glance or openstack command'
    verified = {_normal(c) for c in VERIFIED}
    unverified = ['%s: %s' % (os.path.relpath(p, ROOT), c)
                  for p, c in found if c not in verified]
    assert not unverified, (
        'client commands in the docs that tests/multinode/test_clients.py '
        'does not run (add them to VERIFIED and a test):\n'
        + '\n'.join(unverified))


def test_documented_commands_parser(tmp_path):
    doc = tmp_path / 'x.rst'
    doc.write_text('Run::\n\n  $ glance image-show <IMAGE>   # status\n'
                   '  glance image-create-via-import --name a \\\n'
                   '      --file f\n  openstack image task show TASK_ID\n'
                   'glance prose is not a command\n')
    assert [c for _, c in documented_commands([str(doc)])] == [
        'glance image-show <X>',
        'glance image-create-via-import --name a --file f',
        'openstack image task show <X>']


@pytest.fixture(scope='module')
def client_node(cluster, keystone_server):
    """A node converting to raw, the one image endpoint in the catalog."""
    node = cluster.start_node('clients', plugin_conf={
        'output_format': 'raw', 'reserved_space_mb': 0})
    keystone_server.admin().register_service(
        'image', 'glance', node.url, keystone_server.region)
    return node


def _env(keystone_server, user, password, project):
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    env.pop('PYTHONPATH', None)
    # The clients installed next to this Python (the tox env's bin).
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get(
        'PATH', '')
    env.update({
        'OS_AUTH_URL': keystone_server.url,
        'OS_IDENTITY_API_VERSION': '3',
        'OS_USERNAME': user,
        'OS_PASSWORD': password,
        'OS_PROJECT_NAME': project,
        'OS_USER_DOMAIN_NAME': 'Default',
        'OS_PROJECT_DOMAIN_NAME': 'Default',
        'OS_REGION_NAME': keystone_server.region,
        'OS_INTERFACE': 'public',
    })
    return env


@pytest.fixture(scope='module')
def user_env(keystone_server, client_node):
    return _env(keystone_server, nodes.DEMO_USER, nodes.DEMO_PASSWORD,
                nodes.DEMO_PROJECT)


@pytest.fixture(scope='module')
def operator_env(keystone_server, client_node):
    return _env(keystone_server, 'admin', keystone_server.admin_password,
                'admin')


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory, qemu_tools):
    """IMAGE_FILE (a qcow2) and backed.qcow2 (with a backing file)."""
    d = tmp_path_factory.mktemp('client-images')
    source = imagefactory.make_image(str(d), 'qcow2')
    os.rename(source, str(d / IMAGE_FILE))
    base = str(d / 'base.raw')
    imagefactory.make_raw(base)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base,
                    '-F', 'raw', str(d / 'backed.qcow2')], check=True)
    with open(d / COMPRESSED_FILE, 'wb') as f:
        subprocess.run(['xz', '-c', '-T1', str(d / IMAGE_FILE)], stdout=f,
                       check=True)
    build = d / 'ova-build'
    build.mkdir()
    disk = imagefactory.make_image(str(build), 'vmdk', name='disk1.vmdk',
                                   options={'subformat': 'streamOptimized'})
    imagefactory.make_ova(build, test_ova.ovf_text(
        size=os.path.getsize(disk)), disk, out=d / OVA_FILE,
        tar_format='gnu')
    return d


@pytest.fixture(scope='module')
def web(image_dir):
    with fileserver.FileServer(str(image_dir)) as server:
        yield 'http://127.0.0.1:%d/' % server.port


def run(command, env, cwd):
    """Run a documented command line; return its stdout.

    Its stdin is a terminal, as in a user's shell: glance reads image data
    from a stdin that is not one (and then refuses ``--file``).
    """
    controller, terminal = os.openpty()
    try:
        proc = subprocess.run(shlex.split(command), env=env, cwd=str(cwd),
                              stdin=terminal, capture_output=True,
                              text=True, timeout=TIMEOUT)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 0, (
        '%s: exit %d\n%s\n%s' % (command, proc.returncode, proc.stdout,
                                 proc.stderr))
    return proc.stdout


def table(text):
    """``{field: value}`` of a client's two-column table."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r'^\|\s*(\S+)\s*\|\s*(.*?)\s*\|$', line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _wait(node, image_id):
    image, task = node.client().wait_for_import(image_id, TIMEOUT)
    return image, task


def _check_converted(node, env, cwd, image_id, show):
    image, task = _wait(node, image_id)
    assert task['status'] == 'success', task
    out = run(fill(show, id=image_id), env, cwd)
    return image, out


def test_glance_direct_with_glanceclient(client_node, user_env, image_dir):
    out = run(GLANCE_DIRECT, user_env, image_dir)
    image_id = table(out)['id']
    _, shown = _check_converted(client_node, user_env, image_dir, image_id,
                                GLANCE_SHOW)
    rows = table(shown)
    assert rows['status'] == 'active'
    assert rows['disk_format'] == 'raw'
    assert rows['glance_convert_source_format'] == 'qcow2'
    tasks = run(fill(GLANCE_TASKS, id=image_id), user_env, image_dir)
    assert 'success' in tasks


def test_web_download_with_glanceclient(client_node, user_env, image_dir,
                                        web):
    out = run(fill(GLANCE_WEB, url=web + IMAGE_FILE), user_env, image_dir)
    image_id = table(out)['id']
    _, shown = _check_converted(client_node, user_env, image_dir, image_id,
                                GLANCE_SHOW)
    rows = table(shown)
    assert (rows['status'], rows['disk_format']) == ('active', 'raw')
    assert rows['glance_convert_source_format'] == 'qcow2'


def _osc_image(env, cwd, image_id):
    out = run(fill(OPENSTACK_SHOW, id=image_id) + ' -f json', env, cwd)
    image = json.loads(out)
    props = image.get('properties') or {}
    return image, props


def test_glance_direct_with_openstackclient(client_node, user_env,
                                            image_dir):
    out = run(OPENSTACK_DIRECT + ' -f json', user_env, image_dir)
    image_id = json.loads(out)['id']
    _wait(client_node, image_id)
    image, props = _osc_image(user_env, image_dir, image_id)
    assert (image['status'], image['disk_format']) == ('active', 'raw')
    assert props['glance_convert_source_format'] == 'qcow2'


def test_web_download_with_openstackclient(client_node, user_env, image_dir,
                                           web):
    out = run(OPENSTACK_CREATE + ' -f json', user_env, image_dir)
    image_id = json.loads(out)['id']
    run(fill(OPENSTACK_WEB, url=web + IMAGE_FILE, id=image_id), user_env,
        image_dir)
    _wait(client_node, image_id)
    image, props = _osc_image(user_env, image_dir, image_id)
    assert (image['status'], image['disk_format']) == ('active', 'raw')
    assert props['glance_convert_source_format'] == 'qcow2'


def test_compressed_upload_with_glanceclient(client_node, user_env,
                                             image_dir):
    sha = imagefactory.sha256_of(str(image_dir / COMPRESSED_FILE))
    out = run(fill(GLANCE_COMPRESSED, sha256=sha), user_env, image_dir)
    image_id = table(out)['id']
    _wait(client_node, image_id)
    image, props = _osc_image(user_env, image_dir, image_id)
    assert (image['status'], image['disk_format'],
            image['container_format']) == ('active', 'raw', 'bare')
    assert props['glance_convert_source_format'] == 'qcow2'
    assert props['glance_convert_source_sha256'] == sha


def test_ova_with_openstackclient(client_node, user_env, image_dir):
    out = run(OPENSTACK_OVA + ' -f json', user_env, image_dir)
    image_id = json.loads(out)['id']
    _wait(client_node, image_id)
    image, props = _osc_image(user_env, image_dir, image_id)
    assert (image['status'], image['disk_format'],
            image['container_format']) == ('active', 'raw', 'bare')
    assert props['glance_convert_source_format'] == 'vmdk'


def test_refusal_reason_reaches_both_clients(client_node, user_env,
                                             operator_env, image_dir):
    command = GLANCE_DIRECT.replace(IMAGE_FILE, 'backed.qcow2').replace(
        '--name cirros', '--name backed')
    image_id = table(run(command, user_env, image_dir))['id']
    image, task = _wait(client_node, image_id)
    assert task['status'] == 'failure'
    assert image['status'] == 'queued'

    # The user: glance image-tasks shows the sentence.
    out = run(fill(GLANCE_TASKS, id=image_id), user_env, image_dir)
    assert REFUSED in out, out

    # The operator: the task list, then the task.
    listed = json.loads(run(OPENSTACK_TASKS + ' -f json', operator_env,
                            image_dir))
    assert any(t['ID'] == task['id'] for t in listed), listed
    shown = json.loads(run(fill(OPENSTACK_TASK_SHOW, task_id=task['id'])
                           + ' -f json', operator_env, image_dir))
    assert shown['message'] == REFUSED
    assert shown['status'] == 'failure'
    # A refused image holds nothing on the node.
    assert client_node.files_of(image_id) == []
