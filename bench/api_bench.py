#!/usr/bin/python3
"""api_bench.py — REST API throughput and latency of streamerd, beside nginx.

Run by `make bench` (never by `make test`). Python 3 standard library only.

What it measures, with wrk on loopback (default: 2 wrk threads, 256 connections):

  GET  /rest/plan-scripts        the 100-member collection (10 s)
  GET  /rest/plan-scripts/{id}   one plan script (10 s)
  POST /rest/plan-scripts        a new plan script per request, unique names (5 s)

each against streamerd over plain HTTP (--insecure-http on 127.0.0.1) and over
HTTPS (its default self-signed ECDSA P-256 certificate), and against the peer:
nginx serving the byte-identical response bodies as static files on another
loopback port, over HTTP and over HTTPS (a self-signed P-256 certificate made
with openssl), checking the same `auth` header (a wrong or missing one gets a
401). Static serving by nginx is the ceiling an HTTP server reaches on this
machine, so streamerd/nginx is the fraction of that ceiling streamerd achieves.
For POST nginx answers 201 with the single-resource body without storing
anything (error_page 405 =201): a no-op ceiling, not an equivalent workload.

Output: a table on stdout and build/bench/api.json. Timings never decide the
exit status: 0 unless the setup failed, a server crashed, or a response body
was wrong (sanity checks with urllib before and after the timed runs). Error
responses and socket errors during the runs are reported, not fatal.

Missing tools (wrk, nginx, openssl) are installed with apt-get (as root or via
sudo) and the script says so.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402  (tests/e2e/harness.py: start streamerd, log in, requests)

TARGET_GET_RPS = 5000
TARGET_P99_MS = 20.0
COLL = "/rest/plan-scripts"


class SetupError(Exception):
    pass


class BodyError(Exception):
    pass


def log(msg):
    print("[bench] " + msg, flush=True)


# ---- tools ----------------------------------------------------------------------------
def apt_install(candidates, why):
    """Install the first installable Debian package of `candidates`."""
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        raise SetupError("%s is missing and I am not root (and there is no sudo): "
                         "apt-get install %s" % (why, candidates[0]))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    updated = False
    for attempt in range(2):
        for pkg in candidates:
            log("%s is missing: apt-get install -y %s" % (why, pkg))
            r = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode == 0:
                log("installed Debian package %s" % pkg)
                return pkg
            log("apt-get install %s failed:\n%s" % (pkg, r.stdout[-1500:]))
        if updated:
            break
        log("apt-get update")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env)
        updated = True
    raise SetupError("cannot install %s (tried %s)" % (why, ", ".join(candidates)))


def ensure_tools():
    if not shutil.which("wrk"):
        apt_install(["wrk"], "wrk")
    if not shutil.which("openssl"):
        apt_install(["openssl"], "openssl")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not nginx:
        apt_install(["nginx-light", "nginx"], "nginx (the peer)")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        raise SetupError("nginx was installed but %s is not executable" % nginx)
    return nginx


def tool_version(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.stdout.strip().splitlines()[0] if r.stdout.strip() else "?"


# ---- machine --------------------------------------------------------------------------
def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    osname = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "mem_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "os": osname}


# ---- workload -------------------------------------------------------------------------
def plan_script_content(i):
    """About 1 KB of guestfish plan script with a handful of @attributes@."""
    return """# Plan script %03d: personalize a RHEL 8 OS volume after deployment.
