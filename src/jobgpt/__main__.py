"""`python -m jobgpt <stage>` (and `torchrun -m jobgpt train ...`): the same CLI as `jobgpt`."""

import sys

from jobgpt.cli import main

sys.exit(main())
