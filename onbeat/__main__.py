"""``python -m onbeat`` runs the command-line interface."""

import sys

from onbeat.realtime.cli import main

sys.exit(main())