# Generated by bench/api_bench.py. Attributes: host name, domain, management
# NIC, NTP server, SSH key; the ones with a default are optional.
mount /dev/rhel/root /
upload -<<END /etc/hostname
@HostName@.@DomainName:example.com@
END
upload -<<END /etc/sysconfig/network-scripts/ifcfg-eth0
DEVICE=eth0
BOOTPROTO=static
ONBOOT=yes
IPADDR=@ManagementNIC.ipaddress@
NETMASK=@ManagementNIC.netmask@
GATEWAY=@ManagementNIC.gateway@
DNS1=@ManagementNIC.dns1@
END
upload -<<END /etc/chrony.conf
server @NTPServer:0.pool.ntp.org@ iburst
driftfile /var/lib/chrony/drift
makestep 1.0 3
rtcsync
END
mkdir-p /root/.ssh
upload -<<END /root/.ssh/authorized_keys
@SSHPublicKey@
END
chmod 0600 /root/.ssh/authorized_keys
# Keep the image's firewall, open SSH only on the management network.
write-append /etc/sysconfig/iptables-config "IPTABLES_SAVE_ON_STOP=no\n"
ln-sf /usr/lib/systemd/system/sshd.service /etc/systemd/system/multi-user.target.wants/sshd.service
write /etc/motd "Deployed by HPE Image Streamer (plan script %03d)\\n"
touch /.autorelabel
umount /
""" % (i, i)


def plan_script_body(i, name):
    return {"name": name, "description": "Benchmark plan script %03d: hostname, network, NTP, SSH" % i,
            "planType": "deploy", "content": plan_script_content(i)}


# ---- HTTP helpers (urllib) ---------------------------------------------------------------
NO_VERIFY = ssl.create_default_context()
NO_VERIFY.check_hostname = False
NO_VERIFY.verify_mode = ssl.CERT_NONE


def fetch(url, token=None, method="GET"):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    h = {"X-API-Version": "2020"}
    if token:
        h["auth"] = token
    req = urllib.request.Request(url, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30, context=NO_VERIFY if url.startswith("https") else None) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def check_collection(body, names, where):
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise BodyError("%s: the collection is not JSON: %s" % (where, e))
    members = doc.get("members") if isinstance(doc, dict) else None
    if not isinstance(members, list) or len(members) != len(names):
        raise BodyError("%s: expected %d members, got %r" % (where, len(names), None if members is None else len(members)))
    if doc.get("total") != len(names) or doc.get("count") != len(names) or doc.get("type") != "PlanScriptCollection":
        raise BodyError("%s: wrong collection header: type=%r count=%r total=%r" %
                        (where, doc.get("type"), doc.get("count"), doc.get("total")))
    got = sorted(m.get("name") for m in members)
    if got != sorted(names):
        raise BodyError("%s: the member names are not the plan scripts created" % where)
    for m in members:
        if m.get("type") != "PlanScript" or not m.get("content") or not m.get("uri", "").startswith(COLL + "/"):
            raise BodyError("%s: member %r is not a complete plan script" % (where, m.get("name")))
        ca = m.get("customAttributes")
        if isinstance(ca, str):  # Image Streamer returns it as a JSON text
            ca = json.loads(ca)
        if not any(isinstance(a, dict) and a.get("name") == "HostName" for a in ca or []):
            raise BodyError("%s: member %r lacks its derived customAttributes" % (where, m.get("name")))
    return doc


def wait_port(port, proc, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SetupError("%s exited with status %d" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SetupError("%s did not listen on 127.0.0.1:%d" % (what, port))


# ---- nginx peer ------------------------------------------------------------------------------
def nginx_modules_absent(nginx):
    r = subprocess.run([nginx, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return set(re.findall(r"--without-http_(\w+)_module", r.stdout))


class Nginx:
    """nginx serving the streamerd response bodies as static files."""

    def __init__(self, nginx, tmp, tls, token, one_id, cert=None, key=None):
        self.nginx = nginx
        self.dir = os.path.join(tmp, "nginx-" + ("https" if tls else "http"))
        self.port = harness.free_port()
        self.tls = tls
        self.token = token
        self.one_id = one_id
        self.cert, self.key = cert, key
        self.proc = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def start(self, coll_body, one_body):
        root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(self.dir, "temp"), exist_ok=True)
        os.makedirs(root, exist_ok=True)
        for name, body in (("collection.json", coll_body), ("one.json", one_body)):
            with open(os.path.join(root, name), "wb") as f:
                f.write(body)
        temps = "client_body_temp_path %s/temp/body;\n" % self.dir
        absent = nginx_modules_absent(self.nginx)
        for mod in ("proxy", "fastcgi", "uwsgi", "scgi"):
            if mod not in absent:
                temps += "  %s_temp_path %s/temp/%s;\n" % (mod, self.dir, mod)
        user = ""
        if os.geteuid() == 0:
            user = "user root root;"  # workers must read the files in our 0700 temp dir
        listen = "127.0.0.1:%d%s" % (self.port, " ssl" if self.tls else "")
        ssl_conf = ("ssl_certificate %s;\n    ssl_certificate_key %s;\n"
                    "    ssl_protocols TLSv1.2 TLSv1.3;" % (self.cert, self.key)) if self.tls else ""
        conf = """# generated by bench/api_bench.py — the static peer of streamerd
