"""test_capture.py — golden images captured from OS volumes (POST
/rest/golden-images {"imageCapture": true, ...}).

A 64 MiB GPT disk built here with Debian's tools (a vfat ESP made by
mkfs.vfat + mcopy, an ext4 root made by mkfs.ext4 -d holding a machine-id,
SSH host keys and a DHCP lease) is uploaded, cloned into an OS volume, and
written over iSCSI (a pattern in the unpartitioned tail); a generalize plan
then captures it. The downloaded HPE zip is read with independent tools
(zipfile, mtools, debugfs): the plan's changes are in it, the iSCSI writes
too, the OS volume is byte for byte what it was. Also: the project's sample
Debian capture plan (examples/); HPE's Developer bundle's own capture plans; refusals that change nothing; a failing plan
that leaves nothing; the storage quota and a name another capture is
making; a DELETE of the volume during its capture; a capture while the
volume is being written (the image
is one instant of the writer's sequence); a kill -9 mid-capture (nothing left);
the capture task Completed as soon as the image is usable and its SHA-256
recorded by the follow-up task "Compute checksum" (the SHA-256 of the
downloaded bytes), a stop during that task (the image kept Pending, its
SHA-256 computed at the next start); the CLI.
"""
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import zipfile

import harness
import iscsi_client
import test_golden_images as tgi

MIB = 1 << 20
SIZE = 64 * MIB
ESP_START, ESP_SIZE = 1 * MIB, 16 * MIB
ROOT_START, ROOT_SIZE = 17 * MIB, 40 * MIB
SPARE = 60 * MIB  # unpartitioned: written over iSCSI
INIT = "iqn.2024-01.com.example:capture"

GENERALIZE = """# generalize: what makes this machine unique goes
mount /dev/sda2 /
write /etc/machine-id ""
glob rm-f /etc/ssh/ssh_host_*
rm-rf /var/lib/dhcp
mkdir-p /var/lib/dhcp
mkdir-p /boot/efi
mount /dev/sda1 /boot/efi
write /boot/efi/generalized.txt "captured by streamer"
echo generalized @Stamp:none@
"""


