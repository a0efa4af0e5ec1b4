"""pytest-nova's implementation: internal, and free to change between releases.

Plugins, suites and site tests import from :mod:`pytest_nova` (its ``__all__``) only.
"""

__version__ = "0.1.0"
