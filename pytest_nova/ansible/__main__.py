"""``python -m pytest_nova.ansible``: the same as ``nova-inventory-from-ansible``."""

from pytest_nova.ansible.cli import main

raise SystemExit(main())
