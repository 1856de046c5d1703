"""Stage 4: sample job-posting text from checkpoints/ckpt.pt.

A thin wrapper over `jobgpt generate`: same flags, same defaults (see `--help`).
"""

import sys

from jobgpt.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]], as_script=True))
