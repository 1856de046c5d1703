"""jobgpt: train a small Korean job-posting GPT from scratch on your own text, and use it.

Pipeline stages, one module each: corpus -> tokenizer -> dataset -> model/train -> generate.
Importing the package is cheap; torch is imported only by the stages that need it.
"""

__version__ = "0.1.0"
