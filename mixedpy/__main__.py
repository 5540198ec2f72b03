"""``python -m mixedpy``: see :mod:`mixedpy.cli`."""
import sys

from .cli import main

sys.exit(main())
