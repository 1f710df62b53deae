"""test_iscsi_tools.py — exported OS volumes seen through user-space initiators.

libiscsi's tools (Debian libiscsi-bin): iscsi-ls (SendTargets discovery lists
only the targets the initiator may use), iscsi-inq (standard INQUIRY, VPD serial
and device identification, stable per volume), iscsi-readcapacity16; and qemu's
libiscsi block driver (Debian qemu-block-extra): `qemu-img convert` from
`iscsi://127.0.0.1:PORT/<iqn>/0` byte-identical to the uploaded golden image
(plus zeros up to the volume size), writes with `qemu-img convert -n` and
`qemu-io` read back, copy-on-write (a second clone of the golden image still
reads the original), one-way CHAP (no / wrong secret refused), and a deleted
volume's target gone from discovery and login.

STREAMER_ISCSI_PEER=tgtd runs the same against tgtd (LUN 1 there).
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "iscsi"))
import iscsi_env  # noqa: E402
from iscsi_env import run_tool  # noqa: E402

INI_A = "iqn.2024-11.org.streamer.test:tools-a"
INI_B = "iqn.2024-11.org.streamer.test:tools-b"
STRANGER = "iqn.2024-11.org.streamer.test:stranger"
QEMU_DEFAULT = "iqn.2008-11.org.linux-kvm"   # qemu-img's initiator name with an iscsi:// URL
MIB = 1 << 20
VOL = 32 * MIB
IMG = 24 * MIB


def discovered(ex, initiator, chap=None):
    """Target IQNs that iscsi-ls (SendTargets) shows `initiator` on ex's portal."""
    auth = "%s%%%s@" % chap if chap else ""
    r = run_tool(["iscsi-ls", "--url", "-i", initiator, "iscsi://%s%s" % (auth, ex.portal)], check=False)
    assert r.returncode == 0 or "Target:" not in r.stdout, r
    return set(re.findall(r"iscsi://[^/]+/([^/\s]+)/\d+", r.stdout))


def inq(ex, initiator, *extra, check=True, chap=True):
    return run_tool(["iscsi-inq", "-i", initiator] + list(extra) + [ex.url(chap=chap)], check=check)


def qemu_opts(ex, initiator, secret_id=None):
    o = "driver=iscsi,transport=tcp,portal=%s,target=%s,lun=%d,initiator-name=%s" % (ex.portal, ex.iqn, ex.lun,
                                                                                     initiator)
    if ex.chap and secret_id:
        o += ",user=%s,password-secret=%s" % (ex.chap[0], secret_id)
    return o


def sha_of(data_path, size):
    """SHA-256 of data_path's bytes zero-extended to `size`."""
    h = hashlib.sha256()
    n = 0
    with open(data_path, "rb") as f:
        for b in iter(lambda: f.read(MIB), b""):
            h.update(b)
            n += len(b)
    while n < size:
        k = min(MIB, size - n)
        h.update(bytes(k))
        n += k
    return h.hexdigest()


class Env:
    def __init__(self, srv):
        self.tmp = tempfile.mkdtemp(prefix="streamer-iscsi-tools-")
        self.tgt = iscsi_env.target(srv)
        self.srv = srv
        self.image = os.path.join(self.tmp, "golden.raw")
        iscsi_env.random_file(self.image, IMG)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def close(self):
        try:
            self.tgt.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def check_document(env, ex, initiators, chap=False):
    """Streamer only: the OS volume document's iscsi block (issue 4 §5)."""
    if iscsi_env.PEER:
        return
    isc = ex.doc["iscsi"]
    assert ex.lun == 0 and isc["lun"] == 0, isc
    assert re.fullmatch(r"iqn\.2024-11\.org\.streamer:vol\.[a-z0-9.-]+\.[0-9a-f]{8}", isc["targetName"]), isc
    assert isc["portals"] == ["127.0.0.1:%d" % env.srv.iscsi_port], (isc, env.srv.iscsi_port)
    assert sorted(isc["initiatorNames"]) == sorted(initiators), isc
    assert bool(isc.get("chap")) == chap or bool(isc.get("chapName")) == chap, isc
    assert ex.doc.get("oeVolumeIQN") in (None, isc["targetName"]), ex.doc
    assert "chapSecret" not in str(ex.doc), ex.doc