%(user)s
worker_processes %(workers)d;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  types { }
  default_type application/json;
  etag off;
  # No sendfile: on loopback the client's receive path costs ~1.5x more CPU for
  # sendfile()d page-cache data (measured: wrk 100-116 vs 67-76 us per 205 KB
  # response), and wrk shares the CPUs, so sendfile made nginx *slower* here.
  # One 256 KB buffer holds the whole collection body, as streamerd's does.
  sendfile off;
  output_buffers 1 256k;
  tcp_nodelay on;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  %(temps)s
  server {
    listen %(listen)s;
    %(ssl)s
    root %(root)s;
    # the same session check streamerd does: a wrong or missing auth header is a 401
    if ($http_auth != "%(token)s") { return 401; }
    add_header Cache-Control no-store always;
    add_header X-Content-Type-Options nosniff always;
    # GET: the collection; POST: a no-op 201 with a single-resource body
    location = %(coll)s { try_files /collection.json =404; error_page 405 =201 /created.json; }
    location = %(coll)s/%(id)s { try_files /one.json =404; }
    location = /created.json { internal; try_files /one.json =404; }
    location / { return 404; }
  }
}
""" % {"user": user, "workers": os.cpu_count() or 2, "dir": self.dir, "temps": temps,
       "listen": listen, "ssl": ssl_conf, "root": root, "token": self.token, "coll": COLL,
       "id": self.one_id}
        conf_path = os.path.join(self.dir, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        args = [self.nginx, "-p", self.dir, "-c", conf_path, "-e", os.path.join(self.dir, "error.log"),
                "-g", "daemon off;"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "stderr"), "wb"))
        try:
            wait_port(self.port, self.proc, "nginx")
        except SetupError:
            raise SetupError("nginx did not start:\n" + self.read_errors())
        return self

    def read_errors(self):
        out = ""
        for n in ("stderr", "error.log"):
            try:
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    out += f.read()[-3000:]
            except OSError:
                pass
        return out

    def pids(self):
        """The master and its workers."""
        if not self.proc:
            return []
        out = [self.proc.pid]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                            out.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown of master and workers
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(10)
        self.proc = None


# ---- wrk -----------------------------------------------------------------------------------
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * _UNIT[m.group(2)] if m else None


def parse_wrk(out):
    """Figures from wrk's text output, plus the exact ones of report.lua's WRK_JSON line."""
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out)
    if m:
        r["text_requests"] = int(m.group(1))
    lat = {}
    for q, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M):
        lat["p" + q] = _ms(v)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sock = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else \
        {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"^WRK_JSON (.*)$", out, re.M)
    if m:
        j = json.loads(m.group(1))
        p = j["latency_us"]["percentiles"]
        r["requests"] = j["requests"]
        r["duration_s"] = j["duration_us"] / 1e6
        r["bytes"] = j["bytes"]
        r["rps_exact"] = j["requests"] / (j["duration_us"] / 1e6) if j["duration_us"] else None
        lat = {"p50": p["50"] / 1000, "p75": p["75"] / 1000, "p90": p["90"] / 1000, "p99": p["99"] / 1000,
               "p99.9": p["99.9"] / 1000, "max": j["latency_us"]["max"] / 1000,
               "mean": j["latency_us"]["mean"] / 1000}
        non2xx = j["errors"]["status"]  # wrk counts status > 399 here; same number as the text line
        sock = {k: j["errors"][k] for k in ("connect", "read", "write", "timeout")}
    r["latency_ms"] = lat
    r["non2xx"] = non2xx
    r["socket_errors"] = sock
    r["errors"] = non2xx + sum(sock.values())
    if r.get("rps") is None and r.get("rps_exact") is not None:
        r["rps"] = r["rps_exact"]
    if r.get("rps") is None or "p99" not in lat:
        raise SetupError("cannot parse wrk's output:\n" + out)
    return r


def run_wrk(url, token, script, duration, threads, conns, script_args=()):
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency",
           "-s", script, "-H", "auth: %s" % token, "-H", "X-API-Version: 2020", url]
    if script_args:
        cmd += ["--"] + list(script_args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=duration + 120)
    if r.returncode != 0:
        raise SetupError("wrk failed (%d):\n%s" % (r.returncode, r.stdout))
    shown = cmd[:]
    shown[shown.index("auth: %s" % token)] = "auth: $TOKEN"
    return r.stdout, " ".join(("'%s'" % a) if " " in a else a for a in shown)


# ---- CPU accounting ------------------------------------------------------------------------
# The machine may be shared (other builds, tests): every run records the CPU
# time the server used, wrk used, and everything else used, from /proc.
TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads
    except (OSError, IndexError, ValueError):
        return 0.0


def _stat():
    """(busy, irq) CPU seconds of all CPUs since boot. irq+softirq is kept apart: with
    IRQ time accounting the loopback TCP work of both ends lands there, not in any process."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK, (v[5] + v[6]) / TICK  # busy = all but idle, iowait