def build_disk(tmp):
    """The test disk: GPT, p1 vfat ESP, p2 ext4 root."""
    root = os.path.join(tmp, "root")
    for d in ("etc/ssh", "etc/network", "root/.ssh", "var/lib/dhcp", "boot/efi", "home/user"):
        os.makedirs(os.path.join(root, d))
    files = {"etc/machine-id": "4f9a1c2b3d4e5f60718293a4b5c6d7e8\n", "etc/hostname": "golden\n",
             "etc/ssh/ssh_host_ed25519_key": "PRIVATE KEY\n", "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAA\n",
             "etc/ssh/ssh_host_rsa_key": "PRIVATE RSA\n", "etc/ssh/sshd_config": "PermitRootLogin no\n",
             "var/lib/dhcp/dhclient.leases": "lease { fixed-address 10.0.0.9; }\n",
             "home/user/data.bin": "x" * 200000, "root/.ssh/authorized_keys": "ssh-ed25519 AAAA deployer\n",
             "etc/network/interfaces": "auto eth0\niface eth0 inet static\n  address 10.0.0.9/24\n",
             "etc/os-release": 'PRETTY_NAME="Test Linux"\nID=debian\n'}
    for p, text in files.items():
        with open(os.path.join(root, p), "w") as f:
            f.write(text)
    img = os.path.join(tmp, "disk.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    subprocess.run(["sfdisk", "-q", img], check=True, input=(
        "label: gpt\nstart=%d, size=%d, type=U\nstart=%d, size=%d, type=L\n"
        % (ESP_START // 512, ESP_SIZE // 512, ROOT_START // 512, ROOT_SIZE // 512)).encode())
    esp = os.path.join(tmp, "esp.img")
    subprocess.run(["mkfs.vfat", "-C", esp, str(ESP_SIZE // 1024)], check=True, capture_output=True)
    boot = os.path.join(tmp, "BOOTX64.EFI")
    with open(boot, "wb") as f:
        f.write(b"MZ fake loader\n")
    subprocess.run(["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"], check=True)
    subprocess.run(["mcopy", "-i", esp, boot, "::/EFI/BOOT/BOOTX64.EFI"], check=True)
    with open(esp, "rb") as f, open(img, "r+b") as g:
        g.seek(ESP_START)
        g.write(f.read())
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "offset=%d" % ROOT_START, "-d", root, img,
                    "%dk" % (ROOT_SIZE // 1024)], check=True, capture_output=True)
    return img


def extract(raw_path, start, size, out):
    with open(raw_path, "rb") as f, open(out, "wb") as g:
        f.seek(start)
        g.write(f.read(size))
    return out


def debugfs(part, cmd):
    r = subprocess.run(["debugfs", "-R", cmd, part], capture_output=True, text=True, check=True)
    return r.stdout


def ext_exists(part, path):
    r = subprocess.run(["debugfs", "-R", "stat " + path, part], capture_output=True, text=True)
    return "File not found" not in r.stderr + r.stdout


def sha(data):
    return hashlib.sha256(data).hexdigest()


# -- helpers against the server ----------------------------------------------------------------
def plan(srv, name, content, kind="capture", attrs=None):
    r = srv.request("POST", "/rest/plan-scripts", {"name": name, "planType": kind, "content": content})
    assert r.status == 201, r
    body = {"name": name, "oeBuildPlanType": kind,
            "buildStep": [{"serialNumber": "1", "planScriptUri": r.json()["uri"]}]}
    if attrs is not None:
        body["customAttributes"] = attrs
    r = srv.request("POST", "/rest/build-plans", body)
    assert r.status == 201, r
    return r.json()


def volume(srv, gi, name="node1"):
    r = srv.request("POST", "/rest/os-volumes",
                    {"name": name, "goldenImageUri": gi["uri"], "initiatorNames": [INIT]})
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"])
    assert t["taskState"] == "Completed", t
    return srv.request("GET", t["associatedResource"]["resourceUri"]).json()


class Disk:
    """The OS volume over iSCSI (Streamer's own target, the test client)."""

    def __init__(self, srv, vol):
        self.c = iscsi_client.Conn("127.0.0.1", srv.iscsi_port)
        self.c.login(INIT, vol["iscsi"]["targetName"])

    def write(self, off, data):
        for o in range(0, len(data), 65536):
            chunk = data[o:o + 65536]
            lba, n = (off + o) // 512, len(chunk) // 512
            st, _, sense, _ = self.c.command(struct.pack(">BBIBHB", 0x2A, 0, lba, 0, n, 0), write=chunk)
            assert st == 0, sense

    def read(self, off, size):
        out = bytearray()
        for o in range(0, size, 262144):
            n = min(262144, size - o)
            st, data, sense, _ = self.c.command(struct.pack(">BBIBHB", 0x28, 0, (off + o) // 512, 0, n // 512, 0),
                                                read_len=n)
            assert st == 0, sense
            out += data
        return bytes(out)

    def close(self):
        self.c.close()


def capture(srv, vol, bp, name, **extra):
    body = {"type": "GoldenImage", "name": name, "description": "captured", "imageCapture": True,
            "osVolumeURI": vol["uri"], "buildPlanUri": bp["uri"]}
    body.update(extra)
    return srv.request("POST", "/rest/golden-images", body)


def capture_ok(srv, vol, bp, name, **extra):
    """The capture task Completed (the image usable), then its SHA-256 recorded."""
    r = capture(srv, vol, bp, name, **extra)
    assert r.status == 202, r
    t = r.json()
    assert t["name"] == "Capture" and r.headers["location"] == t["uri"], t
    t = srv.wait_task(t["uri"], timeout=120)
    assert t["taskState"] == "Completed" and t["percentComplete"] == 100, t
    return t, checksum_ok(srv, t)


def checksum_ok(srv, t):
    """The golden image of capture task t once its SHA-256 is recorded: by the
    follow-up task the capture's output names, unless the capture knew it."""
    data = t["data"]
    if data["checkSumState"] == "Pending":
        assert data["checkSum"] == "" and data["checksumTaskUri"].startswith("/rest/tasks/"), data
        ct = srv.wait_task(data["checksumTaskUri"], timeout=120)
        assert ct["name"] == "Compute checksum" and ct["taskState"] == "Completed", ct
        assert ct["associatedResource"]["resourceUri"] == data["goldenImageUri"], ct
        assert ct["data"]["checkSumState"] == "OK" and len(ct["data"]["checkSum"]) == 64, ct
    else:
        assert data["checkSumState"] == "OK" and len(data["checkSum"]) == 64, data
        assert "checksumTaskUri" not in data, data
    gi = srv.request("GET", data["goldenImageUri"]).json()
    assert gi["checkSumState"] == "OK", gi
    assert gi["checkSum"] == (ct["data"]["checkSum"] if data["checkSumState"] == "Pending"
                              else data["checkSum"]), (gi, data)
    return gi


def state(srv):
    """What a refused request must not change."""
    return (tgi.golden_ids(srv), tgi.dir_files(srv, "golden"), tgi.dir_files(srv, "capture"),
            srv.request("GET", "/rest/tasks").json()["total"])


def setup(srv):
    tmp = tempfile.mkdtemp(prefix="streamer-cap-", dir=srv.tmp)
    img = build_disk(tmp)
    gi = tgi.upload_ok(srv, tgi.Body("disk.img", path=img), "?name=Base")
    vol = volume(srv, gi)
    with open(img, "rb") as f:
        orig = f.read()
    return tmp, img, gi, vol, orig


# -- the generalize plan on a disk built here --------------------------------------------------
def test_capture_generalize(srv):
    tmp, img, gi, vol, orig = setup(srv)
    d = Disk(srv, vol)
    mark = b"written over iSCSI\n" * (MIB // 19) + b"\n" * (MIB % 19)
    d.write(SPARE, mark)
    before = d.read(0, SIZE)
    assert before[SPARE:SPARE + MIB] == mark and before[:SPARE] == orig[:SPARE]
    alloc_before = srv.request("GET", vol["uri"]).json()["allocatedBytes"]
    bp = plan(srv, "generalize", GENERALIZE,
              attrs=[{"name": "Stamp", "value": "v1", "type": "string", "constraints": "{}"}])
    t, cap = capture_ok(srv, vol, bp, "Captured", osVolumeUri=vol["uri"])
    # the document
    assert cap["imageCapture"] is True and cap["name"] == "Captured", cap
    assert cap["osVolumeURI"] == vol["uri"] and cap["osVolumeUri"] == vol["uri"], cap
    assert cap["osVolumeName"] == "node1" and cap["buildPlanUri"] == bp["uri"], cap
    assert cap["buildPlanName"] == "generalize" and cap["description"] == "captured", cap
    assert cap["checkSumState"] == "OK" and cap["size"] == SIZE and cap["format"] == "capture", cap
    assert cap["state"] == "OK" and cap["status"] == "OK", cap
    assert t["data"]["goldenImageUri"] == cap["uri"], t
    assert t["data"]["checkSum"] in ("", cap["checkSum"]), t
    # the download: HPE's zip, one raw member, the checkSum of its bytes
    status, headers, data = tgi.download(srv, cap)
    assert status == 200 and headers["content-disposition"] == 'attachment; filename="Captured.zip"'
    member, raw = tgi.raw_of_zip(data)
    assert len(raw) == SIZE and sha(raw) == cap["checkSum"], (len(raw), cap)
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].compress_type == zipfile.ZIP_STORED
    # zero runs are holes in the golden volume
    gpath = os.path.join(srv.data_dir, "volumes", "golden", cap["id"] + ".raw")
    assert os.stat(gpath).st_blocks * 512 < SIZE // 2 and cap["allocatedBytes"] < SIZE // 2, cap
    # the plan's changes, read by debugfs and mtools
    rawp = os.path.join(tmp, "captured.raw")
    with open(rawp, "wb") as f:
        f.write(raw)
    part = extract(rawp, ROOT_START, ROOT_SIZE, os.path.join(tmp, "root.ext4"))
    assert debugfs(part, "cat /etc/machine-id") == "", "machine-id not emptied"
    assert ext_exists(part, "/etc/machine-id")
    for k in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key"):
        assert not ext_exists(part, "/etc/ssh/" + k), k
    assert ext_exists(part, "/var/lib/dhcp") and not ext_exists(part, "/var/lib/dhcp/dhclient.leases")
    assert debugfs(part, "cat /etc/ssh/sshd_config") == "PermitRootLogin no\n"
    assert debugfs(part, "cat /etc/hostname") == "golden\n"
    assert debugfs(part, "cat /home/user/data.bin") == "x" * 200000
    subprocess.run(["e2fsck", "-fn", part], check=True, capture_output=True)
    esp = "%s@@%d" % (rawp, ESP_START)
    assert subprocess.run(["mtype", "-i", esp, "::/generalized.txt"], capture_output=True,
                          check=True).stdout == b"captured by streamer"
    assert subprocess.run(["mtype", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI"], capture_output=True,
                          check=True).stdout == b"MZ fake loader\n"
    # what was written over iSCSI is in the capture
    assert raw[SPARE:SPARE + MIB] == mark
    # the OS volume is untouched: its bytes and its allocation
    assert d.read(0, SIZE) == before
    d.close()
    assert srv.request("GET", vol["uri"]).json()["allocatedBytes"] == alloc_before
    # the capture log is the archive
    r = srv.request("GET", "/rest/golden-images/archive/" + cap["id"])
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r
    for s in ("capture of OS volume \"node1\"", "generalized v1", "sha256: " + cap["checkSum"],
              "build plan \"generalize\""):
        assert s in r.body, (s, r.body)
    # nothing left behind: work directory, temp files
    assert tgi.dir_files(srv, "capture") == [] and tgi.importing(srv) == []
    # the capture is a golden image like any other: it clones
    v2 = volume(srv, cap, "node2")
    d2 = Disk(srv, v2)
    assert d2.read(0, SIZE) == raw
    d2.close()
    # and an upload of its download gives the same checkSum
    again = tgi.upload_ok(srv, tgi.Body("again.zip", data=data), "?name=Again")
    assert again["checkSum"] == cap["checkSum"]


# -- the project's sample capture plan (examples/) -----------------------------------------------
def test_capture_sample_debian_plan(srv):
    tmp, img, gi, vol, orig = setup(srv)
    ex = os.path.join(harness.REPO, "examples")
    for kind in ("plan-scripts", "build-plans"):
        for fn in sorted(os.listdir(os.path.join(ex, kind))):
            with open(os.path.join(ex, kind, fn)) as f:
                r = srv.request("POST", "/rest/" + kind, json.load(f))
            assert r.status == 201, (fn, r)
    bp = [m for m in srv.request("GET", "/rest/build-plans").json()["members"]
          if m["name"] == "Streamer - Debian - capture"][0]
    t, cap = capture_ok(srv, vol, bp, "Debian generalized")
    _, raw = tgi.raw_of_zip(tgi.download(srv, cap)[2])
    rawp = os.path.join(tmp, "sample.raw")
    with open(rawp, "wb") as f:
        f.write(raw)
    part = extract(rawp, ROOT_START, ROOT_SIZE, os.path.join(tmp, "sample.ext4"))
    assert debugfs(part, "cat /etc/machine-id") == ""
    assert not ext_exists(part, "/etc/ssh/ssh_host_rsa_key") and not ext_exists(part, "/root/.ssh/authorized_keys")
    assert not ext_exists(part, "/var/lib/dhcp/dhclient.leases")
    assert debugfs(part, "cat /etc/hostname") == "localhost\n"
    assert "10.0.0.9" not in debugfs(part, "cat /etc/network/interfaces")
    assert debugfs(part, "cat /etc/streamer-capture").startswith("captured=")
    subprocess.run(["e2fsck", "-fn", part], check=True, capture_output=True)
    log = srv.request("GET", "/rest/golden-images/archive/" + cap["id"]).body
    assert "root filesystem: Test Linux" in log and "generalized" in log, log
    assert cap["buildPlanName"] == "Streamer - Debian - capture", cap


# -- HPE's Developer bundle: its own capture plan ---------------------------------------------
def test_capture_hpe_developer(srv):
    import test_validate as tv
    gi, plans = tv.import_developer(srv)
    vol = volume(srv, gi, "dev1")
    golden = tv.golden_file(srv, gi)
    message = tv.mtype(golden, "/EFI/BOOT/message.txt")
    for name in (tv.CAPTURE, "HPE - Developer 1.0 - example UEFI capture - 2017-03-24"):
        t, cap = capture_ok(srv, vol, plans[name], "Dev capture " + name[:3])
        status, _, data = tgi.download(srv, cap)
        _, raw = tgi.raw_of_zip(data)
        assert sha(raw) == cap["checkSum"] and len(raw) == gi["size"]
        p = os.path.join(srv.tmp, "dev-cap.raw")
        with open(p, "wb") as f:
            f.write(raw)
        # the plan writes the generalized text (the bundle's image holds the same text already)
        assert tv.mtype(p, "/EFI/BOOT/message.txt") == b"\nUEFI loader message.txt has been generalized!\n\n"
        log = srv.request("GET", "/rest/golden-images/archive/" + cap["id"]).body
        assert "Generalize message.txt content:" in log, log
    # the OS volume still reads its golden image's message
    r = srv.request("GET", vol["uri"] + "/files/content?device=/dev/sda1&path=/EFI/BOOT/message.txt")
    assert r.status == 200 and r.body.encode() == message, r


# -- refusals change nothing -------------------------------------------------------------------
def test_capture_refusals(srv):
    tmp, img, gi, vol, orig = setup(srv)
    bp = plan(srv, "generalize", GENERALIZE)
    dep = plan(srv, "deploy-plan", "echo hi\n", kind="deploy")
    needs = plan(srv, "needs-value", "echo @Unset@\n")
    before = state(srv)

    def refused(status, code, body=None, **kw):
        if body is not None:
            r = srv.request("POST", "/rest/golden-images", body, **kw)
        else:
            r = capture(srv, vol, bp, "New", **kw)
        assert r.status == status and r.json()["errorCode"] == code, r
        assert state(srv) == before, (state(srv), before)
        return r.json()

    ok = {"type": "GoldenImage", "name": "New", "imageCapture": True, "osVolumeURI": vol["uri"],
          "buildPlanUri": bp["uri"]}
    refused(400, "OS_VOLUME_NOT_FOUND", dict(ok, osVolumeURI="/rest/os-volumes/nope"))
    refused(400, "OS_VOLUME_NOT_FOUND", dict(ok, osVolumeURI="no such volume"))
    refused(400, "BUILD_PLAN_NOT_FOUND", dict(ok, buildPlanUri="/rest/build-plans/nope"))
    e = refused(400, "BUILD_PLAN_NOT_CAPTURE", dict(ok, buildPlanUri=dep["uri"]))
    assert "deploy" in e["message"], e
    e = refused(400, "INVALID_ATTRIBUTES", dict(ok, buildPlanUri=needs["uri"]))
    assert "Unset" in e["message"], e
    refused(409, "NAME_CONFLICT", dict(ok, name="Base"))
    refused(400, "INVALID_NAME", dict(ok, name=""))
    refused(400, "INVALID_BODY", {k: v for k, v in ok.items() if k != "osVolumeURI"})
    refused(400, "INVALID_BODY", {k: v for k, v in ok.items() if k != "buildPlanUri"})
    refused(400, "INVALID_BODY", dict(ok, osVolumeURI=7))
    refused(400, "INVALID_BODY", dict(ok, osVolumeUri="/rest/os-volumes/other"))
    refused(400, "UNKNOWN_FIELD", dict(ok, surprise=1))
    refused(400, "INVALID_TYPE", dict(ok, type="OsVolume"))
    r = srv.request("POST", "/rest/golden-images", raw="[1,2]", headers={"Content-Type": "application/json"})
    assert r.status in (400, 415) and state(srv) == before, r
    # the sample's null fields are ignored; the booleans may be strings (HPE clients send "true")
    viewer = tgi.readonly_user(srv)
    r = srv.request("POST", "/rest/golden-images", ok, token=viewer)
    assert r.status == 403 and state(srv) == before, r
    t, cap = capture_ok(srv, vol, bp, "Strings", imageCapture="true", osVolumeURI=vol["name"],
                        buildPlanUri=bp["name"], readOnly=None)
    assert cap["osVolumeURI"] == vol["uri"], cap


def test_capture_failing_plan_leaves_nothing(srv):
    tmp, img, gi, vol, orig = setup(srv)
    d = Disk(srv, vol)
    before = d.read(0, SIZE)
    bp = plan(srv, "fails", "mount /dev/sda2 /\nwrite /etc/motd \"x\"\nrm /etc/not-there\n")
    st = state(srv)
    r = capture(srv, vol, bp, "Never")
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"], timeout=120)
    assert t["taskState"] == "Error", t
    err = t["taskErrors"][0]
    assert err["errorCode"] == "CAPTURE_PLAN_FAILED" and "not-there" in err["message"], err
    assert "rm /etc/not-there" in t["data"]["log"] or "not-there" in t["data"]["log"], t["data"]
    assert "no golden image was created" in t["data"]["log"], t["data"]
    assert tgi.golden_ids(srv) == st[0] and tgi.dir_files(srv, "golden") == st[1]
    assert tgi.dir_files(srv, "capture") == []
    assert d.read(0, SIZE) == before
    d.close()
    # an overlay too small for what the plan writes: 507, nothing left
    big = plan(srv, "writes-much", "!head -c 3000000 /dev/urandom > big\nmount /dev/sda2 /\nupload big /home/user/big\n")
    srv.stop()
    srv.env = {"STREAMER_CAPTURE_OVERLAY_MAX": str(1 * MIB)}
    srv.start()
    srv.login()
    r = capture(srv, vol, big, "Too big")
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"], timeout=120)
    assert t["taskState"] == "Error" and t["taskErrors"][0]["errorCode"] in (
        "CAPTURE_OVERLAY_FULL", "CAPTURE_PLAN_FAILED"), t
    assert tgi.golden_ids(srv) == st[0] and tgi.dir_files(srv, "golden") == st[1]


def test_capture_quota_and_names_under_way():
    """The storage quota: a capture that would pass it ends in Error with nothing
    left, and one asked for when the quota is used up is refused at once. A name
    another capture is making is refused at once too."""
    srv = harness.Server()
    srv.start()
    try:
        srv.login()
        tmp, img, gi, vol, orig = setup(srv)
        quick = plan(srv, "quick", "mount /dev/sda2 /\nwrite /etc/machine-id \"\"\n")
        slow = plan(srv, "slow", "!sleep 2\nmount /dev/sda2 /\nwrite /etc/machine-id \"\"\n")
        r = capture(srv, vol, slow, "Twice")
        assert r.status == 202, r
        r2 = capture(srv, vol, quick, "Twice")
        assert r2.status == 409 and r2.json()["errorCode"] == "NAME_CONFLICT", r2
        assert "being captured" in r2.json()["message"], r2
        assert srv.wait_task(r.json()["uri"], timeout=120)["taskState"] == "Completed"
        used = sum(m["allocatedBytes"] for m in srv.request("GET", "/rest/golden-images").json()["members"])
        ids = tgi.golden_ids(srv)
        srv.stop()
        srv.extra_args = ["--storage-quota", str(used + 256 * 1024)]
        srv.start()
        srv.login()
        r = capture(srv, vol, quick, "Over quota")
        assert r.status == 202, r
        t = srv.wait_task(r.json()["uri"], timeout=120)
        assert t["taskState"] == "Error" and t["taskErrors"][0]["errorCode"] == "QUOTA_EXCEEDED", t
        assert tgi.golden_ids(srv) == ids and tgi.importing(srv) == []
        assert sorted(tgi.dir_files(srv, "golden")) == sorted(i + ".raw" for i in ids)
        srv.stop()
        srv.extra_args = ["--storage-quota", str(used)]
        srv.start()
        srv.login()
        r = capture(srv, vol, quick, "Over quota")
        assert r.status == 413 and r.json()["errorCode"] == "QUOTA_EXCEEDED", r
    finally:
        srv.cleanup()


def test_capture_while_volume_deleted(srv):
    """A DELETE of the OS volume while it is captured: both end well — the
    capture holds its snapshot, the volume goes once the capture is done with it."""
    tmp, img, gi, vol, orig = setup(srv)
    slow = plan(srv, "slow", "!sleep 2\nmount /dev/sda2 /\nwrite /etc/machine-id \"\"\n")
    r = capture(srv, vol, slow, "During delete")
    assert r.status == 202, r
    time.sleep(0.5)
    d = srv.request("DELETE", vol["uri"])
    assert d.status == 202, d
    t = srv.wait_task(r.json()["uri"], timeout=120)
    assert t["taskState"] == "Completed", t
    assert srv.wait_task(d.json()["uri"], timeout=120)["taskState"] == "Completed"
    assert srv.request("GET", vol["uri"]).status == 404 and tgi.dir_files(srv, "os") == []
    cap = checksum_ok(srv, t)
    _, raw = tgi.raw_of_zip(tgi.download(srv, cap)[2])
    assert sha(raw) == cap["checkSum"] and raw[:ROOT_START] == orig[:ROOT_START]
    rawp = os.path.join(tmp, "deleted.raw")
    with open(rawp, "wb") as f:
        f.write(raw)
    part = extract(rawp, ROOT_START, ROOT_SIZE, os.path.join(tmp, "deleted.ext4"))
    assert debugfs(part, "cat /etc/machine-id") == "" and debugfs(part, "cat /etc/hostname") == "golden\n"


# -- a capture while the server writes ---------------------------------------------------------
def test_capture_while_written(srv):
    tmp, img, gi, vol, orig = setup(srv)
    bp = plan(srv, "generalize", GENERALIZE)
    d = Disk(srv, vol)
    nblk = 48  # 64 KiB blocks in the spare region, rewritten in order, pass after pass
    stop = threading.Event()
    passes = [0]

    def writer():
        p = 1
        while not stop.is_set():
            for b in range(nblk):
                d.write(SPARE + b * 65536, struct.pack("<II", p, b) * 8192)
            passes[0] = p
            p += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        time.sleep(0.5)
        t, cap = capture_ok(srv, vol, bp, "Moving")
        t2, cap2 = capture_ok(srv, vol, bp, "Moving 2")
    finally:
        stop.set()
        th.join()
    d.close()
    assert passes[0] >= 2
    for c in (cap, cap2):
        _, raw = tgi.raw_of_zip(tgi.download(srv, c)[2])
        seen = []
        for b in range(nblk):
            blk = raw[SPARE + b * 65536:SPARE + (b + 1) * 65536]
            p, bb = struct.unpack("<II", blk[:8])
            assert blk == struct.pack("<II", p, bb) * 8192 and bb == b, "a torn block"
            seen.append(p)
        # one instant of a sequential writer: blocks [0, k) of pass p+1, the rest of pass p
        assert all(seen[i] >= seen[i + 1] for i in range(nblk - 1)) and seen[0] - seen[-1] <= 1, seen
        rawp = os.path.join(tmp, "moving.raw")
        with open(rawp, "wb") as f:
            f.write(raw)
        part = extract(rawp, ROOT_START, ROOT_SIZE, os.path.join(tmp, "moving.ext4"))
        assert debugfs(part, "cat /etc/machine-id") == ""
        assert sha(raw) == c["checkSum"]


# -- kill -9 in the middle -----------------------------------------------------------------------
def test_capture_killed_leaves_nothing():
    srv = harness.Server()
    srv.start()
    try:
        srv.login()
        tmp, img, gi, vol, orig = setup(srv)
        bp = plan(srv, "slow", "!sleep 3\nmount /dev/sda2 /\nwrite /etc/machine-id \"\"\n")
        r = capture(srv, vol, bp, "Killed")
        assert r.status == 202, r
        task = r.json()["uri"]
        deadline = time.time() + 20
        while time.time() < deadline and not tgi.dir_files(srv, "capture"):
            time.sleep(0.05)
        assert tgi.dir_files(srv, "capture"), "the capture did not start"
        srv.stop(sig=9)
        srv.start()
        srv.login()
        t = srv.request("GET", task).json()
        assert t["taskState"] == "Error", t
        assert tgi.golden_ids(srv) == [gi["id"]]
        assert tgi.dir_files(srv, "capture") == [] and tgi.importing(srv) == []
        assert tgi.dir_files(srv, "golden") == [gi["id"] + ".raw"]
        d = Disk(srv, vol)
        assert d.read(0, SPARE) == orig[:SPARE]
        d.close()
        # and a capture works after the restart
        capture_ok(srv, vol, plan(srv, "quick", "mount /dev/sda2 /\nwrite /etc/machine-id \"\"\n"), "After")
    finally:
        srv.cleanup()


def test_capture_checksum_follow_up_and_stop():
    """With the SHA-256 started only at the commit (STREAMER_IMAGE_HASH=after, a
    test setting) the capture task Completes with checkSumState Pending and the
    follow-up task "Compute checksum" records the SHA-256 of the bytes a download
    gives. With it held back (STREAMER_IMAGE_HASH=hold) the
    capture task still Completes as soon as the image is usable: its output says
    Pending and names the follow-up task "Compute checksum", which runs. A stop
    of streamerd then ends that task (CHECKSUM_INTERRUPTED) and keeps the image
    Pending; the next start computes its SHA-256 — that of the downloaded bytes."""
    srv = harness.Server()
    srv.start()
    try:
        srv.login()
        tmp, img, gi, vol, orig = setup(srv)
        bp = plan(srv, "quick", "mount /dev/sda2 /\nwrite /etc/machine-id \"\"\n")
        srv.stop()
        srv.env = {"STREAMER_IMAGE_HASH": "after"}
        srv.start()
        srv.login()
        r = capture(srv, vol, bp, "After")
        assert r.status == 202, r
        t = srv.wait_task(r.json()["uri"], timeout=120)
        assert t["taskState"] == "Completed" and t["data"]["checkSumState"] == "Pending", t
        assert "its SHA-256 is being computed" in t["taskStatus"] or \
            "Compute checksum" in json.dumps(t["progressUpdates"]), t
        cap = checksum_ok(srv, t)
        _, raw = tgi.raw_of_zip(tgi.download(srv, cap)[2])
        ct = srv.request("GET", t["data"]["checksumTaskUri"]).json()
        assert ct["data"]["checkSum"] == sha(raw) == cap["checkSum"], (ct, cap)
        assert ct["data"]["goldenImageUri"] == cap["uri"], ct
        arch = srv.request("GET", "/rest/golden-images/archive/" + cap["id"]).body
        assert "sha256: " + sha(raw) + " (task Compute checksum" in arch, arch
        srv.stop()
        srv.env = {"STREAMER_IMAGE_HASH": "hold"}
        srv.start()
        srv.login()
        r = capture(srv, vol, bp, "Held")
        assert r.status == 202, r
        t = srv.wait_task(r.json()["uri"], timeout=120)
        assert t["taskState"] == "Completed" and t["percentComplete"] == 100, t
        data = t["data"]
        assert data["checkSumState"] == "Pending" and data["checkSum"] == "", data
        ct_uri, gi_uri = data["checksumTaskUri"], data["goldenImageUri"]
        ct = srv.request("GET", ct_uri).json()
        assert ct["name"] == "Compute checksum" and ct["taskState"] in ("New", "Running"), ct
        assert ct["associatedResource"]["resourceUri"] == gi_uri, ct
        cap = srv.request("GET", gi_uri).json()
        assert cap["checkSumState"] == "Pending" and cap["checkSum"] == "", cap
        _, raw = tgi.raw_of_zip(tgi.download(srv, cap)[2])  # usable: it downloads ...
        v2 = volume(srv, cap, "clone")  # ... and clones
        assert v2["state"] != "Error", v2
        srv.stop()
        srv.env = None
        srv.start()
        srv.login()
        ct = srv.request("GET", ct_uri).json()
        assert ct["taskState"] == "Error", ct
        assert ct["taskErrors"][0]["errorCode"] in ("CHECKSUM_INTERRUPTED", "TASK_INTERRUPTED"), ct
        assert srv.request("GET", gi_uri).json()["checkSumState"] in ("Pending", "OK")
        tasks = srv.request("GET", "/rest/tasks").json()["members"]
        again = [x for x in tasks if x["name"] == "Compute checksum" and x["uri"] != ct_uri
                 and x["associatedResource"]["resourceUri"] == gi_uri]
        assert len(again) == 1, tasks
        ct2 = srv.wait_task(again[0]["uri"], timeout=120)
        assert ct2["taskState"] == "Completed" and ct2["data"]["checkSum"] == sha(raw), ct2
        cap = srv.request("GET", gi_uri).json()
        assert cap["checkSumState"] == "OK" and cap["checkSum"] == sha(raw), cap
        assert tgi.dir_files(srv, "capture") == [] and tgi.importing(srv) == []
    finally:
        srv.cleanup()


# -- the CLI -------------------------------------------------------------------------------------
def test_capture_cli(srv):
    tmp, img, gi, vol, orig = setup(srv)
    bp = plan(srv, "generalize", GENERALIZE)
    env = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token}
    r = srv.cli("capture", "node1", "--build-plan", "generalize", "--name", "From CLI",
                "--description", "via cli", "--wait-checksum", env=env)
    assert r.returncode == 0, r
    assert "Captured golden image \"From CLI\"" in r.stdout and "sha256 " in r.stdout, r.stdout
    cap = [m for m in srv.request("GET", "/rest/golden-images").json()["members"] if m["name"] == "From CLI"][0]
    assert cap["description"] == "via cli" and cap["osVolumeURI"] == vol["uri"], cap
    assert cap["checkSum"] in r.stdout
    r = srv.cli("golden-image", "archive", "From CLI", env=env)
    assert r.returncode == 0 and 'capture of OS volume "node1"' in r.stdout and cap["checkSum"] in r.stdout, r
    r = srv.cli("--json", "capture", vol["id"], "--build-plan", bp["uri"], "--name", "From CLI 2", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["imageCapture"] is True, r
    # without --wait-checksum: the SHA-256, unless already known, is being computed
    r = srv.cli("capture", "node1", "--build-plan", "generalize", "--name", "From CLI 3", env=env)
    assert r.returncode == 0, r
    assert "sha256 " in r.stdout or "its SHA-256 is being computed by task /rest/tasks/" in r.stdout, r
    r = srv.cli("capture", "node1", "--build-plan", "generalize", "--name", "w", "--no-wait",
                "--wait-checksum", env=env)
    assert r.returncode == 2 and "exclude" in r.stderr, r
    # refusals: exit 1 with the server's error; usage errors exit 2
    r = srv.cli("capture", "node1", "--build-plan", "generalize", "--name", "From CLI", env=env)
    assert r.returncode == 1 and "already exists" in r.stderr, r
    r = srv.cli("capture", "node1", "--name", "x", env=env)
    assert r.returncode == 2 and "--build-plan" in r.stderr, r
    r = srv.cli("capture", "nosuch", "--build-plan", "generalize", "--name", "y", env=env)
    assert r.returncode == 1, r
    fails = plan(srv, "fails", "mount /dev/sda2 /\nrm /etc/not-there\n")
    r = srv.cli("capture", "node1", "--build-plan", "fails", "--name", "z", env=env)
    assert r.returncode == 1 and "not-there" in r.stderr and "Capture log" in r.stderr, r
    assert "no golden image was created" in r.stderr, r
