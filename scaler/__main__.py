"""Entry point for ``python -m scaler``."""

import sys

from scaler.cli import main

sys.exit(main())
