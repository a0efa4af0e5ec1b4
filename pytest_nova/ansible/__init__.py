"""``nova-inventory-from-ansible``: turn an Ansible inventory into a pytest-nova inventory (format v1).

The command's entry point and the error it raises; the converter itself is internal (``_pytest_nova.ansible``).
"""

from _pytest_nova.ansible import ConvertError, main

__all__ = ["ConvertError", "main"]
