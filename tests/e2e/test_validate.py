"""test_validate.py — build plans validated without a VM, and volumes browsed.

HPE's Developer bundle, as published: its golden image is uploaded, its plan
scripts and build plans are created through the REST API from the bundle's
own JSON (as an importer would), and its example UEFI deploy plan is
validated (POST /rest/build-plans/{id}/validate) on the golden image and on
an OS volume cloned from it. Checked: the log, the change list naming
/EFI/BOOT/message.txt, the failing plan ("fail OS deployment", the default
of its DeploymentTesting attribute) as a Completed task with a Failed result
and the failing line, passwords never shown, nothing written (the golden
volume's bytes hashed, the OS volume's allocatedBytes and content), no work
directory left, bad bodies and attribute problems (400, all at once), roles;
browsing (devices, files, files/content) against mtools reading the image
independently; and the CLI (streamer validate, volume ls, volume cat). Also:
the exact change list of a plan on an ext4 image made by mkfs.ext4 (added,
removed, content, mode, owner, symlink target, type, times), a vgrename
followed by filesystem UUID on lvm2's own PV, an OS volume that is not
exported, work directories a stop left behind, and the overlay's limit.
"""
import hashlib
import json
import os
import subprocess
import tempfile
import zipfile

import harness
import test_golden_images as tgi

DEPLOY = "User - Developer 1.0 - example UEFI deploy - 2017-03-24"
CAPTURE = "User - Developer 1.0 - example UEFI capture - 2017-03-24"
ESP_OFFSET = 128 * 512  # the image's FAT16 ESP (GPT partition 1)
INIT = "iqn.2024-01.com.example:validate"
GOOD = [{"name": "ExampleString1", "value": "Hello from validation"},
        {"name": "ExampleNumber1", "value": 7},
        {"name": "ExamplePassword", "value": "pa55word"},
        {"name": "ExampleFQDN", "value": "host.example.com"}]


def import_developer(srv):
    """Upload the bundle's golden image and create its plan scripts and build
    plans from the bundle's JSON. Returns (golden image, {name: build plan})."""
    tmp = tempfile.mkdtemp(prefix="streamer-val-", dir=srv.tmp)
    with zipfile.ZipFile(tgi.DEV_BUNDLE) as b:
        names = b.namelist()
        gi_json = json.loads(b.read([n for n in names if n.endswith("_goldenimage.json")][0]))
        payload = os.path.join(tmp, "developer.zip")
        with open(payload, "wb") as f:
            f.write(b.read(gi_json["name"]))
        gi = tgi.upload_ok(srv, tgi.Body("developer.zip", path=payload), "?name=HPE%20Developer")
        uri_of = {}
        for n in sorted(names):
            if n.endswith("_planscript.json"):
                d = json.loads(b.read(n))
                r = srv.request("POST", "/rest/plan-scripts", d)
                assert r.status == 201, r
                for old in (d["uri"], "/rest/plan-scripts/" + d["id"],
                            "/rest/plan-scripts/" + os.path.basename(n).split("_")[0]):
                    uri_of[old] = r.json()["uri"]
        plans = {}
        for n in sorted(names):
            if n.endswith("_buildplan.json"):
                d = json.loads(b.read(n))
                for s in d["buildStep"]:
                    s["planScriptUri"] = uri_of[s["planScriptUri"]]
                r = srv.request("POST", "/rest/build-plans", d)
                assert r.status == 201, r
                plans[d["name"]] = r.json()
    return gi, plans


def golden_file(srv, gi):
    return os.path.join(srv.data_dir, "volumes", "golden", gi["id"] + ".raw")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def validate(srv, bp, body, token=None):
    """POST validate, expect 202, wait; returns the finished task."""
    r = srv.request("POST", bp["uri"] + "/validate", body, token=token)
    assert r.status == 202, r
    t = r.json()
    assert r.headers["location"] == t["uri"] and t["name"] == "Validate", t
    assert t["associatedResource"]["resourceUri"] == bp["uri"], t
    return srv.wait_task(t["uri"], timeout=120)


