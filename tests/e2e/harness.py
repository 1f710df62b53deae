"""harness.py — start a real streamerd on a free loopback port and talk to it.

Used by every end-to-end test (tests/e2e/test_*.py, run by tests/e2e/run.py).
Only the Python standard library (Debian's /usr/bin/python3) is used.
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("STREAMER_BUILD", "build"))
STREAMERD = os.path.join(BUILD, "bin", "streamerd")
STREAMER = os.path.join(BUILD, "bin", "streamer")
RESEARCH = os.environ.get("STREAMER_RESEARCH") or os.path.normpath(os.path.join(REPO, "..", "shared", "research"))


_handed_out = set()


def free_port():
    """A TCP port free on every address, below Linux's ephemeral range (32768+):
    a port the kernel handed out (bind to port 0) can be taken again by any
    outgoing connection before streamerd binds it; these cannot. Never the
    same port twice in one run."""
    for _ in range(1000):
        port = random.randint(10000, 32767)
        if port in _handed_out:
            continue
        s = socket.socket()
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.add(port)
        return port
    raise RuntimeError("no free TCP port in 10000-32767")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class Server:
    """A streamerd with its own data dir. Plain HTTP on loopback unless tls=True.
    The iSCSI target listens on 127.0.0.1:iscsi_port (a free port unless given;
    the same one across restarts); iscsi_port=0 disables it (--iscsi-listen none)."""

    def __init__(self, tls=False, extra_args=(), data_dir=None, env=None, iscsi_port=None):
        self.tmp = tempfile.mkdtemp(prefix="streamer-e2e-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.port = free_port()
        self.iscsi_port = free_port() if iscsi_port is None else iscsi_port
        self.tls = tls
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.log_path = os.path.join(self.tmp, "streamerd.log")
        self.token = None

    # -- process -----------------------------------------------------------
    def args(self):
        a = [STREAMERD, "--data-dir", self.data_dir, "--listen", "127.0.0.1:%d" % self.port,
             "--iscsi-listen", "127.0.0.1:%d" % self.iscsi_port if self.iscsi_port else "none"]
        if not self.tls:
            a.append("--insecure-http")
        return a + self.extra_args

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("streamerd exited with %d:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                if self.request("GET", "/rest/version", auth=False).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("streamerd did not become ready:\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("streamerd did not stop on %s" % sig)
        rc = self.proc.returncode if self.proc else 0
        self.proc = None
        return rc

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        rc = self.stop()
        log = self.read_log()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if exc[0] is None:
            # A sanitizer report or a crash fails the test that caused it.
            assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log[-4000:]
            assert rc == 0, "streamerd exit status %r\n%s" % (rc, log[-4000:])

    # -- HTTP --------------------------------------------------------------
    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def admin_password(self):
        with open(os.path.join(self.data_dir, "admin-password")) as f:
            return f.read().strip()

    def connection(self):
        if self.tls:
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, auth=True, headers=None, raw=None, token=None):
        h = {"X-API-Version": "2020"}
        if auth:
            tok = token or self.token
            if tok:
                h["auth"] = tok
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        c = self.connection()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace"))
        finally:
            c.close()

    def login(self, user="administrator", password=None):
        password = password if password is not None else self.admin_password()
        r = self.request("POST", "/rest/login-sessions",
                         {"userName": user, "password": password, "authLoginDomain": "LOCAL"}, auth=False)
        assert r.status == 200, r
        tok = r.json()["sessionID"]
        if user == "administrator":
            self.token = tok
        return tok

    def wait_task(self, uri, timeout=60, poll=0.05):
        """The task's document once it has ended (polled every `poll` s: benchmarks that
        time the wait poll more often)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            t = self.request("GET", uri).json()
            if t["taskState"] not in ("New", "Starting", "Pending", "Running", "Stopping"):
                return t
            time.sleep(poll)
        raise RuntimeError("task %s did not finish" % uri)

    def cli(self, *args, input=None, env=None, home=None):
        """Run build/bin/streamer with HOME pointing at a per-server directory."""
        e = dict(os.environ)
        e["HOME"] = home or os.path.join(self.tmp, "home")
        os.makedirs(e["HOME"], exist_ok=True)
        e.pop("XDG_CONFIG_HOME", None)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if env:
            e.update(env)
        return subprocess.run([STREAMER] + list(args), input=input, capture_output=True, text=True, env=e, timeout=60)
