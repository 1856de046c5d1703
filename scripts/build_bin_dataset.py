"""Stage 2: encode the corpus into token bins (-> data/train.bin, data/val.bin, data/meta.json).

A thin wrapper over `jobgpt dataset`: same flags, same defaults (see `--help`).
"""

import sys

from jobgpt.cli import main

if __name__ == "__main__":
    sys.exit(main(["dataset", *sys.argv[1:]], as_script=True))