def result_of(task):
    assert task["taskState"] == "Completed", task
    assert task["taskErrors"] == [], task
    res = task["data"]
    assert res["type"] == "BuildPlanValidation", res
    assert len(task["taskOutput"]) == 1 and res["status"] in task["taskOutput"][0].title(), task
    return res


def changed(res, path):
    return [c for c in res["changes"] if c["path"] == path]


def mtype(image, path):
    """A file of the image's ESP read by mtools, independently of Streamer."""
    return subprocess.run(["mtype", "-i", "%s@@%d" % (image, ESP_OFFSET), "::" + path],
                          capture_output=True, check=True).stdout


def workdirs(srv):
    d = os.path.join(srv.data_dir, "volumes", "validate")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def bad(srv, bp, body, status, code):
    r = srv.request("POST", bp["uri"] + "/validate", body)
    assert r.status == status, r
    err = r.json()
    assert err["errorCode"] == code, err
    return err


# -- the Developer bundle on its golden image ------------------------------------------
def test_validate_golden_image(srv):
    gi, plans = import_developer(srv)
    bp = plans[DEPLOY]
    path = golden_file(srv, gi)
    before = sha256_file(path)
    assert before == gi["checkSum"]
    message_before = mtype(path, "/EFI/BOOT/message.txt")

    # 1. succeeds with DeploymentTesting turned into a comment
    t = validate(srv, bp, {"goldenImageUri": gi["uri"],
                           "customAttributes": GOOD + [{"name": "DeploymentTesting",
                                                        "value": "#Attempt_OS_Deployment"}]})
    res = result_of(t)
    assert res["status"] == "Succeeded" and "error" not in res, res
    assert res["goldenImageUri"] == gi["uri"] and res["buildPlanUri"] == bp["uri"], res
    log = res["log"]
    assert "Personalize message.txt content:" in log, log
    assert "/dev/sda1: vfat" in log and "== Build plan succeeded" in log, log
    assert "throwaway overlay of golden image" in log, log
    assert "ExamplePassword" in log and "********" in log, log
    (m,) = changed(res, "/EFI/BOOT/message.txt")
    assert m["device"] == "/dev/sda1" and m["change"] == "modified" and m["type"] == "file", m
    assert "content" in m["details"] and m["size"] != m["oldSize"], m
    assert m["oldSize"] == len(message_before), (m, message_before)
    assert res["changeCounts"]["modified"] >= 1 and res["changeCounts"]["added"] == 0, res
    assert res["contentsCompared"] is True and res["changesTruncated"] is False, res
    assert res["durationMs"] >= 0 and res["hostMs"] >= 0 and res["hostCommands"] == 3, res
    assert "pa55word" not in json.dumps(t), "a password value leaked into the task"
    # the golden image is untouched, byte for byte
    assert sha256_file(path) == before
    assert mtype(path, "/EFI/BOOT/message.txt") == message_before
    assert srv.request("GET", gi["uri"]).json()["allocatedBytes"] == gi["allocatedBytes"]
    assert workdirs(srv) == []

    # 2. the attribute's default fails the deployment, on purpose: a Failed
    #    result of a Completed task, naming the failing line
    t = validate(srv, bp, {"goldenImageUri": gi["name"],
                           "customAttributes": {"ExampleString1": "x", "ExampleNumber1": 3}})
    res = result_of(t)
    assert res["status"] == "Failed", res
    assert res["error"]["errorCode"] == "SCRIPT_UNKNOWN_COMMAND", res
    msg = res["error"]["message"]
    assert "attempt or fail deployment" in msg and ":14:" in msg and "Fail_OS_Deployment" in msg, msg
    assert "Build plan FAILED" in res["log"] and "Fail_OS_Deployment" in res["log"], res["log"]
    assert "failed" in t["taskOutput"][0], t
    assert changed(res, "/EFI/BOOT/message.txt"), res["changes"]  # step 1 ran before
    assert sha256_file(path) == before
    assert workdirs(srv) == []

    # 3. a plan that writes nothing: the attribute types plan logs messages, then
    #    fails on purpose (DeploymentTesting is an option with only that value)
    t = validate(srv, plans["HPE - Developer 1.0 - example attribute types - 2017-08-28"],
                 {"goldenImageUri": gi["id"],
                  "customAttributes": [{"name": "ExampleUnteamedNIC.mac", "value": "aa:bb:cc:dd:ee:ff"},
                                       {"name": "ExamplePassword", "value": "Secret1"}]})
    res = result_of(t)
    assert res["status"] == "Failed" and res["changes"] == [], res
    assert res["changeCounts"] == {"added": 0, "removed": 0, "modified": 0}, res
    assert "ExampleUnteamedNIC.mac: aa:bb:cc:dd:ee:ff" in res["log"], res["log"]
    assert "ExamplePassword: ********" in res["log"] and "Secret1" not in json.dumps(t)
    assert sha256_file(path) == before


