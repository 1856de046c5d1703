"""Stage 1: train the BPE tokenizer (data/samples.txt -> data/tokenizer.json).

A thin wrapper over `jobgpt tokenizer`: same flags, same defaults (see `--help`).
"""

import sys

from jobgpt.cli import main

if __name__ == "__main__":
    sys.exit(main(["tokenizer", *sys.argv[1:]], as_script=True))
