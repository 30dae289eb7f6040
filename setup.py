import configparser
import os

import setuptools

# The version is [metadata] version in setup.cfg, as released.  pbr would
# otherwise derive it from git (0.1.0.devN on an untagged commit, 0.0.0
# in a clone without tags), so the package, the documentation and the
# release notes could each show another one.  PBR_VERSION set from outside
# still wins.
_cfg = configparser.ConfigParser()
_cfg.read(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'setup.cfg'))
os.environ.setdefault('PBR_VERSION', _cfg['metadata']['version'])

setuptools.setup(setup_requires=['pbr>=6.0'], pbr=True)