def test_validate_refusals(srv):
    gi, plans = import_developer(srv)
    bp = plans[DEPLOY]
    ok = {"goldenImageUri": gi["uri"]}
    bad(srv, bp, [gi["uri"]], 400, "INVALID_BODY")
    bad(srv, bp, {}, 400, "INVALID_BODY")
    bad(srv, bp, {"goldenImageUri": gi["uri"], "osVolumeUri": "/rest/os-volumes/x"}, 400,
        "INVALID_BODY")
    bad(srv, bp, {"goldenImageUri": 7}, 400, "INVALID_BODY")
    bad(srv, bp, dict(ok, attributes=[]), 400, "UNKNOWN_FIELD")
    bad(srv, bp, dict(ok, customAttributes="x=1"), 400, "INVALID_BODY")
    bad(srv, bp, {"goldenImageUri": "/rest/golden-images/nope"}, 400, "GOLDEN_IMAGE_NOT_FOUND")
    bad(srv, bp, {"goldenImageUri": "no such image"}, 400, "GOLDEN_IMAGE_NOT_FOUND")
    bad(srv, bp, {"osVolumeUri": "no such volume"}, 400, "OS_VOLUME_NOT_FOUND")
    # every attribute problem at once
    err = bad(srv, bp, dict(ok, customAttributes=[
        {"name": "Nope", "value": "1"}, {"name": "ExampleNumber1", "value": "seven"},
        {"name": "ExampleFQDN", "value": "-bad-"}, {"name": "ExampleOption", "value": "Option9"},
        {"value": "nameless"}]), 400, "INVALID_ATTRIBUTES")
    codes = sorted(n["errorCode"] for n in err["nestedErrors"])
    assert codes == ["INVALID_ATTRIBUTE"] * 4 + ["UNKNOWN_ATTRIBUTE"], err
    text = json.dumps(err)
    assert "Nope" in text and "ExampleNumber1" in text and "ExampleFQDN" in text, err
    err = bad(srv, bp, dict(ok, customAttributes={"ExamplePassword": "far-too-long-password"}),
              400, "INVALID_ATTRIBUTES")
    assert "far-too-long-password" not in json.dumps(err), err
    r = srv.request("POST", "/rest/build-plans/nope/validate", ok)
    assert r.status == 404 and r.json()["errorCode"] == "RESOURCE_NOT_FOUND", r
    r = srv.request("GET", bp["uri"] + "/validate")
    assert r.status == 405, r
    r = srv.request("POST", bp["uri"] + "/validate/x", ok)
    assert r.status == 404, r
    # nothing was started
    tasks = srv.request("GET", "/rest/tasks").json()["members"]
    assert not [t for t in tasks if t["name"] == "Validate"], tasks
    # roles: validation runs the plan's code
    for role, status in (("Read only", 403), ("Server administrator", 403),
                         ("Deployment administrator", 202)):
        tok = tgi.readonly_user(srv, role.split()[0].lower(), role)
        r = srv.request("POST", bp["uri"] + "/validate", ok, token=tok)
        assert r.status == status, (role, r)
        if status == 202:
            assert srv.wait_task(r.json()["uri"], timeout=120)["taskState"] == "Completed"
        else:
            assert r.json()["errorCode"] == "INSUFFICIENT_PRIVILEGES", r
    assert workdirs(srv) == []


