"""nova-lab: a small Nova-like cluster on one machine, built from namespaces and real daemons.

from nova_lab import Lab, LabSpec
lab = Lab.up(LabSpec(workers=3))
try:
with lab.fault("dns-missing-record", record="nova-console"):
...
finally:
lab.down()
"""

from __future__ import annotations

from nova_lab.addresses import Host, LabSpec
from nova_lab.faults import KINDS, REGISTRY, Fault
from nova_lab.lab import Lab, teardown
from nova_lab.netns import LabError

# What a fresh Debian/Ubuntu machine needs for the lab (CI: apt-get install -y $(python -c ...)).
# dnsmasq-base is the daemon without the system service that would grab port 53 of the machine.
DEBIAN_PACKAGES = (
    "iproute2",
    "util-linux",
    "mount",
    "openssh-server",
    "openssh-client",
    "sudo",
    "passwd",
    "dnsmasq-base",
    "nftables",
    "openssl",
    "ca-certificates",
    "socat",
    "curl",  # used by the lab tests inside hosts
)

__all__ = ["DEBIAN_PACKAGES", "KINDS", "REGISTRY", "Fault", "Host", "Lab", "LabError", "LabSpec", "teardown"]
