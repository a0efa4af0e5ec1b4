"""``python -m pytest_nova.ansible``: the same as ``nova-inventory-from-ansible``."""

from pytest_nova.ansible import main

raise SystemExit(main())