# -- an OS volume that keeps serving, and browsing ---------------------------------------------
def create_volume(srv, gi):
    r = srv.request("POST", "/rest/os-volumes",
                    {"name": "web01", "goldenImageUri": gi["uri"], "initiatorNames": [INIT]})
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"])
    assert t["taskState"] == "Completed", t
    return srv.request("GET", t["associatedResource"]["resourceUri"]).json()


def test_validate_os_volume_and_browse(srv):
    gi, plans = import_developer(srv)
    vol = create_volume(srv, gi)
    path = golden_file(srv, gi)
    message = mtype(path, "/EFI/BOOT/message.txt")
    t = validate(srv, plans[CAPTURE], {"osVolumeUri": vol["uri"]})
    res = result_of(t)
    assert res["status"] == "Succeeded" and res["osVolumeUri"] == vol["uri"], res
    assert "Generalize message.txt content:" in res["log"], res["log"]
    assert "a snapshot of OS volume" in res["log"], res["log"]
    (m,) = changed(res, "/EFI/BOOT/message.txt")
    assert m["change"] == "modified" and m["device"] == "/dev/sda1", m
    after = srv.request("GET", vol["uri"]).json()
    assert after["allocatedBytes"] == vol["allocatedBytes"], (vol, after)
    assert workdirs(srv) == []

    # devices
    for base in (vol["uri"], gi["uri"]):
        r = srv.request("GET", base + "/devices")
        assert r.status == 200, r
        devs = r.json()["devices"]
        assert [(d["device"], d["type"]) for d in devs] == [("/dev/sda1", "vfat")], devs
        assert devs[0]["size"] > 0 and devs[0]["uuid"], devs
    # a directory
    r = srv.request("GET", vol["uri"] + "/files?device=/dev/sda1&path=/EFI/BOOT")
    assert r.status == 200, r
    listing = r.json()
    names = [m["name"] for m in listing["members"]]
    assert "message.txt" in names and names == sorted(names), listing
    (mt,) = [m for m in listing["members"] if m["name"] == "message.txt"]
    assert mt["type"] == "file" and mt["size"] == len(message), mt
    root = srv.request("GET", vol["uri"] + "/files?device=/dev/sda1").json()
    assert any(m["name"] == "EFI" and m["type"] == "directory" for m in root["members"]), root
    # a file: the OS volume still holds what it held (the validation wrote nothing)
    for base in (vol["uri"], gi["uri"]):
        r = srv.request("GET", base + "/files/content?device=/dev/sda1&path=/EFI/BOOT/message.txt")
        assert r.status == 200 and r.headers["content-type"] == "application/octet-stream", r
        assert r.body.encode() == message, (r.body, message)
    # errors
    def err(url, status, code):
        r = srv.request("GET", url)
        assert r.status == status, (url, r)
        assert r.json()["errorCode"] == code, (url, r)
    err(vol["uri"] + "/files?device=/dev/sda1&path=/EFI/BOOT/message.txt", 400, "FS_NOT_A_DIRECTORY")
    err(vol["uri"] + "/files/content?device=/dev/sda1&path=/EFI", 400, "FS_IS_A_DIRECTORY")
    err(vol["uri"] + "/files?device=/dev/sda1&path=/nope", 404, "FS_NOT_FOUND")
    err(vol["uri"] + "/files?device=/dev/sda9&path=/", 404, "FS_NOT_FOUND")
    err(vol["uri"] + "/files?path=/", 400, "INVALID_DEVICE")
    err(vol["uri"] + "/files?device=/dev/sda1&path=EFI", 400, "INVALID_PATH")
    err(vol["uri"] + "/files?device=/dev/sda&path=/", 422, "FS_NOT_SUPPORTED")
    err("/rest/os-volumes/nope/devices", 404, "RESOURCE_NOT_FOUND")
    err("/rest/golden-images/nope/files?device=/dev/sda1", 404, "RESOURCE_NOT_FOUND")
    r = srv.request("DELETE", vol["uri"] + "/files")
    assert r.status == 405, r
    # roles: listings for everyone, contents for Deploy
    tok = tgi.readonly_user(srv)
    r = srv.request("GET", vol["uri"] + "/files?device=/dev/sda1&path=/", token=tok)
    assert r.status == 200, r
    r = srv.request("GET", vol["uri"] + "/devices", token=tok)
    assert r.status == 200, r
    r = srv.request("GET", vol["uri"] + "/files/content?device=/dev/sda1&path=/EFI/BOOT/message.txt",
                    token=tok)
    assert r.status == 403, r
    r = srv.request("POST", plans[CAPTURE]["uri"] + "/validate", {"osVolumeUri": vol["uri"]}, token=tok)
    assert r.status == 403, r


