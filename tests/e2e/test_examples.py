"""test_examples.py — the sample artifacts under examples/ (see examples/README.md).

* every sample plan script passes `streamer plan-script check` without an error or a
  warning, and every sample is accepted by the REST API as it is;
* the sample Debian deploy build plan runs on the Debian tiny golden image (built by
  examples/images/build-debian-tiny.sh) through POST /rest/build-plans/{id}/validate,
  in static and in DHCP mode, and writes what it says: host name, /etc/hosts,
  /etc/network/interfaces, root's password hash (never the clear text, in the volume or
  the log), the SSH key, the first-boot marker;
* the sample capture plan removes the host's identity (machine-id, SSH host keys,
  DHCP lease, network configuration, authorized keys);
* the RHEL plans on the tiny image's ext4 root and, with their default RootDevice, on a
  RHEL-7-like LVM2 disk (bench/script_bench.py's image);
* streamerd --samples loads them once per data directory.
The boot of the personalized image is tests/e2e/test_boot_linux.py.
"""
import json
import os
import subprocess
import tempfile
import time

import harness
import samples
from test_iscsi_boot import iscsi_env  # noqa: F401  (tests/iscsi on sys.path)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKexampleexampleexampleexampleexampleexampl streamer@test"
PASSWORD = "S3cret-pw#42"