def _busy():
    return _stat()[0]


def busy_fraction(seconds=1.0):
    """Fraction of all CPUs busy over `seconds` (nothing of ours is running then)."""
    b0, t0 = _busy(), time.monotonic()
    time.sleep(seconds)
    return (_busy() - b0) / ((time.monotonic() - t0) * (os.cpu_count() or 1))


def wait_quiet(max_wait, threshold=0.25):
    busy = busy_fraction()
    deadline = time.monotonic() + max_wait
    if busy > threshold:
        log("other processes keep %.0f%% of the CPUs busy; waiting up to %ds for them to drop below %.0f%% "
            "(--wait-quiet)" % (100 * busy, max_wait, 100 * threshold))
    while busy > threshold and time.monotonic() < deadline:
        time.sleep(4)
        busy = busy_fraction()
    if busy > threshold:
        log("WARNING: the machine is busy (%.0f%% of the CPUs used by others): expect noisy figures" % (100 * busy))
    return round(100 * busy, 1)


def cpu_snapshot(pids):
    ch = os.times()
    busy, irq = _stat()
    return {"t": time.monotonic(), "busy": busy, "irq": irq, "server": sum(_proc_cpu(p) for p in pids),
            "children": ch.children_user + ch.children_system}


def cpu_delta(a, b, requests):
    wall = b["t"] - a["t"]
    server, wrk, busy = b["server"] - a["server"], b["children"] - a["children"], b["busy"] - a["busy"]
    irq = b["irq"] - a["irq"]
    others = max(0.0, busy - irq - server - wrk)
    ncpu = os.cpu_count() or 1
    return {"wall_s": round(wall, 2), "server_s": round(server, 2), "wrk_s": round(wrk, 2),
            "softirq_s": round(irq, 2), "others_s": round(others, 2),
            "others_pct": round(100 * others / (wall * ncpu), 1) if wall else 0,
            "wrk_us_per_req": round(wrk * 1e6 / requests, 1) if requests else None,
            "server_us_per_req": round(server * 1e6 / requests, 1) if requests else None}


def median_run(runs):
    """The run with the median req/s; the others' figures are kept in it."""
    order = sorted(runs, key=lambda r: r["rps"])
    m = dict(order[(len(order) - 1) // 2]) if len(order) % 2 else dict(order[len(order) // 2 - 1])
    if len(runs) > 1:
        m["repeats"] = [{"rps": r["rps"], "p99_ms": r["latency_ms"]["p99"], "errors": r["errors"],
                         "server_us_per_req": r["cpu"]["server_us_per_req"], "others_pct": r["cpu"]["others_pct"]}
                        for r in runs]
        # an error in any repeat is an error of the test
        m["errors_all_repeats"] = sum(r["errors"] for r in runs)
    return m


# ---- perf (optional: --perf DIR) ----------------------------------------------------------
def perf_start(outdir, pid, tag):
    os.makedirs(outdir, exist_ok=True)
    data = os.path.join(os.path.abspath(outdir), tag + ".data")
    # cpu-clock works on VMs without hardware counters; DWARF call graphs because
    # the build keeps no frame pointers. -F 499 keeps the files small.
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "499", "--call-graph", "dwarf,16384",
                          "-p", str(pid), "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return p, data


def perf_stop(p, data):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    for kind, extra in (("self", ["--no-children"]), ("children", ["--children"])):
        with open(data[:-5] + "-%s.txt" % kind, "w") as f:
            subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0.7",
                            "--sort", "dso,symbol"] + extra, stdout=f, stderr=subprocess.DEVNULL)
    log("perf profile: %s (summaries %s-self.txt, -children.txt)" % (data, data[:-5]))


# ---- the run ----------------------------------------------------------------------------------
TESTS = [
    ("get_collection", "GET %s (100 members)" % COLL),
    ("get_one", "GET %s/{id}" % COLL),
    ("post", "POST %s (new, unique name)" % COLL),
]


