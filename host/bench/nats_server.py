"""A real nats-server with JetStream on 127.0.0.1 for tests and `becomingone bench mesh` (Debian
package `nats-server`; .ci/run installs it).

    with nats_server(store_dir) as url:     # "nats://127.0.0.1:PORT" on a free port
        ...                                 # stopped by PID on exit
    with nats_server(store_dir, pid_out=True) as (url, pid):   # and its PID (CPU accounting)
"""
import contextlib
import os
import shutil
import socket
import subprocess
import time

SERVER = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)


@contextlib.contextmanager
def nats_server(store_dir, wait_s=10.0, pid_out=False):
    if SERVER is None:
        raise RuntimeError("nats-server is not installed (Debian package nats-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + wait_s
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        url = "nats://127.0.0.1:%d" % port
        yield (url, proc.pid) if pid_out else url
    finally:
        proc.terminate()                      # by PID: the server we started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