def test_examples_check():
    scripts = samples.load("plan-scripts")
    assert len(scripts) >= 10, sorted(scripts)
    with tempfile.TemporaryDirectory() as d:
        files = []
        for stem, doc in scripts.items():
            p = os.path.join(d, stem + ".txt")
            with open(p, "w") as f:
                f.write(doc["content"])
            files.append(p)
        r = subprocess.run([harness.STREAMER, "plan-script", "check"] + files,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "%d files checked: 0 errors in 0 files, 0 warnings" % len(files) in r.stderr, r.stdout + r.stderr
        assert r.stdout == "", r.stdout


def test_examples_accepted(srv):
    made = samples.create_all(srv, skip_missing_golden=True)
    # every plan script, build plan, and the deployment plan without a golden image
    for kind, _ in samples.KINDS:
        for stem in samples.load(kind):
            if stem != "debian-tiny":
                assert stem in made, (kind, stem)
    bp = made["debian-deploy"]
    assert [s["planScriptName"] for s in bp["buildStep"]][0] == "Streamer - Linux - mount root"
    attrs = {a["name"]: a for a in bp["customAttributes"]}
    assert attrs["ManagementNIC"]["type"] == "nic" and attrs["RootPassword"]["type"] == "password"
    assert made["debian-capture"]["oeBuildPlanType"] == "Capture"
    dp = made["rhel"]
    names = [a["name"] for a in dp["customAttributes"]]
    for n in ("Hostname", "ManagementNIC", "RootPassword", "SSHPublicKey"):
        assert n in names, names


def validate(srv, bp_uri, golden_uri, attrs, timeout=120):
    r = srv.request("POST", bp_uri + "/validate", {"goldenImageUri": golden_uri, "customAttributes": attrs})
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"], timeout=timeout)
    assert t["taskState"] == "Completed", t
    return t["data"]


def changed(data):
    return {c["path"]: c["change"] for c in data["changes"] if c["device"] == "/dev/sda2"}


def test_examples_debian_on_tiny_image(srv):
    img = samples.tiny_image()
    gi = iscsi_env.upload_golden(srv, img, "tiny-" + os.urandom(3).hex())
    made = samples.create_all(srv, skip_missing_golden=True)
    deploy, capture = made["debian-deploy"]["uri"], made["debian-capture"]["uri"]

    # static
    d = validate(srv, deploy, gi["uri"], [
        {"name": "Hostname", "value": "node-17"},
        {"name": "ManagementNIC.constraint", "value": "static"},
        {"name": "ManagementNIC.ipaddress", "value": "10.0.0.17"},
        {"name": "ManagementNIC.netmask", "value": "24"},
        {"name": "ManagementNIC.gateway", "value": "10.0.0.1"},
        {"name": "ManagementNIC.dns1", "value": "10.0.0.2"},
        {"name": "ManagementNIC.domain", "value": "lab.example"},
        {"name": "RootPassword", "value": PASSWORD},
        {"name": "SSHPublicKey", "value": KEY}])
    assert d["status"] == "Succeeded", json.dumps(d)[:3000]
    log = d["log"]
    assert PASSWORD not in log, "the clear-text password reached the log"
    ch = changed(d)
    for p in ("/etc/hostname", "/etc/hosts", "/etc/network/interfaces", "/etc/resolv.conf", "/etc/shadow",
              "/root/.ssh/authorized_keys", "/var/lib/streamer/first-boot",
              "/etc/systemd/system/streamer-first-boot.service", "/usr/local/sbin/streamer-first-boot"):
        assert p in ch, (p, ch)
    for want in ("iface eth0 inet static", "address 10.0.0.17", "netmask 255.255.255.0", "gateway 10.0.0.1",
                 "dns-nameservers 10.0.0.2", "dns-search lab.example", "network: eth0 static 10.0.0.17",
                 "root password set (SHA-512 crypt)", "hostname=node-17 deployed="):
        assert want in log, (want, log[-3000:])
    assert "/tmp/streamer-network.sh" not in ch  # the generator does not stay in the image

    # DHCP (no constraint, no address), no password, no key
    d = validate(srv, deploy, gi["uri"], [{"name": "Hostname", "value": "node-18"}])
    assert d["status"] == "Succeeded", json.dumps(d)[:3000]
    assert "iface eth0 inet dhcp" in d["log"] and "network: eth0 dhcp" in d["log"], d["log"][-3000:]
    assert "RootPassword is empty: /etc/shadow unchanged" in d["log"]
    ch = changed(d)
    assert "/etc/shadow" not in ch and "/etc/resolv.conf" not in ch, ch

    # a bad value is refused before anything runs
    r = srv.request("POST", deploy + "/validate", {"goldenImageUri": gi["uri"], "customAttributes": [
        {"name": "Hostname", "value": "node-17"}, {"name": "RootPassword", "value": "it's"}]})
    assert r.status == 400 and "RootPassword" in r.body and "it's" not in r.body, r

    # capture: the host's identity goes
    d = validate(srv, capture, gi["uri"], [])
    assert d["status"] == "Succeeded", json.dumps(d)[:3000]
    ch = changed(d)
    for p, c in (("/etc/machine-id", "modified"), ("/etc/ssh/ssh_host_ed25519_key", "removed"),
                 ("/etc/ssh/ssh_host_rsa_key.pub", "removed"), ("/var/lib/dhcp/dhclient.eth0.leases", "removed"),
                 ("/etc/network/interfaces", "modified"), ("/etc/hostname", "modified"),
                 ("/etc/resolv.conf", "removed"), ("/root/.ssh/authorized_keys", "removed"),
                 ("/etc/streamer-capture", "added")):
        assert ch.get(p) == c, (p, c, ch)


def test_examples_rhel_plans_run(srv):
    """The RHEL-style plans on an ext4 root (the tiny image's, RootDevice=/dev/sda2): the
    ifcfg file in static mode, the host name in both places, the relabel request, and the
    capture plan taking the ifcfg file away again."""
    img = samples.tiny_image()
    gi = iscsi_env.upload_golden(srv, img, "tiny-" + os.urandom(3).hex())
    made = samples.create_all(srv, skip_missing_golden=True)
    d = validate(srv, made["rhel-deploy"]["uri"], gi["uri"], [
        {"name": "RootDevice", "value": "/dev/sda2"},
        {"name": "Hostname", "value": "rhel-17"},
        {"name": "ManagementInterface", "value": "ens3"},
        {"name": "ManagementNIC.ipaddress", "value": "10.0.0.17"},
        {"name": "ManagementNIC.netmask", "value": "255.255.254.0"},
        {"name": "ManagementNIC.gateway", "value": "10.0.0.1"},
        {"name": "ManagementNIC.mac", "value": "52-54-00-12-34-56"},
        {"name": "RootPassword", "value": PASSWORD}])
    assert d["status"] == "Succeeded", json.dumps(d)[:3000]
    log = d["log"]
    assert PASSWORD not in log
    for want in ("DEVICE=ens3", "BOOTPROTO=none", "IPADDR=10.0.0.17", "PREFIX=23", "GATEWAY=10.0.0.1",
                 "HWADDR=52:54:00:12:34:56", "network: ens3 static 10.0.0.17/23 via 10.0.0.1"):
        assert want in log, (want, log[-3000:])
    ch = changed(d)
    for p in ("/etc/hostname", "/etc/sysconfig/network", "/etc/sysconfig/network-scripts/ifcfg-ens3",
              "/etc/shadow", "/.autorelabel", "/var/lib/streamer/first-boot"):
        assert p in ch, (p, ch)
    d = validate(srv, made["rhel-capture"]["uri"], gi["uri"], [{"name": "RootDevice", "value": "/dev/sda2"}])
    assert d["status"] == "Succeeded", json.dumps(d)[:3000]
    ch = changed(d)
    assert ch.get("/etc/machine-id") == "modified" and ch.get("/etc/ssh/ssh_host_rsa_key") == "removed", ch


def test_examples_samples_option():
    """streamerd --samples DIR: loads every sample at the first start, the golden image
    from its file; a sample whose golden image is not built yet is skipped and loads at a
    later start; a sample loaded once and deleted by the user stays deleted; a rerun
    creates no duplicates."""
    import shutil
    tmp = tempfile.mkdtemp(prefix="streamer-samples-")
    try:
        d = os.path.join(tmp, "examples")
        for kind in ("plan-scripts", "build-plans", "deployment-plans", "golden-images"):
            shutil.copytree(os.path.join(samples.EXAMPLES, kind), os.path.join(d, kind))
        gdoc = os.path.join(d, "golden-images", "debian-tiny.json")
        with open(gdoc) as f:
            g = json.load(f)
        g["file"] = "tiny.img"   # relative to the samples directory
        with open(gdoc, "w") as f:
            json.dump(g, f)
        srv = harness.Server(extra_args=["--samples", d])

        def started():
            # the samples load right after the API starts: wait for the log's summary
            srv.start()
            srv.login()
            deadline = time.time() + 120
            while srv.read_log().count("comp=samples msg=\"samples from") < starts[0] + 1:
                assert time.time() < deadline, srv.read_log()[-3000:]
                time.sleep(0.05)
            starts[0] += 1
        starts = [0]
        try:
            started()
            srv.login()
            counts = lambda coll: srv.request("GET", coll).json()["total"]  # noqa: E731
            n = {k: len(samples.load(k)) for k, _ in samples.KINDS}
            assert counts("/rest/plan-scripts") == n["plan-scripts"]
            assert counts("/rest/build-plans") == n["build-plans"]
            # no image file yet: the tiny deployment plan waits for it
            assert counts("/rest/deployment-plans") == n["deployment-plans"] - 1
            assert counts("/rest/golden-images") == 0
            assert "not loaded" in srv.read_log() and "Build it with" in srv.read_log()
            # the user deletes a sample
            rhel = [m for m in srv.request("GET", "/rest/deployment-plans").json()["members"]
                    if m["name"] == "Streamer - RHEL"][0]
            assert srv.request("DELETE", rhel["uri"]).status in (200, 202, 204)
            samples.stop_checked(srv)
            shutil.copyfile(samples.tiny_image(), os.path.join(d, "tiny.img"))
            started()
            gi = srv.request("GET", "/rest/golden-images").json()["members"]
            assert gi, srv.read_log()[-3000:]
            assert [x["name"] for x in gi] == ["Streamer Debian tiny"], gi
            assert gi[0]["size"] == os.path.getsize(samples.tiny_image())
            assert os.path.exists(os.path.join(d, "tiny.img"))   # the file is kept
            dps = {m["name"]: m for m in srv.request("GET", "/rest/deployment-plans").json()["members"]}
            assert "Streamer - RHEL" not in dps, sorted(dps)      # deleted stays deleted
            assert dps["Streamer - Debian tiny"]["goldenImageURI"] == gi[0]["uri"]
            assert counts("/rest/plan-scripts") == n["plan-scripts"]
            samples.stop_checked(srv)
            started()      # a third start changes nothing
            assert counts("/rest/plan-scripts") == n["plan-scripts"]
            assert counts("/rest/golden-images") == 1
            assert counts("/rest/deployment-plans") == n["deployment-plans"] - 1
            samples.stop_checked(srv)
        finally:
            srv.cleanup()
        # a --samples that is not a directory stops the start with a clear message
        bad = harness.Server(extra_args=["--samples", os.path.join(tmp, "nope")])
        try:
            try:
                bad.start()
                raise AssertionError("streamerd started with a missing --samples directory")
            except RuntimeError as e:
                assert "--samples" in str(e) and "not a directory" in str(e), e
        finally:
            bad.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_examples_rhel_on_lvm_image(srv):
    """The RHEL plans with their default RootDevice (/dev/rhel/root) on a RHEL-7-like disk:
    MBR, /boot, LVM2 VG "rhel" (made by lvm2 itself) with root and swap, ifcfg files, shadow
    mode 0000 — bench/script_bench.py's "legacy" image, 3 GiB sparse."""
    import argparse
    import sys
    sys.path.insert(0, os.path.join(harness.REPO, "bench"))
    import script_bench
    tmp = tempfile.mkdtemp(prefix="streamer-rhel-")
    try:
        img = os.path.join(tmp, "rhel.raw")
        script_bench.make_image("legacy", img, argparse.Namespace(disk_gib=3, bulk_files=0), tmp)
        gi = iscsi_env.upload_golden(srv, img, "rhel-like-" + os.urandom(3).hex())
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    made = samples.create_all(srv, skip_missing_golden=True)
    d = validate(srv, made["rhel-deploy"]["uri"], gi["uri"], [
        {"name": "Hostname", "value": "rhel-18"},
        {"name": "ManagementNIC.constraint", "value": "static"},
        {"name": "ManagementNIC.ipaddress", "value": "192.168.10.18"},
        {"name": "ManagementNIC.netmask", "value": "255.255.255.0"},
        {"name": "ManagementNIC.dns1", "value": "192.168.10.1"},
        {"name": "RootPassword", "value": PASSWORD}, {"name": "SSHPublicKey", "value": KEY}])
    assert d["status"] == "Succeeded", json.dumps(d)[:3000]
    assert PASSWORD not in d["log"]
    ch = {c["path"]: c for c in d["changes"] if c["device"] == "/dev/rhel/root"}
    for p in ("/etc/hostname", "/etc/sysconfig/network", "/etc/sysconfig/network-scripts/ifcfg-eth0",
              "/etc/hosts", "/etc/resolv.conf", "/etc/shadow", "/root/.ssh/authorized_keys", "/.autorelabel",
              "/var/lib/streamer/first-boot"):
        assert p in ch, (p, sorted(ch))
    assert "mode" not in ch["/etc/shadow"].get("details", ""), ch["/etc/shadow"]   # still 0000
    assert "HOSTNAME=rhel-18" in d["log"] and "IPADDR=192.168.10.18" in d["log"] and "PREFIX=24" in d["log"]
    d = validate(srv, made["rhel-capture"]["uri"], gi["uri"], [])
    assert d["status"] == "Succeeded", json.dumps(d)[:3000]
    ch = {c["path"]: c["change"] for c in d["changes"] if c["device"] == "/dev/rhel/root"}
    for p, c in (("/etc/machine-id", "modified"), ("/etc/ssh/ssh_host_rsa_key", "removed"),
                 ("/etc/sysconfig/network-scripts/ifcfg-eth0", "removed"),
                 ("/etc/sysconfig/network-scripts/ifcfg-eth1", "removed"), ("/etc/hostname", "modified")):
        assert ch.get(p) == c, (p, c, ch)
    assert "/etc/sysconfig/network-scripts/ifcfg-lo" not in ch, ch
