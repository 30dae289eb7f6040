"""``python -m glance_convert.cmd``: the ``glance-convert`` command."""

import sys

from glance_convert.cmd import main

sys.exit(main.main())
