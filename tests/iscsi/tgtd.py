"""tgtd.py — run tgtd 1.0.85 (Debian `tgt`) on a loopback port as the reference
target for the iSCSI tests and benchmarks (machine.md §2).

Each Tgtd uses its own control port (`tgtd -C N`) and pid file, so it neither
needs nor disturbs a system tgtd or another test's. tgtd always shows LUN 0 as a
controller LUN, so disks are LUN 1 here (Streamer serves its volume as LUN 0).

Stopping follows machine.md: SIGTERM is ignored while targets exist, so set the
system offline, delete every target with --force, then delete the system.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TgtdError(RuntimeError):
    pass


class Tgtd:
    def __init__(self, port=None, tmpdir=None):
        self.port = port or free_port()
        self.tmp = tempfile.mkdtemp(prefix="streamer-tgtd-", dir=tmpdir)
        self.ctl = None
        self.proc = None
        self.log_path = os.path.join(self.tmp, "tgtd.log")
        self.tids = {}   # iqn -> tid
        self.users = set()

    # -- process -----------------------------------------------------------
    def start(self, timeout=10):
        if not shutil.which("tgtd"):
            raise TgtdError("tgtd not found: install the Debian package tgt")
        for _ in range(20):
            self.ctl = random.randint(2000, 9999)
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                ["tgtd", "-f", "-C", str(self.ctl), "-p", os.path.join(self.tmp, "tgtd.pid"),
                 "--iscsi", "portal=127.0.0.1:%d" % self.port],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.time() + timeout
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._listening() and self.adm("--op", "show", "--mode", "sys", check=False).returncode == 0:
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                self._kill()
                raise TgtdError("tgtd did not come up:\n" + self.read_log())
            if "lock" not in self.read_log():
                raise TgtdError("tgtd exited with %d:\n%s" % (self.proc.returncode, self.read_log()))
            # another tgtd holds this control port: try another
        raise TgtdError("no free tgtd control port")

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def adm(self, *args, check=True):
        r = subprocess.run(["tgtadm", "-C", str(self.ctl), "--lld", "iscsi"] + list(args),
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise TgtdError("tgtadm %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.adm("--op", "update", "--mode", "sys", "--name", "State", "-v", "offline", check=False)
            for tid in list(self.tids.values()):
                self.adm("--op", "delete", "--mode", "target", "--tid", str(tid), "--force", check=False)
            self.adm("--op", "delete", "--mode", "system", check=False)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def pid(self):
        return self.proc.pid if self.proc else None

    # -- targets -----------------------------------------------------------
    def add_target(self, iqn, backing, initiators=("ALL",), chap=None, mutual=None, bsoflags=None):
        """Export `backing` (a file) as LUN 1 of target `iqn`.
        initiators: initiator IQNs allowed ("ALL" = any). chap/mutual: (user, secret)."""
        tid = max(self.tids.values(), default=0) + 1
        self.adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn)
        self.tids[iqn] = tid
        lu = ["--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1", "-b", backing]
        if bsoflags:
            lu += ["--bsoflags", bsoflags]
        self.adm(*lu)
        for ini in initiators:
            if ini == "ALL":
                self.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "-I", "ALL")
            else:
                self.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "-Q", ini)
        for acct, outgoing in ((chap, False), (mutual, True)):
            if acct:
                user, secret = acct
                if user not in self.users:
                    self.adm("--op", "new", "--mode", "account", "--user", user, "--password", secret)
                    self.users.add(user)
                b = ["--op", "bind", "--mode", "account", "--tid", str(tid), "--user", user]
                self.adm(*(b + (["--outgoing"] if outgoing else [])))
        return tid

    def remove_target(self, iqn):
        tid = self.tids.pop(iqn)
        self.adm("--op", "delete", "--mode", "target", "--tid", str(tid), "--force")
