"""iscsi_env.py — what the iSCSI end-to-end tests (tests/e2e/test_iscsi_*.py) and
bench/iscsi_bench.py share: exported disks on Streamer's target or on tgtd, iSCSI
URLs, the libiscsi tools, and qemu + iPXE boots with a bounded run time.

Target under test: Streamer (default), or tgtd when the environment has
STREAMER_ISCSI_PEER=tgtd — the same tests then prove themselves against the
reference target (`STREAMER_ISCSI_PEER=tgtd make e2e` or
`STREAMER_ISCSI_PEER=tgtd /usr/bin/python3 tests/e2e/run.py iscsi`).

A Target's create() returns an Export: portal, target IQN, LUN (0 on Streamer,
1 on tgtd whose LUN 0 is a controller), CHAP credentials if any.

Only the Python standard library and Debian tools (libiscsi-bin, qemu-utils,
qemu-block-extra, qemu-system-x86, ipxe-qemu, tgt) are used.
"""
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

from tgtd import Tgtd

PEER = os.environ.get("STREAMER_ISCSI_PEER", "").strip().lower()  # "" (Streamer) or "tgtd"
TEST_INITIATOR = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
TEST_INITIATOR_2 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"


class Export:
    def __init__(self, host, port, iqn, lun, chap=None, initiators=(), path=None, uri=None, doc=None):
        self.host, self.port, self.iqn, self.lun = host, port, iqn, lun
        self.chap = chap              # (user, secret) or None
        self.initiators = list(initiators)
        self.path = path              # tgtd: the backing file
        self.uri = uri                # Streamer: the OS volume's URI
        self.doc = doc                # Streamer: the OS volume document

    @property
    def portal(self):
        return "%s:%d" % (self.host, self.port)

    def url(self, chap=True, lun=None):
        auth = ""
        if chap and self.chap:
            auth = "%s%%%s@" % self.chap
        return "iscsi://%s%s/%s/%d" % (auth, self.portal, self.iqn, self.lun if lun is None else lun)

    def __repr__(self):
        return "<Export %s %s lun %d%s>" % (self.portal, self.iqn, self.lun, " chap" if self.chap else "")


def parse_size(size):
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"(\d+)([KMGT]?)", str(size))
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2)]


# -- Streamer ------------------------------------------------------------------
def upload_golden(srv, path, name, timeout=300):
    """POST /rest/golden-images with `path` as a .raw file part; returns the document."""
    boundary = "streamer-iscsi-" + secrets.token_hex(8)
    head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s.raw"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n' % (boundary, name)).encode()
    tail = ("\r\n--%s--\r\n" % boundary).encode()
    size = os.path.getsize(path)
    c = srv.connection()
    c.timeout = timeout
    try:
        c.putrequest("POST", "/rest/golden-images?name=" + urllib.parse.quote(name))
        for k, v in (("X-API-Version", "2020"), ("auth", srv.token),
                     ("Content-Type", "multipart/form-data; boundary=" + boundary),
                     ("Content-Length", str(len(head) + size + len(tail)))):
            c.putheader(k, v)
        c.endheaders()
        c.send(head)
        with open(path, "rb") as f:
            c.sock.sendfile(f)
        c.send(tail)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        assert r.status == 202, "golden image upload: %d %s" % (r.status, body[:500])
    finally:
        c.close()
    task = srv.wait_task(json.loads(body)["uri"], timeout=timeout)
    assert task["taskState"] == "Completed", task
    gi = srv.request("GET", task["associatedResource"]["resourceUri"])
    assert gi.status == 200, gi
    return gi.json()