def test_iscsi_discovery_and_scsi_identity(srv):
    env = Env(srv)
    try:
        a = env.tgt.create("tools-a", "32M", [INI_A], image=env.image)
        b = env.tgt.create("tools-b", "32M", [INI_B])
        check_document(env, a, [INI_A])
        check_document(env, b, [INI_B])
        assert a.iqn != b.iqn

        # SendTargets: each initiator sees exactly its own target, a stranger none
        assert discovered(a, INI_A) == {a.iqn}, discovered(a, INI_A)
        assert discovered(a, INI_B) == {b.iqn}, discovered(a, INI_B)
        assert discovered(a, STRANGER) == set()
        r = run_tool(["iscsi-ls", "-s", "-i", INI_A, "iscsi://" + a.portal])
        assert "Target:%s" % a.iqn in r.stdout and b.iqn not in r.stdout, r.stdout
        assert re.search(r"Lun:%d\s+Type:DIRECT_ACCESS \(Size:3\dM\)" % a.lun, r.stdout), r.stdout

        # login refused to another volume's initiator and to a stranger
        for ini in (INI_B, STRANGER):
            r = inq(a, ini, check=False)
            assert r.returncode != 0 and "Login Failed" in r.stdout + r.stderr, r

        # INQUIRY: a disk, not removable; VPD pages with a serial and an NAA LU designator
        out = inq(a, INI_A).stdout
        assert "Peripheral Device Type:DIRECT_ACCESS" in out and "Removable:0" in out, out
        assert "Peripheral Qualifier:CONNECTED" in out, out
        pages = inq(a, INI_A, "-e", "1").stdout
        for p in ("0x00", "0x80", "0x83", "0xb0", "0xb1", "0xb2"):
            assert "Page:%s " % p in pages, pages
        serial_a = inq(a, INI_A, "-e", "1", "-c", "128").stdout
        serial_b = inq(b, INI_B, "-e", "1", "-c", "128").stdout
        assert re.search(r"Unit Serial Number:\[\s*\S+\]", serial_a), serial_a
        assert serial_a != serial_b, (serial_a, serial_b)
        assert inq(a, INI_A, "-e", "1", "-c", "128").stdout == serial_a  # stable across sessions
        ident = inq(a, INI_A, "-e", "1", "-c", "131").stdout
        assert re.search(r"Association:\(0\) LOGICAL_UNIT\s+Designator Type:\(3\) NAA", ident), ident
        assert inq(a, INI_A, "-e", "1", "-c", "131").stdout == ident

        # READ CAPACITY (16): the volume's size in 512-byte blocks
        rc = run_tool(["iscsi-readcapacity16", "-i", INI_A, a.url()]).stdout
        assert "Total size:%d" % VOL in rc, rc
        assert "LOGICAL BLOCK LENGTH IN BYTES:512" in rc, rc
        assert "RETURNED LOGICAL BLOCK ADDRESS:%d" % (VOL // 512 - 1) in rc, rc
        if not iscsi_env.PEER:
            assert "LBPME:1" in rc, rc  # thin provisioning (tgtd: LBPME:0)
        size = run_tool(["iscsi-readcapacity16", "-s", "-i", INI_B, b.url()]).stdout.strip()
        assert size == str(VOL), size
    finally:
        env.close()


def test_iscsi_qemu_img_data_path(srv):
    env = Env(srv)
    try:
        # the golden image's clone, read with the plain iscsi:// URL (qemu's own initiator name)
        a = env.tgt.create("qemu-a", "32M", [QEMU_DEFAULT, INI_A], image=env.image)
        out = env.path("a.raw")
        run_tool(["qemu-img", "convert", "-f", "raw", "-O", "raw", a.url(), out], timeout=120)
        assert os.path.getsize(out) == VOL
        assert iscsi_env.sha256_file(out) == sha_of(env.image, VOL), "the clone does not read as the golden image"

        # an empty volume: write an image with qemu-img, read it back byte for byte
        b = env.tgt.create("qemu-b", "32M", [INI_B])
        src = env.path("b-src.raw")
        iscsi_env.random_file(src, VOL, seed=b"second")
        run_tool(["qemu-img", "convert", "-n", "-f", "raw", src, "--target-image-opts", qemu_opts(b, INI_B)],
                 timeout=120)
        back = env.path("b-back.raw")
        run_tool(["qemu-img", "convert", "--image-opts", qemu_opts(b, INI_B), "-O", "raw", back], timeout=120)
        assert iscsi_env.sha256_file(back) == iscsi_env.sha256_file(src)

        # copy-on-write: overwrite 4 MiB of the clone (qemu-io verifies the pattern on
        # read-back), and a second clone of the same golden image still reads the original
        r = run_tool(["qemu-io", "--image-opts", qemu_opts(a, INI_A), "-c", "write -P 0xa5 8M 4M",
                      "-c", "read -P 0xa5 8M 4M", "-c", "read -P 0 30M 2M"])
        assert "Pattern verification failed" not in r.stdout + r.stderr, r
        run_tool(["qemu-img", "convert", "-f", "raw", "-O", "raw", a.url(), out], timeout=120)
        with open(out, "rb") as f, open(env.image, "rb") as g:
            got, orig = f.read(), g.read()
        assert got[8 * MIB:12 * MIB] == b"\xa5" * (4 * MIB)
        assert got[:8 * MIB] == orig[:8 * MIB] and got[12 * MIB:IMG] == orig[12 * MIB:]
        c = env.tgt.create("qemu-c", "32M", [QEMU_DEFAULT], image=env.image)
        run_tool(["qemu-img", "convert", "-f", "raw", "-O", "raw", c.url(), out], timeout=120)
        assert iscsi_env.sha256_file(out) == sha_of(env.image, VOL), "a write to one clone leaked into another"

        # a reader the ACL does not name is refused by qemu too
        r = run_tool(["qemu-img", "convert", "--image-opts", qemu_opts(b, INI_A), "-O", "raw", out], check=False)
        assert r.returncode != 0 and "Failed to" in r.stderr, r
    finally:
        env.close()


def test_iscsi_chap(srv):
    env = Env(srv)
    try:
        ex = env.tgt.create("chap-a", "32M", [INI_A], image=env.image, chap=True)
        check_document(env, ex, [INI_A], chap=True)
        user, secret = ex.chap
        assert len(secret) >= 12, "RFC 7143 wants CHAP secrets of 12 bytes or more"
        if not iscsi_env.PEER:
            assert secret not in env.srv.read_log(), "the CHAP secret was logged"
        assert "Peripheral Device Type:DIRECT_ACCESS" in inq(ex, INI_A).stdout
        for bad in (None, (user, "x" * len(secret)), ("someone-else", secret)):
            url = "iscsi://%s%s/%s/%d" % ("%s%%%s@" % bad if bad else "", ex.portal, ex.iqn, ex.lun)
            r = run_tool(["iscsi-inq", "-i", INI_A, url], check=False)
            assert r.returncode != 0 and "Login Failed" in r.stdout + r.stderr, (bad, r)
        # the data path with CHAP (qemu's secret object)
        out = env.path("chap.raw")
        run_tool(["qemu-img", "convert", "--object", "secret,id=s0,data=%s" % secret,
                  "--image-opts", qemu_opts(ex, INI_A, "s0"), "-O", "raw", out], timeout=120)
        assert iscsi_env.sha256_file(out) == sha_of(env.image, VOL)
        if not iscsi_env.PEER:
            assert secret not in env.srv.read_log(), "the CHAP secret was logged"
    finally:
        env.close()


def test_iscsi_deleted_volume_disappears(srv):
    env = Env(srv)
    try:
        a = env.tgt.create("gone-a", "32M", [INI_A])
        keep = env.tgt.create("kept-b", "32M", [INI_A])
        assert discovered(a, INI_A) == {a.iqn, keep.iqn}
        # a session open across the delete (qemu-io waits on stdin) must not stop it
        p = subprocess.Popen(["qemu-io", "--image-opts", qemu_opts(a, INI_A)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            p.stdin.write("read 0 64k\n")
            p.stdin.flush()
            # the session is open (its first read done) before the delete: a
            # delete racing qemu's login is another case (a connection closed
            # mid-login, which libiscsi may retry without end)
            first = p.stdout.readline()
            assert "read 65536/65536 bytes" in first, first
            env.tgt.delete(a)
            try:
                p.communicate("read 0 64k\nquit\n", timeout=60)
            except subprocess.TimeoutExpired:
                raise AssertionError("a session of a deleted volume hung its initiator")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert discovered(keep, INI_A) == {keep.iqn}
        r = inq(a, INI_A, check=False)
        assert r.returncode != 0 and "Login Failed" in r.stdout + r.stderr, r
        assert "DIRECT_ACCESS" in inq(keep, INI_A).stdout
    finally:
        env.close()
