"""nvfuse: a CUDA C++ code-generating kernel fuser for PyTorch (public API only)."""

__version__ = "0.1.0"
