"""Build the package and prove the wheel works in a clean Glance install.

    python tools/check_package.py [--dist DIR] [--keep] \
        GLANCE_REQ:CONSTRAINTS_FILE ...

e.g. ``glance==30.2.0:tools/constraints/upper-constraints-2025.1.txt``
(``tox -e build`` passes every supported release).  Steps:

1. ``python -m build --no-isolation``: an sdist, then a wheel built from
   that sdist (so a file missing from the sdist breaks the wheel here, not
   on PyPI);
2. ``twine check --strict`` on both;
3. per release (two at a time, ``--jobs``): a new virtualenv, ``uv pip
   install`` (or pip where uv is missing) ``-c CONSTRAINTS GLANCE_REQ
   WHEEL``, then in it: stevedore loads
   the ``glance_convert`` plugin of ``glance.image_import.plugins`` (the
   way Glance does), the installed version is the wheel's,
   ``glance-convert --help`` runs and ``glance-convert check-config``
   passes on a minimal configuration.

Exits non-zero at the first failure, saying which step failed.
"""

import argparse
import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: uv, when installed (``tox -e build`` installs it); else venv and pip.
UV = shutil.which('uv')

#: Run inside each release's venv: load the plugin through stevedore.
PROBE = '''
import sys
from importlib import metadata
import stevedore
mgr = stevedore.named.NamedExtensionManager(
    'glance.image_import.plugins', names=['glance_convert'],
    name_order=True, invoke_on_load=False,
    on_load_failure_callback=lambda m, ep, err: sys.exit(
        'loading %s failed: %r' % (ep, err)))
ext = mgr['glance_convert']
from glance_convert.flow import plugin
assert ext.plugin is plugin.get_flow, ext.plugin
import glance
print('glance %s, glance-convert %s, plugin %s.%s' % (
    metadata.version('glance'), metadata.version('glance-convert'),
    ext.plugin.__module__, ext.plugin.__name__))
if metadata.version('glance-convert') != sys.argv[1]:
    sys.exit('installed glance-convert %s, expected %s'
             % (metadata.version('glance-convert'), sys.argv[1]))
'''


class Failed(Exception):
    pass


def run(cmd, what, log=None, **kwargs):
    line = 'check-package: %s' % ' '.join(
        '<script>' if '\n' in c else c for c in cmd)
    if log is None:
        print(line, flush=True)
    else:
        log.append(line)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kwargs)
    if proc.returncode != 0:
        raise Failed('%s failed (exit %d):\n%s'
                     % (what, proc.returncode, proc.stdout[-6000:]))
    return proc.stdout


def build(dist):
    shutil.rmtree(dist, ignore_errors=True)
    # --no-isolation: pbr and setuptools come from this environment, where
    # tox installed them pinned, not from an unpinned build environment.
    run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', dist,
         ROOT], 'python -m build')
    wheels = glob.glob(os.path.join(dist, '*.whl'))
    sdists = glob.glob(os.path.join(dist, '*.tar.gz'))
    if len(wheels) != 1 or len(sdists) != 1:
        raise Failed('expected one wheel and one sdist in %s, found %s'
                     % (dist, sorted(os.listdir(dist))))
    run([sys.executable, '-m', 'twine', 'check', '--strict']
        + sdists + wheels, 'twine check')
    return wheels[0]


def wheel_version(wheel):
    # name-version-pytag-abitag-platform.whl
    return os.path.basename(wheel).split('-')[1]


def minimal_config(base):
    """glance-api.conf and glance-image-import.conf enabling the plugin."""
    etc = os.path.join(base, 'etc')
    staging = os.path.join(base, 'staging')
    os.makedirs(etc)
    os.makedirs(staging)
    with open(os.path.join(etc, 'glance-api.conf'), 'w') as f:
        f.write('[DEFAULT]\nnode_staging_uri = file://%s\n'
                '[oslo_concurrency]\nlock_path = %s\n'
                '[glance_convert]\noutput_format = raw\n'
                '[wsgi]\npython_interpreter = %s\n'
                % (staging, staging,
                   os.path.join(base, 'venv', 'bin', 'python')))
    with open(os.path.join(etc, 'glance-image-import.conf'), 'w') as f:
        f.write('[image_import_opts]\nimage_import_plugins = '
                '[glance_convert]\n')
    return etc


def check_release(wheel, glance_req, constraints, keep):
    """Install and probe one release; return its log lines."""
    log = []
    base = tempfile.mkdtemp(prefix='check-package-')
    try:
        venv = os.path.join(base, 'venv')
        py = os.path.join(venv, 'bin', 'python')
        if UV:
            # uv resolves and installs Glance's ~120 packages in seconds,
            # where pip takes minutes per release.
            run([UV, 'venv', '--quiet', '--python', sys.executable, venv],
                'creating a virtualenv', log)
            install = [UV, 'pip', 'install', '--quiet', '--python', py]
        else:
            run([sys.executable, '-m', 'venv', venv],
                'creating a virtualenv', log)
            install = [py, '-m', 'pip', 'install', '--quiet']
        run(install + ['-c', constraints, glance_req, wheel],
            'installing %s %s' % (glance_req, os.path.basename(wheel)), log)
        log.append(run([py, '-c', PROBE, wheel_version(wheel)],
                       'loading the plugin through stevedore', log).strip())
        cli = os.path.join(venv, 'bin', 'glance-convert')
        out = run([cli, '--help'], 'glance-convert --help', log)
        if 'check-config' not in out:
            raise Failed('glance-convert --help does not list check-config:'
                         '\n%s' % out)
        etc = minimal_config(base)
        env = {k: v for k, v in os.environ.items()
               if k not in ('OS_GLANCE_CONFIG_DIR', 'PYTHONPATH')}
        out = run([cli, 'check-config', '--config-dir', etc],
                  'glance-convert check-config', log, env=env)
        if '0 error(s)' not in out:
            raise Failed('check-config found errors:\n%s' % out)
        log.append(out.strip().splitlines()[-1])
        log.append('check-package: %s: OK' % glance_req)
        return log
    except Failed as e:
        raise Failed('%s: %s\n%s' % (glance_req, e, '\n'.join(log)))
    finally:
        if keep:
            log.append('check-package: kept %s' % base)
        else:
            shutil.rmtree(base, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('releases', nargs='+',
                        metavar='GLANCE_REQ:CONSTRAINTS_FILE')
    parser.add_argument('--dist', default=os.path.join(ROOT, 'dist'),
                        help='where the sdist and wheel go (default: dist/)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the virtualenvs (their paths are shown)')
    parser.add_argument('--jobs', type=int, default=2,
                        help='releases installed at once (default 2: pip '
                        'waits on the network much of the time)')
    args = parser.parse_args(argv)
    try:
        releases = []
        for spec in args.releases:
            req, sep, constraints = spec.partition(':')
            if not sep or not os.path.isfile(constraints):
                raise Failed('%r: expected GLANCE_REQ:CONSTRAINTS_FILE with '
                             'an existing file' % spec)
            releases.append((req, os.path.abspath(constraints)))
        wheel = build(os.path.abspath(args.dist))
        print('check-package: built %s' % os.path.basename(wheel))
        with concurrent.futures.ThreadPoolExecutor(
                max(1, args.jobs)) as pool:
            futures = [pool.submit(check_release, wheel, req, constraints,
                                   args.keep)
                       for req, constraints in releases]
            for future in concurrent.futures.as_completed(futures):
                print('\n'.join(future.result()), flush=True)
    except Failed as e:
        print('check-package: error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
