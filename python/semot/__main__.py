"""``python -m semot``: the ``semot`` command."""

import sys

from semot.cli.app import main

sys.exit(main())
