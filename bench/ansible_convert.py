"""Measure ``nova-inventory-from-ansible`` on a large kubespray-shaped INI inventory.

Writes an inventory of ``--hosts`` hosts (3 masters, the rest workers; group vars for the user and key, one host
with its own user, a jump host in ansible_ssh_common_args for the workers) and converts it in a fresh process,
printing the wall time of the whole command and the ansible-core version.

Usage: ``python bench/ansible_convert.py [--hosts 1000]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def inventory(hosts: int) -> str:
    """The INI text."""
    lines = ["[kube_control_plane]"]
    lines += [f"master-{i} ansible_host=10.1.{i // 250}.{i % 250 + 1}" for i in range(3)]
    lines += ["[kube_node]"]
    for i in range(3, hosts):
        own = " ansible_user=admin" if i == 3 else ""
        lines.append(f"worker-{i} ansible_host=10.2.{i // 250}.{i % 250 + 1}{own}")
    lines += ["[deploy]", "ctl ansible_host=10.0.0.5 ansible_connection=local",
              "[kube_node:vars]", "ansible_ssh_common_args='-o ProxyJump=ops@10.0.0.2'",
              "[all:vars]", "ansible_user=nova-installer", "ansible_ssh_private_key_file=~/.ssh/id_nova"]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write, convert, print the time."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=1000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "hosts.ini"
        src.write_text(inventory(args.hosts))
        argv = [sys.executable, "-m", "pytest_nova.ansible", str(src), "--role", "master=kube_control_plane",
                "--role", "worker=kube_node", "--role", "nova-ctl=deploy", "--name", "bench",
                "--dns-base-domain", "bench.local", "--dns-server", "10.0.0.53", "-o", str(Path(tmp) / "out.yaml")]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        took = time.perf_counter() - start
        version = subprocess.run([sys.executable, "-c", "import ansible; print(ansible.__version__)"],
                                 capture_output=True, text=True, timeout=60, check=False).stdout.strip()
        print(f"{args.hosts} hosts, ansible-core {version}: exit {done.returncode} in {took:.2f} s")
        if done.returncode:
            print(done.stderr.strip())


if __name__ == "__main__":
    main()
