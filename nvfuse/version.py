"""nvfuse's version (part of the disk-cache key, so a new release never reads an old cubin)."""

__version__ = "0.1.0"
