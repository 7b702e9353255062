"""``python -m multihome.testing.apiserver``: the API double as a process."""

import sys

from multihome.testing.apiserver.server import main

sys.exit(main())
