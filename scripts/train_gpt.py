"""Stage 3: train the GPT (data/*.bin -> checkpoints/ckpt.pt, best.pt).

A thin wrapper over `jobgpt train`: same flags, same defaults (see `--help`).
"""

import sys

from jobgpt.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], as_script=True))