# -- what the diff reports, on an ext4 image made by Debian's tools ------------------------------
EXT_PLAN = """mount /dev/sda1 /
upload -<<END /etc/hostname
web01
END
rm /etc/gone
chmod 0600 /etc/mode
chown 1000 1000 /etc/owner
rm /etc/link
ln-s /etc/keep /etc/link
touch /etc/touched
mkdir-p /opt/new/dir
write /opt/new/dir/file hello
rm-rf /var/tree
rm /var/replaced
mkdir /var/replaced
umount /
"""


def ext4_image(tmp):
    """A 40 MiB MBR disk whose partition 1 is ext4 made with mkfs.ext4 -d."""
    root = os.path.join(tmp, "rootfs")
    for d in ("etc", "var/tree/a/b"):
        os.makedirs(os.path.join(root, d))
    files = {"etc/hostname": "old\n", "etc/keep": "same\n", "etc/gone": "x", "etc/mode": "m",
             "etc/owner": "o", "etc/touched": "t", "var/tree/a/b/c": "deep", "var/replaced": "r"}
    for p, text in files.items():
        with open(os.path.join(root, p), "w") as f:
            f.write(text)
    os.chmod(os.path.join(root, "etc/mode"), 0o644)
    os.symlink("/etc/hostname", os.path.join(root, "etc/link"))
    os.utime(os.path.join(root, "etc/touched"), (1000000000, 1000000000))
    img = os.path.join(tmp, "ext.img")
    with open(img, "wb") as f:
        f.truncate(40 << 20)
    subprocess.run(["sfdisk", "-q", img], input=b"label: dos\nstart=2048, type=83\n", check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "offset=1048576", "-d", root, img, "38M"],
                   check=True, capture_output=True)
    return img


def test_diff_details(srv):
    img = ext4_image(srv.tmp)
    gi = tgi.upload_ok(srv, tgi.Body("ext.img", path=img), "?name=ext")
    before = sha256_file(golden_file(srv, gi))
    r = srv.request("POST", "/rest/plan-scripts", {"name": "edit", "planType": "deploy",
                                                   "content": EXT_PLAN})
    assert r.status == 201, r
    r = srv.request("POST", "/rest/build-plans", {
        "name": "edit", "oeBuildPlanType": "deploy",
        "buildStep": [{"serialNumber": "1", "planScriptUri": r.json()["uri"]}]})
    assert r.status == 201, r
    res = result_of(validate(srv, r.json(), {"goldenImageUri": gi["uri"]}))
    assert res["status"] == "Succeeded", res
    got = {c["path"]: (c["change"], c["type"], c["details"]) for c in res["changes"]}
    want = {
        "/etc/hostname": ("modified", "file", "content, size 4 -> 6"),
        "/etc/gone": ("removed", "file", ""),
        "/etc/mode": ("modified", "file", "mode 0644 -> 0600"),
        "/etc/owner": ("modified", "file", "owner 0:0 -> 1000:1000"),
        "/etc/link": ("modified", "symlink", "target /etc/hostname -> /etc/keep"),
        "/etc/touched": ("modified", "file", "modification time"),
        "/opt": ("added", "directory", ""),
        "/opt/new": ("added", "directory", ""),
        "/opt/new/dir": ("added", "directory", ""),
        "/opt/new/dir/file": ("added", "file", ""),
        "/var/tree": ("removed", "directory", ""),
        "/var/tree/a": ("removed", "directory", ""),
        "/var/tree/a/b": ("removed", "directory", ""),
        "/var/tree/a/b/c": ("removed", "file", ""),
        "/var/replaced": ("modified", "directory", "type file -> directory"),
    }
    assert got == want, json.dumps(res["changes"], indent=1)
    assert all(c["device"] == "/dev/sda1" for c in res["changes"]), res["changes"]
    (added,) = [c for c in res["changes"] if c["path"] == "/opt/new/dir/file"]
    assert added["size"] == 5 and "oldSize" not in added, added
    (gone,) = [c for c in res["changes"] if c["path"] == "/etc/gone"]
    assert gone["oldSize"] == 1 and "size" not in gone, gone
    assert res["changeCounts"] == {"added": 4, "removed": 5, "modified": 6}, res
    assert sha256_file(golden_file(srv, gi)) == before
    # browsing the ext4 filesystem: a symlink and its target
    listing = srv.request("GET", gi["uri"] + "/files?device=/dev/sda1&path=/etc").json()
    (link,) = [m for m in listing["members"] if m["name"] == "link"]
    assert link["type"] == "symlink" and link["target"] == "/etc/hostname", link
    (mode,) = [m for m in listing["members"] if m["name"] == "mode"]
    assert mode["mode"] == "0644" and mode["uid"] == 0 and mode["size"] == 1, mode
    r = srv.request("GET", gi["uri"] + "/files/content?device=/dev/sda1&path=/etc/link")
    assert r.status == 200 and r.body == "old\n", r


