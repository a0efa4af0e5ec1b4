"""Ending many masters with few files to spare: the mux requests go out a bounded number at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A stand-in for 100 control masters in a process of its own: each takes the request, closes the connection, then
# removes its path a moment later, as an exiting ssh master does.
MASTERS = textwrap.dedent("""
    import os, selectors, socket, sys, time
    folder, count = sys.argv[1], int(sys.argv[2])
    selector = selectors.DefaultSelector()
    for i in range(count):
        server = socket.socket(socket.AF_UNIX)
        server.bind(os.path.join(folder, f"m{i}"))
        server.listen(8)
        selector.register(server, selectors.EVENT_READ, ("server", i))
    print("ready", flush=True)
    ended = 0
    while ended < count:
        for key, _ in selector.select(10):
            kind, i = key.data
            if kind == "server":
                conn, _ = key.fileobj.accept()
                selector.register(conn, selectors.EVENT_READ, ("conn", i))
            elif len(key.fileobj.recv(4096)) > 0:  # hello and terminate: the master quits
                selector.unregister(key.fileobj)
                key.fileobj.close()
                time.sleep(0.002)  # the path goes just after the connection, as in ssh's own exit
                os.unlink(os.path.join(folder, f"m{i}"))
                ended += 1
""")

# Ends them from a process whose file limit leaves 20 to spare.
ENDER = textwrap.dedent("""
    import os, resource, sys
    from pathlib import Path
    from _pytest_nova import ssh_mux
    used = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 20, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    left = ssh_mux.end_masters(sorted(Path(sys.argv[1]).iterdir()), within=10)
    print(len(left))
""")


def test_a_hundred_masters_end_with_twenty_files_to_spare(tmp_path: Path) -> None:
    masters = subprocess.Popen([sys.executable, "-c", MASTERS, str(tmp_path), "100"], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert masters.stdout is not None and masters.stdout.readline() == "ready\n"
        ender = subprocess.run([sys.executable, "-c", ENDER, str(tmp_path)], capture_output=True, text=True,
                               timeout=60, check=False, env=os.environ | {"PYTHONPATH": str(REPO)})
        assert ender.returncode == 0, ender.stderr[-2000:]
        assert ender.stdout.strip() == "0"  # every master ended on the request alone: no ssh -O exit needed
        assert masters.wait(10) == 0
        assert not list(tmp_path.iterdir())
    finally:
        masters.kill()