class StreamerTarget:
    """OS volumes exported by Streamer's target (POST /rest/os-volumes)."""
    name = "streamer"

    def __init__(self, srv):
        self.srv = srv
        self.golden = {}  # path -> golden image document

    def golden_image(self, path, name=None):
        if path not in self.golden:
            self.golden[path] = upload_golden(self.srv, path, name or "gi-" + secrets.token_hex(4))
        return self.golden[path]

    def create(self, name, size, initiators, image=None, chap=False, timeout=120):
        body = {"name": name, "size": size, "initiatorNames": list(initiators)}
        if image:
            body["goldenImageUri"] = self.golden_image(image)["uri"]
        if chap:
            body["chap"] = True
        r = self.srv.request("POST", "/rest/os-volumes", body)
        assert r.status == 202, "POST /rest/os-volumes: %r (is the os-volumes API in this build?)" % r
        task = self.srv.wait_task(r.json()["uri"], timeout=timeout)
        assert task["taskState"] == "Completed", task
        uri = task["associatedResource"]["resourceUri"]
        doc = self.srv.request("GET", uri).json()
        isc = doc["iscsi"]
        host, port = isc["portals"][0].rsplit(":", 1)
        creds = None
        if chap:
            c = self.srv.request("GET", uri + "/iscsi-credentials")
            assert c.status == 200, c
            creds = (c.json()["chapName"], c.json()["chapSecret"])
        return Export(host, int(port), isc["targetName"], isc.get("lun", 0), creds, initiators, uri=uri, doc=doc)

    def delete(self, ex):
        r = self.srv.request("DELETE", ex.uri)
        if r.status == 202:
            self.srv.wait_task(r.json()["uri"])
        else:
            assert r.status in (200, 204), r

    def pid(self):
        return self.srv.proc.pid

    def close(self):
        pass


# -- tgtd ------------------------------------------------------------------------
class TgtdTarget:
    """The same, on a tgtd of our own: raw file copies under a temp dir, LUN 1."""
    name = "tgtd"

    def __init__(self, tmpdir=None):
        self.tgtd = Tgtd(tmpdir=tmpdir).start()
        self.n = 0

    def create(self, name, size, initiators, image=None, chap=False, **_):
        self.n += 1
        path = os.path.join(self.tgtd.tmp, "%s.img" % name)
        if image:
            subprocess.run(["cp", "--sparse=always", image, path], check=True)
        with open(path, "ab") as f:
            f.truncate(max(parse_size(size), os.path.getsize(path)))
        iqn = "iqn.2024-11.org.streamer.test:%s" % re.sub(r"[^a-z0-9.-]", "-", name.lower())
        creds = ("streamer-%d" % self.n, secrets.token_hex(8)) if chap else None
        self.tgtd.add_target(iqn, path, initiators or ("ALL",), chap=creds)
        return Export("127.0.0.1", self.tgtd.port, iqn, 1, creds, initiators, path=path)

    def delete(self, ex):
        self.tgtd.remove_target(ex.iqn)
        os.unlink(ex.path)

    def pid(self):
        return self.tgtd.pid()

    def close(self):
        self.tgtd.cleanup()


def target(srv):
    """The target under test: Streamer behind `srv`, or tgtd (STREAMER_ISCSI_PEER=tgtd)."""
    if PEER == "tgtd":
        return TgtdTarget()
    if PEER:
        raise RuntimeError("STREAMER_ISCSI_PEER=%r: only tgtd is known" % PEER)
    return StreamerTarget(srv)


