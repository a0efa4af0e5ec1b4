"""The engines: one module per kind of evidence, each in three parts.

- **gather** (I/O): reach the hosts or servers once per run and cache what they said (:mod:`_pytest_nova.runcache`);
- **judge** (pure): turn what was gathered into :class:`~_pytest_nova.verdicts.Verdict` records;
- **fixture**: the session fixture a suite asks for.

- :mod:`.node` (rules in :mod:`.node_rules`): one script run per host (accounts, files, sysctls, names,
  endpoints); judges ``node_requirement``, and with :mod:`.dns` and :mod:`.endpoints` ``dns_on_node`` and
  ``endpoint``;
- :mod:`.dns`: the inventory's DNS servers asked from the runner; ``dns_record``;
- :mod:`.firewall` (fixes in :mod:`.firewall_fixes`): listeners and probe batches between hosts; ``port_rule``;
- :mod:`.balancers`: healthchecks through balancers and backends; ``balancer_check``;
- :mod:`.cluster`: the Kubernetes API through kubectl; ``cluster_node``, ``cluster_check``;
- :mod:`.inventory`: the inventory's own values; ``inventory_check``.
"""