def seed(tmp, n):
    """A data dir with n plan scripts, made by a plain-HTTP streamerd."""
    srv = harness.Server(tls=False, data_dir=os.path.join(tmp, "seed"))
    shutil.rmtree(srv.tmp)  # keep everything under our own temp dir
    srv.tmp = os.path.join(tmp, "seed-run")
    os.makedirs(srv.tmp, exist_ok=True)
    srv.log_path = os.path.join(srv.tmp, "streamerd.log")
    srv.start()
    try:
        srv.login()
        names = []
        for i in range(n):
            name = "Bench plan script %03d" % i
            r = srv.request("POST", COLL, plan_script_body(i, name))
            if r.status != 201:
                raise SetupError("creating plan script %d: %r" % (i, r))
            names.append(name)
    finally:
        rc = srv.stop()
    if rc != 0:
        raise SetupError("streamerd (seeding) exited with %r:\n%s" % (rc, srv.read_log()[-3000:]))
    return srv.data_dir, names


def start_streamerd(tmp, seed_dir, proto, threads_arg):
    d = os.path.join(tmp, "streamerd-" + proto)
    shutil.copytree(seed_dir, os.path.join(d, "data"))
    extra = ["--log-level", "info"] + (["--http-threads", str(threads_arg)] if threads_arg else [])
    srv = harness.Server(tls=(proto == "https"), data_dir=os.path.join(d, "data"), extra_args=extra)
    shutil.rmtree(srv.tmp)  # keep everything under our own temp dir
    srv.tmp = d
    srv.log_path = os.path.join(d, "streamerd.log")
    srv.start()
    srv.login()
    return srv


def sanity(srv, peer, names, one_id, when):
    """Both servers return the same bytes; the collection has the 100 members; no auth is a 401."""
    st, _, coll = fetch(srv.url + COLL, srv.token)
    if st != 200:
        raise BodyError("%s: streamerd GET %s -> %d %r" % (when, COLL, st, coll[:300]))
    check_collection(coll, names, "%s: streamerd %s" % (when, COLL))
    st, _, one = fetch(srv.url + COLL + "/" + one_id, srv.token)
    if st != 200 or json.loads(one).get("id") != one_id:
        raise BodyError("%s: streamerd GET %s/%s -> %d %r" % (when, COLL, one_id, st, one[:300]))
    st, _, _ = fetch(srv.url + COLL, None)
    if st != 401:
        raise BodyError("%s: streamerd without auth -> %d, expected 401" % (when, st))
    if peer:
        for path, want in ((COLL, coll), (COLL + "/" + one_id, one)):
            st, _, got = fetch(peer.url + path, srv.token)
            if st != 200 or got != want:
                raise BodyError("%s: nginx GET %s -> %d, body %s streamerd's" %
                                (when, path, st, "equal to" if got == want else "different from"))
        st, _, _ = fetch(peer.url + COLL, None)
        if st != 401:
            raise BodyError("%s: nginx without auth -> %d, expected 401" % (when, st))
    return coll, one


def post_body_file(tmp):
    path = os.path.join(tmp, "post-body.json")
    body = json.dumps(plan_script_body(999, "__BENCH_NAME__"), separators=(",", ":"))
    with open(path, "w") as f:
        f.write(body)
    return path, len(body.encode()) - len("__BENCH_NAME__") + len("post-https-s-1-12345")


def count_created(srv, prefix):
    """Plan scripts whose name starts with prefix- (counted client-side from the full collection)."""
    st, _, body = fetch(srv.url + COLL + "?count=-1", srv.token)
    if st != 200:
        raise BodyError("after POST: GET %s -> %d" % (COLL, st))
    return sum(1 for m in json.loads(body)["members"] if m["name"].startswith(prefix + "-"))