# -- the CLI -------------------------------------------------------------------------------------
def test_cli(srv):
    gi, plans = import_developer(srv)
    vol = create_volume(srv, gi)
    env = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token}

    def run(*args):
        return srv.cli(*args, env=env, input="")

    r = run("validate", "--build-plan", DEPLOY, "--golden-image", "HPE Developer",
            "--attr", "ExampleString1=from the cli", "--attr", "ExamplePassword=pa55word",
            "--attr", "DeploymentTesting=#Attempt_OS_Deployment")
    assert r.returncode == 0, r.stderr
    assert "Personalize message.txt content:" in r.stdout, r.stdout  # the log
    assert "ExampleString1: from the cli" in r.stdout and "pa55word" not in r.stdout, r.stdout
    table = r.stdout[r.stdout.index("\nChanges ("):]
    line = [l.split() for l in table.splitlines() if "/EFI/BOOT/message.txt" in l]
    assert line == [["modified", "/dev/sda1", "/EFI/BOOT/message.txt", "file", "content,", "size",
                     "48", "->", "359"]], table
    assert "Changes (1: 0 added, 0 removed, 1 modified)" in r.stdout, r.stdout
    assert 'on golden image "HPE Developer": succeeded' in r.stdout, r.stdout
    # the default of DeploymentTesting fails the plan: exit 1, the failing line named
    r = run("validate", "--build-plan", DEPLOY, "--golden-image", gi["id"], "--no-log")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "FAILED" in r.stdout and "== Streamer" not in r.stdout, r.stdout
    assert "attempt or fail deployment - 2017-03-24:14: Fail_OS_Deployment" in r.stderr, r.stderr
    r = run("--json", "validate", "--build-plan", CAPTURE, "--os-volume", "web01")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["status"] == "Succeeded" and res["osVolumeUri"] == vol["uri"], res
    assert changed(res, "/EFI/BOOT/message.txt"), res
    r = run("validate", "--build-plan", CAPTURE, "--os-volume", "web01", "--no-wait")
    assert r.returncode == 0 and "streamer task wait" in r.stdout, r.stdout
    # refusals
    r = run("validate", "--golden-image", gi["id"])
    assert r.returncode == 2 and "--build-plan" in r.stderr, r.stderr
    r = run("validate", "--build-plan", DEPLOY, "--golden-image", gi["id"], "--os-volume", "web01")
    assert r.returncode == 2, r.stderr
    r = run("validate", "--build-plan", DEPLOY, "--golden-image", gi["id"], "--attr", "novalue")
    assert r.returncode == 2, r.stderr
    r = run("validate", "--build-plan", DEPLOY, "--golden-image", gi["id"], "--attr", "Nope=1",
            "--attr", "ExampleNumber1=x")
    assert r.returncode == 1 and "Nope" in r.stderr and "ExampleNumber1" in r.stderr, r.stderr
    r = run("validate", "--build-plan", "no such plan", "--golden-image", gi["id"])
    assert r.returncode == 1, r.stderr

    # browsing
    message = mtype(golden_file(srv, gi), "/EFI/BOOT/message.txt")
    r = run("volume", "ls", "web01")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[1].split()[:2] == ["/dev/sda1", "vfat"], r.stdout
    for args in (["/dev/sda1:/EFI/BOOT"], ["/dev/sda1", "/EFI/BOOT"], ["/dev/sda1:/EFI/BOOT/"]):
        r = run("volume", "ls", vol["id"], *args)
        assert r.returncode == 0, (args, r.stderr)
        (row,) = [l.split() for l in r.stdout.splitlines() if l.endswith(" message.txt")]
        assert row[0] == "file" and int(row[3]) == len(message), r.stdout
    r = run("volume", "ls", "web01", "/dev/sda1")
    assert r.returncode == 0 and " EFI" in r.stdout, r.stdout
    r = run("--json", "volume", "ls", "web01", "/dev/sda1:/EFI")
    assert json.loads(r.stdout)["type"] == "FileListing", r.stdout
    r = run("volume", "cat", "web01", "/dev/sda1:/EFI/BOOT/message.txt")
    assert r.returncode == 0 and r.stdout.encode() == message, (r.stdout, r.stderr)
    r = run("volume", "cat", "web01", "/dev/sda1", "/EFI/BOOT/message.txt")
    assert r.returncode == 0 and r.stdout.encode() == message, r.stderr
    r = run("volume", "cat", "web01", "/dev/sda1:/EFI")
    assert r.returncode == 1 and "directory" in r.stderr and r.stdout == "", r.stderr
    r = run("volume", "cat", "web01", "/dev/sda1:/nope")
    assert r.returncode == 1 and r.stdout == "", r.stderr
    r = run("volume", "cat", "web01", "/dev/sda1")
    assert r.returncode == 2, r.stderr
    r = run("volume", "ls", "web01", "sda1")
    assert r.returncode == 2 and "/dev/sda1:/etc" in r.stderr, r.stderr
    # a Read only user lists but does not read contents
    tok = tgi.readonly_user(srv)
    ro = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": tok}
    r = srv.cli("volume", "ls", "web01", "/dev/sda1:/", env=ro, input="")
    assert r.returncode == 0, r.stderr
    r = srv.cli("volume", "cat", "web01", "/dev/sda1:/EFI/BOOT/message.txt", env=ro, input="")
    assert r.returncode == 1 and r.stdout == "", r.stderr
    r = srv.cli("validate", "--build-plan", CAPTURE, "--os-volume", "web01", env=ro, input="")
    assert r.returncode == 1, r.stderr
    assert workdirs(srv) == [] or all(
        srv.wait_task(t["uri"])["taskState"] == "Completed"
        for t in srv.request("GET", "/rest/tasks").json()["members"] if t["name"] == "Validate")


