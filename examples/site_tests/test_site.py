"""A site's own checks of its nodes, as plain testinfra tests (run with: pytest --nova-inventory=prod.yaml ...)."""

import pytest

CLUSTER = ("master", "infra", "ingress", "worker")  # every node but nova-ctl
SUDOERS = "/etc/sudoers.d/99-nova-installer-user"


def test_python3(host):
    """python3 runs on the node (the installer and the checks need it)."""
    assert host.check_output("python3 -c 'import sys; print(sys.version_info[0])'") == "3"


@pytest.mark.nova_roles(*CLUSTER)
@pytest.mark.nova_requirement("site-hostname", section="site 1.1",
                              summary="the node's host name is its inventory name")
def test_hostname(host):
    name = host.check_output("hostname")
    assert name == host.backend.get_hostname(), f"host name is {name}"


@pytest.mark.nova_roles(*CLUSTER)
@pytest.mark.nova_requirement("site-sshd", section="site 1.2", summary="sshd runs and listens on 22/tcp")
def test_sshd(host):
    assert host.process.filter(comm="sshd"), "no sshd process"
    assert host.socket("tcp://0.0.0.0:22").is_listening, "nothing listens on 0.0.0.0:22/tcp"


@pytest.mark.nova_roles(*CLUSTER)
@pytest.mark.nova_requirement("site-sudoers", area="os", section="site 1.3",
                              summary="the installer's sudoers drop-in is root's, 0440, NOPASSWD")
def test_sudoers(host):
    drop_in = host.file(SUDOERS)
    assert drop_in.user == "root" and drop_in.mode == 0o440, f"{SUDOERS}: {drop_in.user} {drop_in.mode:o}"
    with host.sudo():
        assert "NOPASSWD" in host.file(SUDOERS).content_string, f"{SUDOERS} grants no NOPASSWD"


@pytest.mark.nova_roles(*CLUSTER)
@pytest.mark.nova_requirement("site-ip-forward", section="site 2.1", summary="IPv4 forwarding is on",
                              fix="sysctl -w net.ipv4.ip_forward=1 and set it in /etc/sysctl.d/")
def test_ip_forward(host):
    value = host.sysctl("net.ipv4.ip_forward")
    assert value == 1, f"net.ipv4.ip_forward = {value}"


@pytest.mark.nova_roles("master")
@pytest.mark.nova_requirement("site-chrony", section="site 3", severity="advisory",
                              summary="chronyd serves its command port on 127.0.0.1:323/udp")
def test_time_sync(host):
    assert host.socket("udp://127.0.0.1:323").is_listening, "chronyd is not listening on 127.0.0.1:323/udp"
