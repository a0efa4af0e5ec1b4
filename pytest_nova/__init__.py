"""pytest-nova: prove that infrastructure meets Nova Container Platform's installation requirements."""

from __future__ import annotations

__version__ = "0.1.0"