# -- without an iSCSI target, leftovers of a stop, the overlay's limit ----------------------------
def test_no_iscsi_leftovers_and_overlay_limit():
    """OS volumes that are not exported (--iscsi-listen none) are opened just
    for their snapshot, and stay deletable; work directories a stop left are
    removed before the first validation; a plan that writes more than the
    overlay keeps ends the task in Error (VALIDATION_OVERLAY_FULL) with the
    partial result in its data."""
    with harness.Server(iscsi_port=0, env={"STREAMER_VALIDATE_OVERLAY_MAX": str(96 << 10)}) as srv:
        srv.login()
        gi, plans = import_developer(srv)
        vol = create_volume(srv, gi)
        assert vol["status"] == "Warning", vol  # not exported
        left = os.path.join(srv.data_dir, "volumes", "validate")
        os.makedirs(os.path.join(left, "old.tmp", "deep", "er"))
        os.makedirs(os.path.join(left, "old.tmp.tmp"))
        outside = os.path.join(srv.tmp, "outside")
        os.makedirs(outside)
        with open(os.path.join(outside, "keep"), "w") as f:
            f.write("keep")
        os.symlink(outside, os.path.join(left, "old.tmp", "deep", "link"))
        with open(os.path.join(left, "old.tmp", "deep", "er", "f"), "w") as f:
            f.write("x")
        res = result_of(validate(srv, plans[CAPTURE], {"osVolumeUri": "web01"}))
        assert res["status"] == "Succeeded" and changed(res, "/EFI/BOOT/message.txt"), res
        assert workdirs(srv) == [], workdirs(srv)
        assert os.path.exists(os.path.join(outside, "keep"))  # the link was removed, not followed
        r = srv.request("GET", vol["uri"] + "/files/content?device=/dev/sda1&path=/EFI/BOOT/message.txt")
        assert r.status == 200 and r.body.encode() == mtype(golden_file(srv, gi), "/EFI/BOOT/message.txt")
        # the overlay's limit: 96 KiB (its table takes 16 KiB)
        r = srv.request("POST", "/rest/plan-scripts", {"name": "big", "planType": "deploy", "content":
                        "mount /dev/sda1 /\n!head -c 300000 /dev/zero | tr '\\\\0' x > big\n"
                        "upload big /big.txt\numount /\n"})
        assert r.status == 201, r
        r = srv.request("POST", "/rest/build-plans", {"name": "big", "oeBuildPlanType": "deploy",
                        "buildStep": [{"planScriptUri": r.json()["uri"]}]})
        assert r.status == 201, r
        t = validate(srv, r.json(), {"goldenImageUri": gi["uri"]})
        assert t["taskState"] == "Error", t
        (err,) = t["taskErrors"]
        assert err["errorCode"] == "VALIDATION_OVERLAY_FULL", err
        assert t["data"]["status"] == "Failed" and "log" in t["data"], t
        assert workdirs(srv) == []
        # the volume was only opened for the snapshots: it can go
        r = srv.request("DELETE", vol["uri"])
        assert r.status == 202, r
        assert srv.wait_task(r.json()["uri"])["taskState"] == "Completed"