# -- tools -----------------------------------------------------------------------
def run_tool(args, timeout=60, check=True, env=None):
    # surrogateescape: iscsi-inq prints binary designators (VPD 0x83 NAA) as they are
    r = subprocess.run(args, capture_output=True, text=True, errors="surrogateescape", timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError("%s exited with %d:\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def iscsi_ls(ex, initiator, chap=None, timeout=30):
    """iscsi-ls -s against the portal as `initiator`: {target iqn: output lines}."""
    auth = "%s%%%s@" % chap if chap else ""
    r = run_tool(["iscsi-ls", "-s", "-i", initiator, "iscsi://%s%s" % (auth, ex.portal)], timeout, check=False)
    return r


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def random_file(path, size, seed=b"streamer", holes=True):
    """Deterministic pseudo-random data (SHAKE-256, ~0.5 GB/s) with, if `holes`,
    a hole every 8th MiB, so sparse handling is exercised."""
    with open(path, "wb") as f:
        off, i = 0, 0
        while off < size:
            n = min(1 << 20, size - off)
            if holes and (off >> 20) % 8 == 7:
                f.seek(n, 1)
            else:
                f.write(_chunk(seed, i, n))
            off += n
            i += 1
        f.truncate(size)


def _chunk(seed, i, n):
    # 1 MiB of non-repeating bytes: shake_256 is a XOF, one call per MiB.
    return hashlib.shake_256(seed + b":%d" % i).digest(n)


# -- qemu + iPXE -------------------------------------------------------------------
class QemuResult:
    def __init__(self, output, elapsed, matched, timed_out, returncode):
        self.output, self.elapsed, self.matched = output, elapsed, matched
        self.timed_out, self.returncode = timed_out, returncode

    def __repr__(self):
        return "<qemu %.1fs matched=%r timed_out=%s rc=%r>" % (self.elapsed, self.matched, self.timed_out,
                                                             self.returncode)


def ipxe_script(root_path, initiator, chap=None):
    # The ROM's autoboot already ran DHCP (it fetched this script), so no `dhcp` here.
    lines = ["#!ipxe", "set initiator-iqn %s" % initiator]
    if chap:
        lines += ["set username %s" % chap[0], "set password %s" % chap[1]]
    lines += ["echo STREAMER-IPXE-SANBOOT %s" % root_path,
              "sanboot %s || goto failed" % root_path,
              ":failed",
              "echo STREAMER-IPXE-FAILED",
              "shell"]
    return "\n".join(lines) + "\n"


def root_path(ex, host="10.0.2.2"):
    """iPXE's iscsi:<server>:<protocol>:<port>:<lun>:<iqn>. On Streamer the LUN field
    stays empty (LUN 0); on tgtd it must be 1 (LUN 0 is the controller)."""
    port = "" if ex.port == 3260 else str(ex.port)
    lun = "" if ex.lun == 0 else str(ex.lun)
    return "iscsi:%s::%s:%s:%s" % (host, port, lun, ex.iqn)


def qemu_ipxe_boot(script, patterns, timeout=60, tmpdir=None, mac=None):
    """Boot qemu (TCG) from its built-in iPXE ROM, which fetches `script` over
    slirp's TFTP; stream the serial console and stop at the first line matching
    one of `patterns` (regexes matched against complete lines; the key of the
    first one in `patterns` order that matched is returned in .matched) or at
    `timeout`. qemu is always killed before this returns. `mac`: the NIC's MAC address
    (qemu's default is 52:54:00:12:34:56)."""
    tmp = tempfile.mkdtemp(prefix="streamer-ipxe-", dir=tmpdir)
    out = bytearray()
    proc = None
    t0 = time.time()
    matched, timed_out = None, False
    try:
        with open(os.path.join(tmp, "boot.ipxe"), "w") as f:
            f.write(script)
        args = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
                "-boot", "n", "-nodefaults", "-serial", "stdio", "-vga", "none", "-monitor", "none",
                "-netdev", "user,id=n0,tftp=%s,bootfile=boot.ipxe" % tmp,
                "-device", "e1000,netdev=n0" + (",mac=%s" % mac if mac else "")]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        done = threading.Event()

        def reader():
            while True:
                b = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
                if not b:
                    break
                out.extend(b)
                whole = bytes(out[:out.rfind(b"\n") + 1])  # complete lines only
                if any(re.search(p.encode(), whole) for p in patterns.values()):
                    done.set()
            done.set()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        if not done.wait(timeout):
            timed_out = True
        text = bytes(out[:out.rfind(b"\n") + 1]).decode("utf-8", "replace")
        for k, p in patterns.items():
            if re.search(p, text):
                matched = k
                break
    finally:
        if proc:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", bytes(out).decode("utf-8", "replace"))
    return QemuResult(text, time.time() - t0, matched, timed_out, proc.returncode if proc else None)
