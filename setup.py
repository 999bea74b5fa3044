"""Packaging for nvfuse.  codegen_templates/ ships inside the package as nvfuse._templates."""

from setuptools import find_packages, setup

setup(
    name="nvfuse",
    version="0.1.0",
    description="A CUDA C++ code-generating kernel fuser for PyTorch",
    python_requires=">=3.10",
    packages=find_packages(include=["nvfuse", "nvfuse.*"]) + ["nvfuse._templates"],
    package_dir={"nvfuse._templates": "codegen_templates"},
    package_data={"nvfuse._templates": ["*.cuh"]},
    install_requires=[
        "torch>=2.9",  # 2.9 - 2.14 supported (README, Tests)
        "numpy",
        "cupy-cuda13x",
        "nvidia-cuda-nvrtc",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist", "ruff", "transformers",
                             "nvidia-cuda-nvdisasm"]},
    entry_points={
        "torch_dynamo_backends": ["nvfuse = nvfuse.frontend.dynamo:nvfuse_backend"],
    },
)