# -- a renamed volume group: the filesystem is followed by its UUID --------------------------------
def test_vgrename_pairs_by_uuid(srv):
    """pvdisk.img of tests/unit/fs_disk_fixtures.py (lvm2's own PV, VG vgw, LV
    lv holding a vfat): after vgrename, /dev/vgnew/lv is the same filesystem
    as /dev/vgw/lv — one device entry saying so, then its file changes."""
    out = os.path.join(srv.tmp, "fixtures")
    subprocess.run(["python3", os.path.join(harness.REPO, "tests", "unit", "fs_disk_fixtures.py"),
                    out], check=True, capture_output=True)
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["lvm"] is True, "lvm2 fixtures need root and loop devices"
    gi = tgi.upload_ok(srv, tgi.Body("pvdisk.img", path=os.path.join(out, "pvdisk.img")),
                       "?name=pvdisk")
    r = srv.request("POST", "/rest/plan-scripts", {"name": "rename", "planType": "deploy", "content":
                    "vgrename vgw vgnew\nmount /dev/vgnew/lv /\nwrite /hello.txt hi\numount /\n"})
    assert r.status == 201, r
    r = srv.request("POST", "/rest/build-plans", {"name": "rename", "oeBuildPlanType": "deploy",
                    "buildStep": [{"planScriptUri": r.json()["uri"]}]})
    assert r.status == 201, r
    res = result_of(validate(srv, r.json(), {"goldenImageUri": gi["uri"]}))
    assert res["status"] == "Succeeded", res
    got = [(c["device"], c["path"], c["change"], c["type"], c["details"]) for c in res["changes"]]
    assert got == [("/dev/vgnew/lv", "", "modified", "device", "renamed from /dev/vgw/lv"),
                   ("/dev/vgnew/lv", "/hello.txt", "added", "file", "")], got
    devs = srv.request("GET", gi["uri"] + "/devices").json()["devices"]
    assert [d["device"] for d in devs] == ["/dev/vgw/lv"], devs  # the image itself is unchanged
