"""prefkit: preference learning (DPO and what came after it), one readable function per method."""

__version__ = "0.1.0"
