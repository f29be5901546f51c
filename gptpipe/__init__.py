"""gptpipe: GPT-1 (Radford et al. 2018) re-created as a reproducible data pipeline."""

__version__ = "0.1.0"
