"""lmeval's version (one place; records, saved models and ``--version`` read it)."""

__version__ = "0.1.0"