def status_tally(log_text, since):
    tally = {}
    for st in re.findall(r"POST /rest/plan-scripts -> (\d+)", log_text[since:]):
        tally[st] = tally.get(st, 0) + 1
    return tally


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per GET run (default 10)")
    ap.add_argument("--post-duration", type=int, default=5, help="seconds per POST run (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of untimed load before each GET test")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per GET test and server, alternating servers; the median is reported")
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--members", type=int, default=100, help="plan scripts in the collection (default 100)")
    ap.add_argument("--http-threads", type=int, default=0, help="streamerd --http-threads (default: its own)")
    ap.add_argument("--wait-quiet", type=int, default=120, metavar="SEC",
                    help="wait up to SEC seconds for other processes to leave the CPUs idle (default 120)")
    ap.add_argument("--perf", metavar="DIR", help="perf record streamerd during its first run of each test "
                    "into DIR (perf from linux-perf must be installed)")
    ap.add_argument("--proto", choices=["http", "https", "both"], default="both")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "api.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    a = ap.parse_args()
    TESTS[0] = ("get_collection", "GET %s (%d members)" % (COLL, a.members))

    if not os.access(harness.STREAMERD, os.X_OK):
        log("no %s: run make first" % harness.STREAMERD)
        return 1
    tmp = tempfile.mkdtemp(prefix="streamer-bench-")
    servers = []
    results = []
    try:
        nginx = ensure_tools()
        # Benchmark a private copy of the binary: a concurrent `make` may replace
        # build/bin/streamerd between runs (and perf needs the file to stay).
        binary = os.path.join(tmp, "streamerd")
        shutil.copy2(harness.STREAMERD, binary)
        harness.STREAMERD = binary
        info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine_info(), "wrk": tool_version(["wrk", "--version"]),
                "nginx": tool_version([nginx, "-v"]), "openssl": tool_version(["openssl", "version"]),
                "streamerd": tool_version([harness.STREAMERD, "--version"]),
                "git_commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             text=True).stdout.strip() or "?",
                "src_modified_since_commit": bool(subprocess.run(
                    ["git", "-C", REPO, "status", "--porcelain", "--", "src"], stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True).stdout.strip()),
                "config": {"wrk_threads": a.threads, "connections": a.connections, "get_seconds": a.duration,
                           "post_seconds": a.post_duration, "warmup_seconds": a.warmup, "get_repeats": a.repeat, "members": a.members,
                           "streamerd_http_threads": a.http_threads or "default (CPUs)",
                           "nginx_workers": os.cpu_count()}}
        with open("/proc/loadavg") as f:
            info["loadavg_before"] = f.read().split()[:3]
        log("load average before the runs: %s (other processes compete with wrk and the servers for the CPUs; "
            "see the 'other' column)" % " ".join(info["loadavg_before"]))
        info["others_busy_pct_before"] = wait_quiet(a.wait_quiet)
        log("machine: %(cpu_model)s, %(cpus)d CPUs, %(mem_gib)s GiB, %(os)s, kernel %(kernel)s" % info["machine"])
        log("%s; %s; %s" % (info["wrk"], info["nginx"], info["openssl"]))

        cert, key = os.path.join(tmp, "nginx-cert.pem"), os.path.join(tmp, "nginx-key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise SetupError("openssl req failed:\n" + r.stdout)

        log("seeding %d plan scripts (~%d bytes of content each)" % (a.members, len(plan_script_content(0))))
        seed_dir, names = seed(tmp, a.members)
        body_file, post_len = post_body_file(tmp)
        get_script = os.path.join(HERE, "get.lua")
        post_script = os.path.join(HERE, "post_plan_script.lua")
        protos = ["http", "https"] if a.proto == "both" else [a.proto]

        for proto in protos:
            srv = start_streamerd(tmp, seed_dir, proto, a.http_threads)
            servers.append(srv)
            st, _, body = fetch(srv.url + COLL + "?count=1", srv.token)
            if st != 200:
                raise BodyError("GET %s?count=1 -> %d" % (COLL, st))
            one_id = json.loads(body)["members"][0]["id"]
            peer = Nginx(nginx, tmp, proto == "https", srv.token, one_id, cert, key)
            servers.append(peer)
            st, _, coll = fetch(srv.url + COLL, srv.token)
            st2, _, one = fetch(srv.url + COLL + "/" + one_id, srv.token)
            peer.start(coll, one)
            coll, one = sanity(srv, peer, names, one_id, "%s before the runs" % proto)
            log("%s: streamerd %s, nginx %s; collection %d bytes, one plan script %d bytes; bodies identical"
                % (proto, srv.url, peer.url, len(coll), len(one)))
            sizes = {"get_collection": len(coll), "get_one": len(one), "post": post_len}

            for test, title in TESTS:
                reps = 1 if test == "post" else a.repeat  # POST changes the collection: once
                runs = {"streamerd": [], "nginx": []}
                for rep in range(reps):
                    # streamerd and nginx alternate, so that a neighbour's load hits both alike
                    for name, base, pids in (("streamerd", srv.url, lambda: [srv.proc.pid]),
                                             ("nginx", peer.url, peer.pids)):
                        url = base + (COLL + "/" + one_id if test == "get_one" else COLL)
                        if test == "post":
                            prefix = "post-%s-%s" % (proto, name[0])
                            args, script, dur = (body_file, prefix), post_script, a.post_duration
                        else:
                            args, script, dur = (), get_script, a.duration
                            if rep == 0 and a.warmup > 0:
                                run_wrk(url, srv.token, script, a.warmup, a.threads, a.connections)
                        log_mark = len(srv.read_log())
                        prof = None
                        if a.perf and name == "streamerd" and rep == 0:
                            prof = perf_start(a.perf, srv.proc.pid, "%s-%s" % (proto, test))
                        cpu0 = cpu_snapshot(pids())
                        out, cmd = run_wrk(url, srv.token, script, dur, a.threads, a.connections, args)
                        if prof:
                            perf_stop(*prof)
                        res = parse_wrk(out)
                        res["cpu"] = cpu_delta(cpu0, cpu_snapshot(pids()), res.get("requests"))
                        res.update({"test": test, "title": title, "proto": proto, "server": name,
                                    "cmd": cmd, "body_bytes": sizes[test], "wrk_output": out})
                        if not (srv.proc and srv.proc.poll() is None):
                            raise SetupError("streamerd died during %s:\n%s" % (title, srv.read_log()[-3000:]))
                        if not peer.alive():
                            raise SetupError("nginx died during %s:\n%s" % (title, peer.read_errors()))
                        if test == "post" and name == "streamerd":
                            # Requests in flight when wrk stopped are still being served:
                            # wait until the count is stable before comparing.
                            created, deadline = count_created(srv, prefix), time.time() + 30
                            while time.time() < deadline:
                                time.sleep(0.5)
                                again = count_created(srv, prefix)
                                if again == created:
                                    break
                                created = again
                            tally = status_tally(srv.read_log(), log_mark)
                            ok = res["requests"] - res["non2xx"] if "requests" in res else None
                            res["post"] = {"created": created, "status_tally_from_log": tally,
                                           "wrk_successes": ok}
                            # wrk's total misses the requests in flight when it stops, so
                            # created may exceed its successes by up to one per connection.
                            if ok is not None and not (ok <= created <= ok + a.connections):
                                raise BodyError("POST: wrk saw %d successes but %d plan scripts exist"
                                                % (ok, created))
                        lat, c = res["latency_ms"], res["cpu"]
                        log("%s %-9s %s [%d/%d]: %.0f req/s, p50 %.2f p90 %.2f p99 %.2f ms, errors %d "
                            "(non-2xx %d, socket %s); server CPU %.0f us/req, others used %.0f%% of the CPUs%s"
                            % (proto, name, title, rep + 1, reps, res["rps"], lat["p50"], lat["p90"], lat["p99"],
                               res["errors"], res["non2xx"], sum(res["socket_errors"].values()),
                               c["server_us_per_req"] or 0, c["others_pct"],
                               (", created %d, statuses %s" % (res["post"]["created"],
                                                               res["post"]["status_tally_from_log"]))
                               if "post" in res else ""))
                        runs[name].append(res)
                for name in ("streamerd", "nginx"):
                    results.append(median_run(runs[name]))
                if test == "get_one":
                    sanity(srv, peer, names, one_id, "%s after the GET runs" % proto)
            peer.stop()
            rc = srv.stop()
            logtext = srv.read_log()
            if rc != 0 or "AddressSanitizer" in logtext or "runtime error:" in logtext:
                raise SetupError("streamerd (%s) exited with %r:\n%s" % (proto, rc, logtext[-3000:]))

        report(results, info, a)
        return 0
    except BodyError as e:
        log("WRONG RESPONSE BODY: %s" % e)
        return 1
    except (SetupError, subprocess.TimeoutExpired, OSError, RuntimeError) as e:
        log("setup failed: %s" % e)
        return 1
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # cleanup only
                log("stopping %s: %s" % (type(s).__name__, e))
        if a.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def ratio(a, b):
    return a / b if a is not None and b else None


def report(results, info, a):
    by = {(r["test"], r["proto"], r["server"]): r for r in results}
    ratios = []
    lines = []
    fmt = "%-34s %-5s %-9s %9s %7s %7s %7s %7s %6s %8s %6s"
    hdr = fmt % ("test", "proto", "server", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
                 "CPU us/r", "other")
    lines += [hdr, "-" * len(hdr)]
    for test, title in TESTS:
        for proto in ("http", "https"):
            s, n = by.get((test, proto, "streamerd")), by.get((test, proto, "nginx"))
            if not s or not n:
                continue
            for r in (s, n):
                L, c = r["latency_ms"], r["cpu"]
                lines.append(fmt % (title if r is s else "", proto if r is s else "", r["server"],
                                    "%.0f" % r["rps"], "%.2f" % L["p50"], "%.2f" % L["p90"], "%.2f" % L["p99"],
                                    "%.1f" % L.get("max", float("nan")), r.get("errors_all_repeats", r["errors"]),
                                    "%.0f" % (c["server_us_per_req"] or 0), "%.0f%%" % c["others_pct"]))
            q = {"test": test, "proto": proto, "rps": ratio(s["rps"], n["rps"]),
                 "p50": ratio(s["latency_ms"]["p50"], n["latency_ms"]["p50"]),
                 "p90": ratio(s["latency_ms"]["p90"], n["latency_ms"]["p90"]),
                 "p99": ratio(s["latency_ms"]["p99"], n["latency_ms"]["p99"]),
                 "cpu_per_request": ratio(s["cpu"]["server_us_per_req"], n["cpu"]["server_us_per_req"])}
            ratios.append(q)
            x = lambda v: "%.2fx" % v if v is not None else "-"  # noqa: E731
            lines.append(fmt % ("", "", "streamerd/nginx", x(q["rps"]), x(q["p50"]), x(q["p90"]), x(q["p99"]),
                                "", "", x(q["cpu_per_request"]), ""))
    print()
    print("REST API benchmark: streamerd vs nginx (static files, same bodies), wrk -t%d -c%d, loopback; "
          "GET figures are the median of %d runs (by req/s)" % (a.threads, a.connections, a.repeat))
    print("CPU us/r = server CPU time per request (all its threads); other = CPU time of unrelated processes "
          "(not the server, not wrk, not irq/softirq) in % of all CPUs during the run")
    print("\n".join(lines))
    target = {}
    for proto in ("http", "https"):
        r = by.get(("get_collection", proto, "streamerd"))
        if r:
            met = r["rps"] >= TARGET_GET_RPS and r["latency_ms"]["p99"] <= TARGET_P99_MS and r["errors"] == 0
            target[proto] = {"rps": r["rps"], "p99_ms": r["latency_ms"]["p99"], "errors": r["errors"], "met": met}
            print("target GET collection >= %d req/s, p99 <= %g ms, 0 errors (%s): %s (%.0f req/s, p99 %.2f ms, "
                  "%d errors)" % (TARGET_GET_RPS, TARGET_P99_MS, proto, "MET" if met else "NOT MET", r["rps"],
                                  r["latency_ms"]["p99"], r["errors"]))
    # Little's law for a closed loop: mean latency = connections / throughput, and
    # p99 >= mean, so p99 <= P needs at least connections / P requests per second.
    floor = a.connections / (TARGET_P99_MS / 1000)
    print("note: with %d connections, p99 <= %g ms implies >= %.0f req/s (Little's law: mean latency = "
          "connections / throughput)" % (a.connections, TARGET_P99_MS, floor))
    errs = [r for r in results if r.get("errors_all_repeats", r["errors"])]
    for r in errs:
        print("ERRORS: %s %s %s: %d in all runs; median run: %d non-2xx/3xx, socket %s%s" % (
            r["proto"], r["server"], r["title"], r.get("errors_all_repeats", r["errors"]), r["non2xx"],
            r["socket_errors"], (", statuses %s" % r["post"]["status_tally_from_log"]) if "post" in r else ""))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    summary = dict(info)
    summary["target"] = {"get_collection_rps": TARGET_GET_RPS, "p99_ms": TARGET_P99_MS, "by_proto": target,
                         "rps_implied_by_p99_at_these_connections": round(floor)}
    summary["results"] = [{k: v for k, v in r.items() if k != "wrk_output"} for r in results]
    summary["ratios_streamerd_over_nginx"] = ratios
    summary["table"] = lines
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with open(os.path.splitext(a.out)[0] + "-wrk.txt", "w") as f:
        for r in results:
            f.write("### %s %s %s\n$ %s\n%s\n" % (r["proto"], r["server"], r["title"], r["cmd"], r["wrk_output"]))
    print("wrote %s (and the raw wrk output next to it)" % os.path.relpath(a.out, os.getcwd()))


if __name__ == "__main__":
    sys.exit(main())
