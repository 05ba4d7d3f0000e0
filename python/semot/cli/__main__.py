"""``python -m semot.cli``: the ``semot`` command."""

import sys

from semot.cli.app import main

sys.exit(main())
