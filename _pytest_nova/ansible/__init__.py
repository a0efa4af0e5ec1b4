"""``nova-inventory-from-ansible``: turn an Ansible inventory into a pytest-nova inventory (format v1).

Ansible groups or hosts map to Nova roles (``--role master=kube_control_plane``). Each host keeps the address,
user, port, key and OpenSSH options Ansible would use for it (:mod:`.settings`), read by ansible-core itself
with its group_vars, host_vars, vault and ansible.cfg (:mod:`.reading`); what pytest-nova cannot carry is a
warning naming the host (:mod:`.convert`). What Ansible does not know (cluster name, dnsBaseDomain, DNS servers)
is a TODO line or a command-line option (:mod:`.render`). The file is written only once it loads (:mod:`.cli`).
"""

from _pytest_nova.ansible.cli import main
from _pytest_nova.ansible.model import ConvertError

__all__ = ["ConvertError", "main"]
