"""Lowerings of aten ops to prims, one module per op family; see `nvfuse.fusion.optable`."""
