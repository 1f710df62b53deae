"""test_daemon.py — streamerd as a process: TLS by default, refusals at start
(insecure HTTP off loopback, a second daemon on the same data dir, a newer
database schema, bad configuration), clean shutdown on signals, persistence
across restarts, recovery of interrupted tasks, the tasks collection,
structured logs, the configuration file, --help, the first administrator's
password file.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import tempfile
import time
import uuid

import harness

LOG_LINE = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warn|error) '
                      r'comp=[a-z0-9_-]+ msg=".*"$')


# ---- helpers ---------------------------------------------------------------------------
def env():
    e = dict(os.environ)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    return e


def assert_no_sanitizer(text):
    assert "ERROR: AddressSanitizer" not in text and "runtime error:" not in text \
        and "ERROR: LeakSanitizer" not in text, text[-4000:]


def run(args, timeout=30, cwd=None):
    """Run streamerd to completion (for the cases where it must refuse to start)."""
    p = subprocess.run([harness.STREAMERD] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env(), cwd=cwd)
    assert_no_sanitizer(p.stdout + p.stderr)
    return p


def get(port, path, tls=False, token=None, timeout=5):
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"auth": token} if token else {})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


class Proc:
    """A streamerd started with exactly the given arguments (no harness defaults)."""

    def __init__(self, args, port, tls=False):
        self.tmp = tempfile.mkdtemp(prefix="streamer-e2e-proc-")
        self.log_path = os.path.join(self.tmp, "streamerd.log")
        self.port = port
        self.tls = tls
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([harness.STREAMERD] + list(args), stdout=log,
                                         stderr=subprocess.STDOUT, env=env())

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("streamerd exited with %d:\n%s" % (self.proc.returncode, self.log()))
            try:
                if get(self.port, "/rest/version", self.tls)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("streamerd did not become ready:\n" + self.log())

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        log = self.log()
        shutil.rmtree(self.tmp, ignore_errors=True)
        assert_no_sanitizer(log)
        return self.proc.returncode, log


def login(port, data_dir, tls=False):
    with open(os.path.join(data_dir, "admin-password")) as f:
        pw = f.read().strip()
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/rest/login-sessions", body=json.dumps({"userName": "administrator", "password": pw}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read())
        return json.loads(r.read())["sessionID"]
    finally:
        c.close()


def check_log_lines(log):
    bad = [ln for ln in log.splitlines() if ln.strip() and not LOG_LINE.match(ln)]
    assert not bad, "unstructured log lines:\n" + "\n".join(bad[:20])


# ---- TLS --------------------------------------------------------------------------------------
def test_tls_by_default():
    with harness.Server(tls=True) as srv:
        r = srv.request("GET", "/rest/version", auth=False)
        assert r.status == 200, r
        v = r.json()
        assert v["currentVersion"] >= 300 and v["minimumVersion"] == 300, v
        srv.login()
        assert srv.request("GET", "/rest/plan-scripts").status == 200
        tls = os.path.join(srv.data_dir, "tls")
        cert, key = os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem")
        assert os.path.isfile(cert) and os.path.isfile(key)
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, oct(os.stat(key).st_mode)
        assert stat.S_IMODE(os.stat(tls).st_mode) & 0o077 == 0, oct(os.stat(tls).st_mode)
        with open(cert) as f:
            cert_pem = f.read()
        with open(key) as f:
            assert "PRIVATE KEY" in f.read()
        assert "BEGIN CERTIFICATE" in cert_pem
        # The certificate served is the one on disk.
        served = ssl.get_server_certificate(("127.0.0.1", srv.port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert_pem)
        # Plain HTTP on the HTTPS port gets no API answer.
        try:
            status, _ = get(srv.port, "/rest/version", tls=False, timeout=3)
        except (OSError, http.client.HTTPException):
            status = None
        assert status != 200
        assert srv.request("GET", "/rest/version", auth=False).status == 200  # still serving
        # A restart keeps the certificate and key.
        with open(key, "rb") as f:
            key_bytes = f.read()
        assert srv.stop() == 0
        srv.start()
        with open(key, "rb") as f:
            assert f.read() == key_bytes
        served = ssl.get_server_certificate(("127.0.0.1", srv.port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert_pem)
        assert srv.read_log().count("generated a self-signed certificate") == 1


def test_insecure_http_refused_off_loopback():
    tmp = tempfile.mkdtemp(prefix="streamer-e2e-")
    try:
        for addr in ["0.0.0.0:%d" % harness.free_port(), "192.0.2.10:%d" % harness.free_port()]:
            data = os.path.join(tmp, "data")
            p = run(["--insecure-http", "--listen", addr, "--data-dir", data,
                     "--iscsi-listen", "127.0.0.1:%d" % harness.free_port()])
            assert p.returncode != 0, p
            assert "--insecure-http" in p.stderr and "loopback" in p.stderr and addr in p.stderr, p.stderr
            assert not os.path.exists(data), "the data dir was created before the refusal"
        # The same through the configuration file.
        conf = os.path.join(tmp, "streamerd.conf")
        with open(conf, "w") as f:
            f.write("listen = 0.0.0.0:%d\ninsecure-http = true\ndata-dir = %s\n"
                    % (harness.free_port(), os.path.join(tmp, "data")))
        p = run(["--config", conf])
        assert p.returncode != 0 and "loopback" in p.stderr, p
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- one daemon per data dir -------------------------------------------------------------------
def test_second_daemon_refused():
    with harness.Server() as srv:
        srv.login()
        pw_file = os.path.join(srv.data_dir, "admin-password")
        with open(pw_file) as f:
            pw = f.read()
        port2 = harness.free_port()
        p = run(["--data-dir", srv.data_dir, "--listen", "127.0.0.1:%d" % port2, "--insecure-http",
                 "--iscsi-listen", "127.0.0.1:%d" % harness.free_port()])
        assert p.returncode != 0, p
        assert srv.data_dir in p.stderr and "in use" in p.stderr, p.stderr
        assert "pid %d" % srv.proc.pid in p.stderr, p.stderr
        # The first keeps serving, unharmed.
        assert srv.request("GET", "/rest/version").status == 200
        r = srv.request("POST", "/rest/plan-scripts", {"name": "After refusal", "planType": "deploy",
                                                       "content": "echo"})
        assert r.status == 201, r
        with open(pw_file) as f:
            assert f.read() == pw
        try:
            status = get(port2, "/rest/version", timeout=2)[0]
        except OSError:
            status = None
        assert status is None, "the refused daemon is serving"


# ---- signals -----------------------------------------------------------------------------------
def test_sigterm_and_sigint_stop_cleanly():
    for sig in (signal.SIGTERM, signal.SIGINT):
        srv = harness.Server()
        try:
            srv.start()
            srv.login()
            assert srv.request("POST", "/rest/plan-scripts",
                               {"name": "S", "planType": "deploy", "content": "x"}).status == 201
            rc = srv.stop(sig)
            log = srv.read_log()
            assert rc == 0, (sig, rc, log[-2000:])
            assert_no_sanitizer(log)
            assert "signal %d: shutting down" % sig in log, log[-2000:]
            last = [ln for ln in log.splitlines() if ln.strip()][-1]
            assert "stopped" in last, last
            assert not os.path.exists(os.path.join(srv.data_dir, "streamer.db-wal")) or \
                os.path.getsize(os.path.join(srv.data_dir, "streamer.db-wal")) == 0
        finally:
            srv.cleanup()


def test_stop_under_load_and_with_idle_connections():
    """SIGTERM while 8 clients create and list, and two connections sit on half-sent
    requests: a prompt, clean exit, and a consistent store at the next start."""
    import threading
    with harness.Server() as srv:
        srv.login()
        idle = []
        for data in [b"GET /rest/version HTTP/1.1\r\nHost: x\r\n",
                     b"POST /rest/plan-scripts HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"]:
            c = socket.create_connection(("127.0.0.1", srv.port))
            c.sendall(data)
            idle.append(c)
        stop = threading.Event()
        created = []

        def client(i):
            n = 0
            while not stop.is_set():
                try:
                    r = srv.request("POST", "/rest/plan-scripts",
                                    {"name": "Load %d-%d" % (i, n), "planType": "deploy", "content": "x"})
                    if r.status == 201:
                        created.append(r.json()["uri"])
                    srv.request("GET", "/rest/plan-scripts?count=5")
                except (OSError, http.client.HTTPException):
                    pass
                n += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        t0 = time.time()
        try:
            rc = srv.stop()
        finally:
            stop.set()
            for t in threads:
                t.join()
            for c in idle:
                c.close()
        assert rc == 0, srv.read_log()[-3000:]
        assert time.time() - t0 < 10, "shutdown took %.1fs" % (time.time() - t0)
        assert created, "no request succeeded before the signal"
        srv.start()
        srv.login()
        listed = srv.request("GET", "/rest/plan-scripts").json()
        uris = [m["uri"] for m in listed["members"]]
        assert listed["total"] == len(uris) and set(created) <= set(uris), (len(created), len(uris))
        for u in uris[:20] + uris[-20:]:
            assert srv.request("GET", u).status == 200
        db = sqlite3.connect(os.path.join(srv.data_dir, "streamer.db"))
        try:
            n = db.execute("SELECT COUNT(*) FROM docs WHERE coll = 'plan-scripts'").fetchone()[0]
        finally:
            db.close()
        assert n == len(uris), (n, len(uris))


def test_restart_after_a_crash():
    """SIGKILL: committed writes survive, the data-dir lock is released with the process."""
    with harness.Server() as srv:
        srv.login()
        r = srv.request("POST", "/rest/plan-scripts", {"name": "Before crash", "planType": "deploy",
                                                       "content": "echo"})
        assert r.status == 201, r
        doc = r.json()
        assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
        srv.start()
        srv.login()
        r = srv.request("GET", doc["uri"])
        assert r.status == 200 and r.json()["eTag"] == doc["eTag"], r
        assert srv.request("POST", "/rest/plan-scripts", {"name": "After crash", "planType": "deploy",
                                                          "content": "echo"}).status == 201


def test_sighup_is_ignored(srv):
    srv.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert srv.proc.poll() is None
    assert srv.request("GET", "/rest/plan-scripts").status == 200
    assert "SIGHUP ignored" in srv.read_log()


# ---- persistence ---------------------------------------------------------------------------------
def test_data_persists_across_restart():
    with harness.Server() as srv:
        srv.login()
        ps = srv.request("POST", "/rest/plan-scripts", {"name": "Persistent PS", "planType": "deploy",
                                                        "content": "echo @Who:world@"}).json()
        bp = srv.request("POST", "/rest/build-plans", {"name": "Persistent BP", "oeBuildPlanType": "deploy",
                                                       "buildStep": [{"serialNumber": "1",
                                                                      "planScriptUri": ps["uri"]}]}).json()
        r = srv.request("POST", "/rest/users", {"userName": "keeper", "password": "keeper-password",
                                                "permissions": [{"roleName": "Read only"}]})
        assert r.status == 201, r
        before = {c: srv.request("GET", "/rest/" + c).json() for c in
                  ("plan-scripts", "build-plans", "deployment-plans", "users", "tasks")}
        ps_now = srv.request("GET", ps["uri"])
        old_token = srv.token
        assert srv.stop() == 0
        srv.start()
        # Sessions live in memory: the old token is gone, the password still works.
        assert srv.request("GET", "/rest/plan-scripts", token=old_token).status == 401
        srv.login()
        r = srv.request("GET", ps["uri"])
        assert r.status == 200, r
        assert r.json() == ps_now.json()
        assert r.json()["eTag"] == ps_now.json()["eTag"] and r.headers.get("etag") == ps_now.headers.get("etag")
        after = {c: srv.request("GET", "/rest/" + c).json() for c in before}
        assert after == before
        assert srv.request("GET", bp["uri"]).json()["buildStep"][0]["planScriptUri"] == ps["uri"]
        srv.login("keeper", "keeper-password")
        # And the next write after the restart continues the revision count.
        r = srv.request("PUT", ps["uri"], dict(ps_now.json(), description="after restart"))
        assert r.status == 200, r
        assert r.json()["eTag"] != ps_now.json()["eTag"]


def test_newer_schema_refused():
    srv = harness.Server()
    try:
        srv.start()
        srv.login()
        assert srv.request("POST", "/rest/plan-scripts", {"name": "Old", "planType": "deploy",
                                                          "content": "x"}).status == 201
        assert srv.stop() == 0
        db_path = os.path.join(srv.data_dir, "streamer.db")
        db = sqlite3.connect(db_path)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
        srv.start(wait=False)
        srv.proc.wait(30)
        rc = srv.stop()
        log = srv.read_log()
        assert rc != 0, log[-2000:]
        assert "newer" in log and "99" in log, log[-2000:]
        assert_no_sanitizer(log)
        db = sqlite3.connect(db_path)
        try:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 99
            assert db.execute("SELECT COUNT(*) FROM docs WHERE coll = 'plan-scripts'").fetchone()[0] == 1
        finally:
            db.close()
    finally:
        srv.cleanup()


# ---- tasks ------------------------------------------------------------------------------------------
def task_doc(tid, state, name="Deploy"):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"type": "TaskResourceV2", "category": "tasks", "uri": "/rest/tasks/" + tid, "id": tid,
            "name": name, "owner": "administrator", "taskType": "User", "taskState": state,
            "taskStatus": state, "stateReason": state, "percentComplete": 40, "computedPercentComplete": 40,
            "completedSteps": 0, "totalSteps": 0, "expectedDuration": 0, "hidden": False,
            "userInitiated": True, "parentTaskUri": None, "associatedTaskUri": None,
            "associatedResource": None, "progressUpdates": [], "taskErrors": [], "taskOutput": [],
            "data": None, "created": now, "modified": now, "eTag": "1700000000000/1"}


def insert_docs(db_path, docs):
    db = sqlite3.connect(db_path)
    try:
        cols = [r[1] for r in db.execute("PRAGMA table_info(docs)")]
        assert {"coll", "id", "uname", "rev", "body", "seq"} <= set(cols), cols
        for d in docs:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM docs").fetchone()[0]
            db.execute("INSERT INTO docs (coll, id, uname, rev, body, seq) VALUES ('tasks', ?, NULL, 1, ?, ?)",
                       (d["id"], json.dumps(d), seq))
        db.commit()
    finally:
        db.close()


def test_interrupted_task_marked_error():
    with harness.Server() as srv:
        srv.login()
        assert srv.stop() == 0
        running, new, done = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        insert_docs(os.path.join(srv.data_dir, "streamer.db"),
                    [task_doc(running, "Running"), task_doc(new, "New"), task_doc(done, "Completed")])
        srv.start()
        srv.login()
        for tid in (running, new):
            r = srv.request("GET", "/rest/tasks/" + tid)
            assert r.status == 200, r
            t = r.json()
            assert t["type"] == "TaskResourceV2" and t["category"] == "tasks", t
            assert t["taskState"] == "Error" and t["stateReason"] == "interrupted", t
            assert len(t["taskErrors"]) >= 1 and t["taskErrors"][0]["message"], t
            e = t["taskErrors"][0]
            for k in ("errorCode", "message", "details", "recommendedActions", "nestedErrors"):
                assert k in e, e
            assert t["progressUpdates"], t
        r = srv.request("GET", "/rest/tasks/" + done)
        assert r.json()["taskState"] == "Completed" and r.json()["taskErrors"] == [], r
        assert r.json()["eTag"] == "1700000000000/1", r  # untouched
        log = srv.read_log()
        assert "task %s marked interrupted" % running in log, log[-2000:]
        assert "task %s marked interrupted" % done not in log
        # A second restart leaves the recovered tasks alone (no second error appended).
        first = srv.request("GET", "/rest/tasks/" + running).json()
        assert srv.stop() == 0
        srv.start()
        srv.login()
        again = srv.request("GET", "/rest/tasks/" + running).json()
        assert again == first, (again, first)

        # The collection: shape, paging, filters.
        r = srv.request("GET", "/rest/tasks")
        assert r.status == 200, r
        c = r.json()
        for k in ("type", "category", "uri", "start", "count", "total", "prevPageUri", "nextPageUri", "members"):
            assert k in c, (k, c)
        assert c["category"] == "tasks" and c["start"] == 0 and c["total"] == 3 and c["count"] == 3, c
        assert c["uri"].startswith("/rest/tasks"), c
        assert c["prevPageUri"] is None and c["nextPageUri"] is None, c
        assert [m["id"] for m in c["members"]] == [running, new, done], c["members"]
        for m in c["members"]:
            assert m["type"] == "TaskResourceV2" and m["uri"] == "/rest/tasks/" + m["id"], m
        page = srv.request("GET", "/rest/tasks?start=0&count=2").json()
        assert page["count"] == 2 and page["total"] == 3 and page["nextPageUri"], page
        nxt = srv.request("GET", page["nextPageUri"]).json()
        assert [m["id"] for m in nxt["members"]] == [done] and nxt["nextPageUri"] is None, nxt
        assert nxt["prevPageUri"], nxt
        errs = srv.request("GET", "/rest/tasks?filter=%22taskState='Error'%22").json()
        assert sorted(m["id"] for m in errs["members"]) == sorted([running, new]), errs


def test_tasks_collection_empty(srv):
    r = srv.request("GET", "/rest/tasks")
    assert r.status == 200, r
    c = r.json()
    assert c["members"] == [] and c["count"] == 0 and c["total"] == 0 and c["start"] == 0, c
    assert c["category"] == "tasks" and isinstance(c["type"], str), c
    assert c["prevPageUri"] is None and c["nextPageUri"] is None, c
    assert srv.request("GET", "/rest/tasks", auth=False).status == 401


# ---- logs ----------------------------------------------------------------------------------------------
def test_structured_logs():
    srv = harness.Server(tls=True)
    try:
        srv.start()
        srv.login()
        srv.request("GET", "/rest/nothing")
        srv.request("POST", "/rest/plan-scripts", raw=b"{bad", headers={"Content-Type": "application/json"})
        srv.request("POST", "/rest/plan-scripts", {"name": "Log \"quoted\"\nname", "planType": "deploy",
                                                   "content": "x"})
        srv.request("POST", "/rest/login-sessions", {"userName": "nobody\n level=error", "password": "x"},
                    auth=False)
        srv.request("GET", "/rest/plan-scripts/%0Aforged%20level=error")
        # Things only libmicrohttpd sees: a plain-HTTP request on the TLS port, garbage.
        for data in [b"GET /rest/version HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\x01garbage\r\n\r\n"]:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
            try:
                s.sendall(data)
                s.settimeout(1)
                try:
                    s.recv(100)
                except OSError:
                    pass
            finally:
                s.close()
        time.sleep(0.3)
        assert srv.stop() == 0
        log = srv.read_log()
        assert_no_sanitizer(log)
        check_log_lines(log)
        assert re.search(r"level=warn comp=auth msg=\"failed login", log), log[-2000:]
        assert re.search(r"level=info comp=main msg=\"streamerd .* ready", log)
        # Client text with newlines, quotes or a forged "level=" stays inside msg="...".
        for ln in log.splitlines():
            msg = ln.split(' msg="', 1)[1][:-1]
            assert not re.search(r'(?<!\\)"', msg), "unescaped quote in msg: " + ln
        assert "forged" in log and "nobody" in log
    finally:
        srv.cleanup()


def test_plain_http_garbage_is_logged_structured():
    """Malformed HTTP that libmicrohttpd answers itself still logs ts= level= lines."""
    srv = harness.Server()
    try:
        srv.start()
        for data in [b"GARBAGE\r\n\r\n", b"GET /rest/version HTTP/9.9\r\n\r\n",
                     b"GET /rest/version HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
                     b"POST /rest/plan-scripts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                     ("GET /rest/x?%s HTTP/1.1\r\nHost: x\r\n\r\n" % ("a=b&" * 600)).encode()]:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
            try:
                s.sendall(data)
                s.settimeout(0.5)
                try:
                    s.recv(100)
                except OSError:
                    pass
            finally:
                s.close()
        time.sleep(0.3)
        assert srv.request("GET", "/rest/version", auth=False).status == 200
        assert srv.stop() == 0
        log = srv.read_log()
        check_log_lines(log)
        assert "comp=http" in log, log[-2000:]
    finally:
        srv.cleanup()


# ---- configuration ------------------------------------------------------------------------------------
def test_config_file_and_flag_override():
    tmp = tempfile.mkdtemp(prefix="streamer-e2e-")
    try:
        port, data = harness.free_port(), os.path.join(tmp, "conf-data")
        conf = os.path.join(tmp, "streamerd.conf")
        with open(conf, "w") as f:
            f.write("# streamerd test configuration\n\n"
                    "listen = 127.0.0.1:%d\n"
                    "  insecure-http = true   \n"
                    "data-dir=%s\n"
                    "iscsi-listen = 127.0.0.1:%d\n"
                    "log-level = debug\n"
                    "max-body = 2048\n" % (port, data, harness.free_port()))
        p = Proc(["--config", conf], port).wait_ready()
        try:
            tok = login(port, data)
            assert os.path.isfile(os.path.join(data, "streamer.db"))
            status, _ = get(port, "/rest/plan-scripts", token=tok)
            assert status == 200
            # max-body from the file is in force.
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", "/rest/plan-scripts", body=b"{" + b" " * 4096 + b"}",
                      headers={"auth": tok, "Content-Type": "application/json"})
            assert c.getresponse().status == 413
            c.close()
        finally:
            rc, log = p.stop()
        assert rc == 0, log[-2000:]
        assert "level=debug" in log or "level=info" in log
        check_log_lines(log)

        # Flags override the file: another port and data dir.
        port2, data2 = harness.free_port(), os.path.join(tmp, "flag-data")
        p = Proc(["--config", conf, "--listen", "127.0.0.1:%d" % port2, "--data-dir", data2,
                  "--max-body", "1048576"], port2).wait_ready()
        try:
            tok = login(port2, data2)
            try:
                status = get(port, "/rest/version", timeout=2)[0]
            except OSError:
                status = None
            assert status is None, "still listening on the configuration file's port"
            c = http.client.HTTPConnection("127.0.0.1", port2, timeout=10)
            c.request("POST", "/rest/plan-scripts",
                      body=json.dumps({"name": "Big enough", "planType": "deploy", "content": "x" * 4096}),
                      headers={"auth": tok, "Content-Type": "application/json"})
            assert c.getresponse().status == 201
            c.close()
        finally:
            rc, log = p.stop()
        assert rc == 0, log[-2000:]
        assert "data dir %s" % data2 in log

        # A flag turns on what the file turns off.
        conf2 = os.path.join(tmp, "off.conf")
        port3 = harness.free_port()
        with open(conf2, "w") as f:
            f.write("insecure-http = false\nlisten = 127.0.0.1:%d\ndata-dir = %s\n" % (port3, data))
        p = Proc(["--config", conf2, "--insecure-http", "--iscsi-listen", "127.0.0.1:%d" % harness.free_port()],
                 port3).wait_ready()
        rc, log = p.stop()
        assert rc == 0 and "API http://" in log, log[-2000:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_config_errors_name_file_and_line():
    tmp = tempfile.mkdtemp(prefix="streamer-e2e-")
    try:
        data = os.path.join(tmp, "data")
        cases = [
            ("listen = 127.0.0.1:%d\n# comment\nbogus-key = 1\n" % harness.free_port(), 3, "bogus-key"),
            ("\n\nlisten 127.0.0.1:8443\n", 3, "key = value"),
            ("max-body = lots\n", 1, "max-body"),
            ("insecure-http = maybe\n", 1, "insecure-http"),
            ("data-dir = %s\nhttp-threads = 0\n" % data, 2, "http-threads"),
            ("help = true\n", 1, "help"),
            ("config = /etc/other.conf\n", 1, "config"),
        ]
        for i, (text, line, word) in enumerate(cases):
            conf = os.path.join(tmp, "bad%d.conf" % i)
            with open(conf, "w") as f:
                f.write(text)
            p = run(["--config", conf, "--data-dir", data, "--insecure-http",
                     "--listen", "127.0.0.1:%d" % harness.free_port()])
            assert p.returncode != 0, (text, p)
            assert "%s:%d" % (conf, line) in p.stderr, (text, p.stderr)
            assert word in p.stderr, (text, p.stderr)
            assert not os.path.exists(data), "started work despite a bad configuration"
        # An explicit --config that does not exist is an error naming it.
        missing = os.path.join(tmp, "missing.conf")
        p = run(["--config", missing, "--data-dir", data])
        assert p.returncode != 0 and missing in p.stderr, p
        # Bad flags too.
        for args, word in [(["--max-body", "12x"], "max-body"), (["--listen", "nowhere"], "listen"),
                           (["--log-level", "loud"], "log-level"), (["--no-such-flag"], "no-such-flag"),
                           (["--listen", "127.0.0.1:99999"], "port"), (["stray"], "stray")]:
            p = run(args + ["--data-dir", data])
            assert p.returncode != 0 and word in p.stderr, (args, p)
            assert not os.path.exists(data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_help_lists_every_flag():
    p = run(["--help"])
    assert p.returncode == 0, p
    with open(os.path.join(harness.REPO, "src", "streamerd.c")) as f:
        src = f.read()
    flags = re.findall(r'\{"([a-z][a-z-]*)",\s*(?:no|required|optional)_argument', src)
    assert len(flags) >= 10, flags
    for flag in flags:
        assert "--" + flag in p.stdout, "--help does not mention --%s:\n%s" % (flag, p.stdout)
    # Every option the configuration file takes is a flag too (same names).
    keys = set(re.findall(r'(?:STR\("|!strcmp\(key, ")([a-z-]+)"', src))
    assert keys and keys <= set(flags), keys - set(flags)
    v = run(["--version"])
    assert v.returncode == 0 and re.match(r"streamerd \d+\.\d+", v.stdout), v


# ---- the first administrator -----------------------------------------------------------------------------
def test_admin_password_file():
    with harness.Server() as srv:
        path = os.path.join(srv.data_dir, "admin-password")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(srv.data_dir).st_mode) & 0o077 == 0, oct(os.stat(srv.data_dir).st_mode)
        pw = srv.admin_password()
        assert len(pw) >= 16, "a short first password"
        srv.login()
        srv.request("POST", "/rest/login-sessions", {"userName": "administrator", "password": pw + "x"},
                    auth=False)
        assert srv.stop() == 0
        srv.start()
        srv.login()
        assert srv.admin_password() == pw, "the password file was rewritten on restart"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        log = srv.read_log()
        assert pw not in log, "the administrator password is in the log"
        assert "admin-password" in log  # where to find it is logged
        # No temporary files left next to it.
        assert not [n for n in os.listdir(srv.data_dir) if n.startswith("admin-password.")], \
            os.listdir(srv.data_dir)
