"""cxr-runner: a distributed batch experiment runner for chest X-ray deep learning."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
