#!/usr/bin/python3
"""script_bench.py — HPE build plans run natively by Streamer beside real guestfish.

Run by `make bench` (never by `make test`). Python 3 standard library only.

Workloads (real build plans from HPE's artifact bundles under $STREAMER_RESEARCH/bundles,
their plan scripts in serialNumber order, with representative attribute values):

  efi      HPE-RHEL7-EFI-2020-04-08-v6.40: "HPE-RHEL7-EFI-personalize-and-configure-NICs-LVM"
           (8 steps: vgs, lvs, list-filesystems, list-devices, mount of the vfat ESP,
           here-document uploads into /EFI/HPE/isdeploy, unmount; no host command)
  legacy   HPE-RHEL-7.3-2017-08-21-v3.1: "RHEL-7.3-personalize-and-configure-NICs-LVM-BP"
           (7 steps on the ext4 root LV /dev/rhel/root: vgs, lvs, -mount /dev/sda3 /,
           -mount /dev/rhel/root /, uploads into /etc and /tmp, downloads, 15 host commands,
           chmod, rm-rf, unmount)
  docker   HPE-RHEL-7.3-Docker-Worker-2017-11-28-v3.1 (reference architecture, 15 steps:
           also write-append, ln-f, touch, rm, chmod of new files)
  capture  HPE-RHEL-7.3-2017-08-21-v3.1: "RHEL-7.3-generalize" (5 steps: copy-out,
           copy-in, rm-rf, glob rm-rf /etc/ssh/ssh_host_*, here-document truncations)

Images, built once per run with Debian tools (as tests/unit/test_script_run.c and
tests/unit/fs_disk_fixtures.py build theirs): a sparse --disk-gib disk with sfdisk; vfat with
mkfs.fat and mtools; ext4 with mkfs.ext4 -d from a RHEL-7.3-like tree (plus --bulk-files
small files under /usr); LVM2 by lvm2 itself on loop devices over the PV's byte range
(activation off), VG "rhel" with LVs "swap" (mkswap) and "root" (ext4 written at the
offset lvm2 reports). efi: GPT, ESP 200 MiB FAT16 + /boot 1 GiB ext4 + PV. legacy: MBR,
/boot 1 GiB ext4 + PV.

For each workload, in one run:
  native     build/bench/script_bench (bench/script_bench.c): --runs timed runs, each on a
             new OS volume clone of the image as a golden volume, host commands in the
             bubblewrap sandbox; total time (open + run + close, durable) and the time
             excluding host commands; medians and p90
  guestfish  `guestfish --rw --format=raw -a COPY` (libguestfs 1.48, LIBGUESTFS_BACKEND=direct,
             LIBGUESTFS_BACKEND_SETTINGS=force_tcg) reading `run` and then the same expanded,
             concatenated build plan on stdin, cwd = its own work directory: one appliance
             launch per build plan, as on HPE's appliance. guestfish runs `!` lines with
             system(3), i.e. /bin/sh, which is bash on HPE's CentOS appliance and dash on
             Debian: guestfish runs in a private mount namespace where /bin/sh is bash
             (`unshare -m` + `mount --bind /bin/bash /bin/sh`). --gf-runs runs, each on a
             fresh sparse copy; wall time from spawn to exit
  check      the disk after the last native run against the disk after the last guestfish
             run, filesystem by filesystem with independent tools: every vfat by mtools
             (mcopy -s: names, sizes, contents), every ext2/3/4 (partitions and LVs) by
             debugfs rdump (names, types, modes, owners, sizes, contents, link targets), plus
             fsck.vfat -n / e2fsck -fn on both; and the two work directories (local files).
             Timestamps are not compared. Files whose content is time-dependent by design
             (listed per workload) are reported apart.
Also timed: `guestfish --ro -a IMAGE run` alone (launch and shutdown of the appliance, no
script), after one untimed warm-up launch.

Output: tables on stdout and build/bench/script.json. Exit status 0 unless the setup failed,
a build plan failed on either side, or the outputs disagree.
"""
import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import stat
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import api_bench  # noqa: E402  (apt_install, machine_info, wait_quiet, cpu_snapshot, log)

MIB = 1 << 20
GIB = 1 << 30
TARGET_RATIO = 100.0
TARGET_MS = 50.0
log = api_bench.log

WORKLOADS = {
    "efi": {
        "bundle": "HewlettPackard__image-streamer-rhel/HPE-RHEL7-EFI-2020-04-08-v6.40.zip",
        "plan": "HPE-RHEL7-EFI-personalize-and-configure-NICs-LVM-2019-06-11",
        "image": "efi", "target": True, "volatile": [],
        "what": "RHEL 7 EFI deploy on the vfat ESP (GPT, LVM root)"},
    "legacy": {
        "bundle": "HewlettPackard__image-streamer-rhel/HPE-RHEL-7.3-2017-08-21-v3.1.zip",
        "plan": "RHEL-7.3-personalize-and-configure-NICs-LVM-BP-2017-08-21",
        "image": "legacy", "target": True, "volatile": [],
        "what": "RHEL 7.3 legacy deploy on the ext4 root LV (MBR, LVM)"},
    "docker": {
        "bundle": "HewlettPackard__image-streamer-reference-architectures/"
                  "HPE-RHEL-7.3-Docker-Worker-2017-11-28-v3.1.zip",
        "plan": "RHEL-7.3-Docker-Worker-2017-11-28",
        "image": "legacy", "target": False, "volatile": [],
        "what": "RHEL 7.3 Docker worker RA deploy on the ext4 root LV"},
    "capture": {
        "bundle": "HewlettPackard__image-streamer-rhel/HPE-RHEL-7.3-2017-08-21-v3.1.zip",
        "plan": "RHEL-7.3-generalize-2017-06-01",
        "image": "legacy", "target": False,
        # `date >> ./ImageStreamerCapture` in a host command, uploaded to /ImageStreamerCapture
        "volatile": ["root:/ImageStreamerCapture", "work:ImageStreamerCapture"],
        "what": "RHEL 7.3 legacy capture (generalize) on the ext4 root LV"},
}


class SetupError(Exception):
    pass


def run(*args, **kw):
    """Run a command; its stdout (text). Fails with the command's stderr."""
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        raise SetupError("%s failed (%d): %s" % (" ".join(map(str, args)), r.returncode,
                                                 r.stderr.decode(errors="replace")[-2000:]))
    return r.stdout.decode(errors="replace")


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


# ---- tools ---------------------------------------------------------------------------------
TOOLS = {"guestfish": "libguestfs-tools", "lvm": "lvm2", "sfdisk": "fdisk", "mkfs.fat": "dosfstools",
         "mcopy": "mtools", "mkfs.ext4": "e2fsprogs", "debugfs": "e2fsprogs", "bwrap": "bubblewrap",
         "unshare": "util-linux", "losetup": "mount"}


def ensure_tools(exe):
    if os.geteuid() != 0:
        raise SetupError("needs root: lvm2 on loop devices builds the images, the sandbox and "
                         "the private mount namespace of the guestfish peer need it")
    for tool, pkg in TOOLS.items():
        if not shutil.which(tool):
            api_bench.apt_install([pkg], tool)
    if not os.path.exists("/dev/loop-control"):
        raise SetupError("no loop devices (/dev/loop-control): lvm2 cannot make the images")
    if not os.access(exe, os.X_OK):
        raise SetupError("%s is missing: run `make build/bench/script_bench` (make bench does)" % exe)
    return exe


def research_dir():
    r = os.environ.get("STREAMER_RESEARCH")
    for c in ([r] if r else []) + [os.path.join(REPO, "..", "shared", "research"), "/work/shared/research"]:
        if c and os.path.isdir(os.path.join(c, "bundles")):
            return os.path.abspath(c)
    raise SetupError("HPE's artifact bundles are missing: set STREAMER_RESEARCH (see Makefile)")


def pick_dir():
    best = None
    for c in [os.path.join(REPO, "build", "bench"), "/var/tmp", tempfile.gettempdir()]:
        try:
            os.makedirs(c, exist_ok=True)
            st = os.statvfs(c)
        except OSError:
            continue
        if best is None or st.f_bavail * st.f_frsize > best[1]:
            best = (c, st.f_bavail * st.f_frsize)
    if best is None:
        raise SetupError("no writable work directory")
    return best[0]


# ---- build plans and attribute values ------------------------------------------------------
NIC = {"mac": "aa:bb:cc:dd:ee:0%d", "ipaddress": "10.10.0.1%d", "netmask": "255.255.255.0",
       "gateway": "10.10.0.1", "dns1": "10.10.0.2", "dns2": "10.10.0.3", "domain": "example.com",
       "vlanid": "0", "dhcp": "false", "ipv4disable": "false"}
# representative values a user would give (attributes without a value in the build plan)
VALUES = {"HostName": "rhel-node01", "DomainName": "rhel-node01.example.com", "NewUser": "alice,bob",
          "NewUsers": "alice,bob", "UcpIp": "10.10.0.50", "NtpServer": "10.10.0.4"}
PASSWORD = "Passw0rd1"


def constraints(a):
    c = a.get("constraints")
    if isinstance(c, str):
        try:
            c = json.loads(c or "{}")
        except ValueError:
            c = {}
    return c or {}


def plan_values(decls):
    v, secrets, k = {}, [], 0
    for a in sorted(decls, key=lambda x: x["name"]):
        t = (a.get("type") or "string").lower()
        name = a["name"]
        if t == "password":
            secrets.append(name)
        if t == "nic":
            k += 1
            for p in constraints(a).get("parameters") or list(NIC):
                if p in NIC:
                    v[name + "." + p] = NIC[p] % k if "%d" in NIC[p] else NIC[p]
            continue
        if name in VALUES:
            v[name] = VALUES[name]
        elif a.get("value"):
            v[name] = a["value"]
        elif t == "password":
            v[name] = PASSWORD
        elif t == "hostname":
            v[name] = "rhel-node01"
        elif t == "fqdn":
            v[name] = "example.com"
        elif t == "ipv4":
            v[name] = "10.10.0.5"
        elif t == "number":
            v[name] = str(constraints(a).get("minimum") or "1")
        elif t == "option" and constraints(a).get("options"):
            v[name] = constraints(a)["options"][0]
    if "DomainName" in v and any(a["name"] == "DomainName" and (a.get("type") or "").lower() == "fqdn"
                                 for a in decls):
        v["DomainName"] = "example.com"  # the EFI bundles' DomainName is the domain, not the FQDN
    return v, secrets


def load_plan(research, w):
    path = os.path.join(research, "bundles", w["bundle"])
    z = zipfile.ZipFile(path)
    ps = {}
    for n in z.namelist():
        if n.endswith("_planscript.json"):
            d = json.loads(z.read(n))
            ps[d["id"]] = d
    for n in sorted(z.namelist()):
        if n.endswith("_buildplan.json"):
            d = json.loads(z.read(n))
            if d["name"] != w["plan"]:
                continue
            values, secrets = plan_values(d.get("customAttributes") or [])
            steps = [{"serial": s["serialNumber"], "name": ps[s["planScriptUri"].split("/")[-1]]["name"],
                      "content": ps[s["planScriptUri"].split("/")[-1]]["content"]} for s in d["buildStep"]]
            return {"bundle": os.path.basename(path), "name": d["name"], "type": d["oeBuildPlanType"],
                    "values": values, "secrets": secrets, "steps": steps}
    raise SetupError("%s: no build plan named %s" % (path, w["plan"]))


# ---- images --------------------------------------------------------------------------------
ROOT_FILES = {
    "etc/os-release": 'NAME="Red Hat Enterprise Linux Server"\nVERSION="7.3 (Maipo)"\nID="rhel"\n'
                      'ID_LIKE="fedora"\nVERSION_ID="7.3"\nPRETTY_NAME="Red Hat Enterprise Linux Server 7.3 '
                      '(Maipo)"\nANSI_COLOR="0;31"\nCPE_NAME="cpe:/o:redhat:enterprise_linux:7.3:GA:server"\n',
    "etc/redhat-release": "Red Hat Enterprise Linux Server release 7.3 (Maipo)\n",
    "etc/hostname": "localhost.localdomain\n",
    "etc/hosts": "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n"
                 "::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n",
    "etc/resolv.conf": "# Generated by NetworkManager\nnameserver 10.0.0.2\n",
    "etc/fstab": "/dev/mapper/rhel-root   /       ext4    defaults        1 1\n"
                 "UUID=0b7c1f5e-3c2a-4d8e-9f10-1a2b3c4d5e6f /boot ext4 defaults 1 2\n"
                 "/dev/mapper/rhel-swap   swap    swap    defaults        0 0\n",
    "etc/machine-id": "4f1c2b3a9d8e7f6a5b4c3d2e1f0a9b8c\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\n"
                  "admin:x:1000:1000:admin:/home/admin:/bin/bash\n",
    "etc/group": "root:x:0:\nbin:x:1:\nwheel:x:10:admin\nadmin:x:1000:\n",
    "etc/shadow": "root:!!:17000:0:99999:7:::\nbin:*:17000:0:99999:7:::\nadmin:!!:17000:0:99999:7:::\n",
    "etc/sysconfig/network": "# Created by anaconda\nNETWORKING=yes\n",
    "etc/sysconfig/network-scripts/ifcfg-eth0": 'TYPE="Ethernet"\nBOOTPROTO="dhcp"\nNAME="eth0"\n'
                                                'DEVICE="eth0"\nONBOOT="yes"\n',
    "etc/sysconfig/network-scripts/ifcfg-eth1": 'TYPE="Ethernet"\nBOOTPROTO="dhcp"\nNAME="eth1"\n'
                                                'DEVICE="eth1"\nONBOOT="no"\n',
    "etc/sysconfig/network-scripts/ifcfg-lo": "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\n"
                                              "ONBOOT=yes\nNAME=loopback\n",
    "etc/selinux/config": "SELINUX=disabled\nSELINUXTYPE=targeted\n",
    "etc/rc.d/rc.local": "#!/bin/bash\n# It is highly advisable to create own systemd services or udev rules\n"
                         "touch /var/lock/subsys/local\n",
    "etc/chrony.conf": "server 0.rhel.pool.ntp.org iburst\nserver 1.rhel.pool.ntp.org iburst\n"
                       "driftfile /var/lib/chrony/drift\nmakestep 1.0 3\nrtcsync\n",
    "etc/iscsi/initiatorname.iscsi": "InitiatorName=iqn.1994-05.com.redhat:3c2a4d8e9f10\n",
    "etc/ssh/sshd_config": "Protocol 2\nSyslogFacility AUTHPRIV\nPasswordAuthentication yes\n",
    "etc/init.d/functions": "# -*-Shell-script-*-\nTEXTDOMAIN=initscripts\n",
    "etc/init.d/netconsole": "#!/bin/bash\n# netconsole\n",
    "etc/docker/daemon.json": "{}\n",
    "etc/docker/key.json": '{"crv":"P-256","kid":"ABCD:EFGH","kty":"EC"}\n',
    "usr/lib/sysctl.d/00-system.conf": "# Kernel sysctl configuration\nnet.bridge.bridge-nf-call-iptables = 0\n",
    "etc/systemd/system/default.target": None,  # symlink below
    "root/anaconda-ks.cfg": "#version=DEVEL\nauth --enableshadow --passalgo=sha512\n",
    "home/admin/.bashrc": "# .bashrc\n",
    "var/log/messages": "",
    "ImageStreamerCapture": "HPE Image Streamer Capture for RHEL 7.3\n",
}
ROOT_LINKS = {"etc/rc.local": "rc.d/rc.local", "bin": "usr/bin", "sbin": "usr/sbin", "lib64": "usr/lib64",
              "etc/systemd/system/default.target": "/lib/systemd/system/multi-user.target",
              "etc/systemd/system/multi-user.target.wants/sshd.service": "/usr/lib/systemd/system/sshd.service",
              "etc/systemd/system/multi-user.target.wants/chronyd.service":
                  "/usr/lib/systemd/system/chronyd.service"}
ROOT_DIRS = ["tmp", "var/tmp", "usr/bin", "usr/sbin", "usr/lib64", "usr/lib/systemd/system", "proc", "sys",
             "dev", "run", "var/lib/chrony", "var/lock/subsys", "mnt", "opt", "srv", "media"]


def make_root_tree(dst, bulk_files, seed=1):
    """A RHEL-7.3-like root: the files the plans read and edit, a few hundred entries in /etc
    like a real one, and bulk_files small files of pseudo-random content under /usr/share."""
    rnd = hashlib.sha256(b"script-bench-%d" % seed).digest()

    def blob(n, tag):
        out = bytearray()
        k = 0
        while len(out) < n:
            out += hashlib.sha256(rnd + tag + k.to_bytes(4, "little")).digest()
            k += 1
        return bytes(out[:n])

    for d in ROOT_DIRS:
        os.makedirs(os.path.join(dst, d), exist_ok=True)
    os.chmod(os.path.join(dst, "tmp"), 0o1777)
    os.chmod(os.path.join(dst, "var/tmp"), 0o1777)
    for p, text in ROOT_FILES.items():
        if text is None:
            continue
        f = os.path.join(dst, p)
        os.makedirs(os.path.dirname(f), exist_ok=True)
        with open(f, "w") as fh:
            fh.write(text)
    os.chmod(os.path.join(dst, "etc/shadow"), 0o000)
    os.chmod(os.path.join(dst, "etc/rc.d/rc.local"), 0o644)
    os.chmod(os.path.join(dst, "root"), 0o550)
    for p, target in ROOT_LINKS.items():
        f = os.path.join(dst, p)
        os.makedirs(os.path.dirname(f), exist_ok=True)
        os.symlink(target, f)
    for k in ("rsa", "ecdsa", "ed25519"):
        for suffix, mode in (("", 0o640), (".pub", 0o644)):
            f = os.path.join(dst, "etc/ssh/ssh_host_%s_key%s" % (k, suffix))
            with open(f, "wb") as fh:
                fh.write(blob(400 if suffix else 1700, f.encode()).hex().encode()[:400 if suffix else 1700])
            os.chmod(f, mode)
    # the rest of a real /etc: about 200 more files in 20 directories
    for i in range(20):
        d = os.path.join(dst, "etc", "pkg%02d.d" % i)
        os.makedirs(d, exist_ok=True)
        for j in range(10):
            with open(os.path.join(d, "conf%02d" % j), "wb") as fh:
                fh.write(blob(200 + 37 * j, b"etc%d/%d" % (i, j)).hex().encode())
    for j in range(40):
        with open(os.path.join(dst, "etc", "file%02d.conf" % j), "wb") as fh:
            fh.write(blob(300, b"etcf%d" % j).hex().encode())
    os.chown(os.path.join(dst, "home/admin"), 1000, 1000)
    os.chown(os.path.join(dst, "home/admin/.bashrc"), 1000, 1000)
    # bulk: /usr/share/bench/dNNN/fNNNN, 0-8 KiB each, 100 per directory
    for i in range(bulk_files):
        d = os.path.join(dst, "usr/share/bench", "d%03d" % (i // 100))
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%04d" % i), "wb") as fh:
            fh.write(blob((i * 2654435761) % 8192, b"bulk%d" % i))


def make_boot_tree(dst):
    os.makedirs(os.path.join(dst, "grub2"), exist_ok=True)
    kver = "3.10.0-514.el7.x86_64"
    for name, size in (("vmlinuz-" + kver, 5 * MIB), ("initramfs-%s.img" % kver, 20 * MIB),
                       ("System.map-" + kver, 3 * MIB), ("config-" + kver, 150 * 1024)):
        with open(os.path.join(dst, name), "wb") as fh:
            fh.write(hashlib.sha256(name.encode()).digest() * (size // 32))
    with open(os.path.join(dst, "grub2", "grub.cfg"), "w") as fh:
        fh.write("set default=0\nmenuentry 'Red Hat Enterprise Linux Server' {\n  linux16 /vmlinuz-%s "
                 "root=/dev/mapper/rhel-root ro rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap\n"
                 "  initrd16 /initramfs-%s.img\n}\n" % (kver, kver))


def lvm_env(dev, tmp):
    d = tempfile.mkdtemp(dir=tmp, prefix="lvmconf")
    with open(os.path.join(d, "lvm.conf"), "w") as f:
        f.write("""devices { filter = [ "a|^%s$|", "r|.*|" ] global_filter = [ "a|^%s$|", "r|.*|" ]
  obtain_device_list_from_udev = 0 use_devicesfile = 0 hints = "none" }
global { activation = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 0 archive = 0 }
""" % (dev, dev))
    return d, dict(os.environ, LVM_SYSTEM_DIR=d, LVM_SUPPRESS_FD_WARNINGS="1")


def make_lvm(img, pv_off, pv_size, swap_mib, tmp):
    """VG rhel on the PV at [pv_off, pv_off + pv_size) of img, made by lvm2 itself (loop device,
    activation off): LVs swap and root (the rest). Returns {lv: (disk offset, size)}."""
    dev = run("losetup", "-f", "--show", "-o", str(pv_off), "--sizelimit", str(pv_size), img).strip()
    conf = None
    try:
        conf, env = lvm_env(dev, tmp)
        lvm = lambda *a: run("lvm", *a, env=env)  # noqa: E731
        lvm("pvcreate", "-q", dev)
        lvm("vgcreate", "-q", "rhel", dev)
        lvm("lvcreate", "-q", "-an", "-Zn", "-n", "swap", "-L", "%dM" % swap_mib, "rhel")
        lvm("lvcreate", "-q", "-an", "-Zn", "-n", "root", "-l", "100%FREE", "rhel")

        def rep(cmd, fields, *extra):
            r = json.loads(lvm(cmd, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields, *extra))
            (rows,) = r["report"][0].values()
            return rows
        ext = int(rep("vgs", "vg_extent_size", "rhel")[0]["vg_extent_size"])
        pe_start = int(rep("pvs", "pe_start")[0]["pe_start"])
        out = {}
        for s in rep("lvs", "lv_name,seg_size_pe,seg_pe_ranges", "--segments", "rhel"):
            ranges = s["seg_pe_ranges"].split()
            if len(ranges) != 1:
                raise SetupError("LV %s has %d segments" % (s["lv_name"], len(ranges)))
            first = int(ranges[0].rsplit(":", 1)[1].split("-")[0])
            out[s["lv_name"]] = (pv_off + pe_start + first * ext, int(s["seg_size_pe"]) * ext)
        return out
    finally:
        subprocess.run(["losetup", "-d", dev])
        if conf:
            shutil.rmtree(conf, ignore_errors=True)


def mkfs_ext4_at(img, off, size, tree, label):
    run("mkfs.ext4", "-q", "-F", "-L", label, "-E", "offset=%d" % off, "-d", tree, img, "%dk" % (size // 1024))


def make_image(kind, path, a, tmp):
    """Build the `kind` ("efi" or "legacy") image at path; returns its manifest (partitions, LVs,
    filesystems with their byte ranges)."""
    t0 = time.monotonic()
    size = a.disk_gib * GIB
    boot_mib, esp_mib, swap_mib = 1024, 200, 2048
    with open(path, "wb") as f:
        f.truncate(size)
    S = 512
    if kind == "efi":
        esp = (2048 * S, esp_mib * MIB)
        boot = (esp[0] + esp[1], boot_mib * MIB)
        pv = (boot[0] + boot[1], size - (boot[0] + boot[1]) - 34 * S - MIB)
        pv = (pv[0], pv[1] // MIB * MIB)
        table = ("label: gpt\n"
                 "start=%d, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System Partition\"\n"
                 "start=%d, size=%d, type=0FC63DAF-8483-4772-8E69-3D69D8477DE4\n"
                 "start=%d, size=%d, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n"
                 % (esp[0] // S, esp[1] // S, boot[0] // S, boot[1] // S, pv[0] // S, pv[1] // S))
    else:
        esp = None
        boot = (2048 * S, boot_mib * MIB)
        pv = (boot[0] + boot[1], (size - (boot[0] + boot[1])) // MIB * MIB)
        table = ("label: dos\nstart=%d, size=%d, type=83, bootable\nstart=%d, size=%d, type=8e\n"
                 % (boot[0] // S, boot[1] // S, pv[0] // S, pv[1] // S))
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", path], input=table.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    fss = []
    if esp:
        run("mkfs.fat", "-F", "16", "-n", "ESP", "--offset=%d" % (esp[0] // S), path, str(esp[1] // 1024))
        src = os.path.join(tmp, "esp")
        shutil.rmtree(src, ignore_errors=True)
        for d in ("EFI/BOOT", "EFI/redhat/fonts", "EFI/HPE/isdeploy/scripts", "EFI/HPE/isdeploy/tmp"):
            os.makedirs(os.path.join(src, d), exist_ok=True)
        for name, n in (("EFI/BOOT/BOOTX64.EFI", 1210776), ("EFI/BOOT/fbx64.efi", 62664),
                        ("EFI/redhat/shimx64.efi", 1210776), ("EFI/redhat/grubx64.efi", 1052032),
                        ("EFI/redhat/mmx64.efi", 1158248), ("EFI/redhat/fonts/unicode.pf2", 2474961)):
            with open(os.path.join(src, name), "wb") as fh:
                fh.write(hashlib.sha256(name.encode()).digest() * (n // 32))
        with open(os.path.join(src, "EFI/redhat/grub.cfg"), "w") as fh:
            fh.write("set default=0\nmenuentry 'Red Hat Enterprise Linux Server' {\n  linuxefi /vmlinuz "
                     "root=/dev/mapper/rhel-root ro\n}\n")
        with open(os.path.join(src, "EFI/redhat/grubenv"), "w") as fh:
            fh.write("# GRUB Environment Block\n" + "#" * (1024 - 24))
        with open(os.path.join(src, "EFI/redhat/BOOT.CSV"), "wb") as fh:
            fh.write("shimx64.efi,Red Hat Enterprise Linux,,This is the boot entry for RHEL\n".encode("utf-16"))
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        run("mcopy", "-s", "-Q", "-i", "%s@@%d" % (path, esp[0]), *[os.path.join(src, x) for x in os.listdir(src)],
            "::/", env=env)
        shutil.rmtree(src)
        fss.append({"name": "esp", "type": "vfat", "off": esp[0], "size": esp[1], "device": "/dev/sda1"})
    bt = os.path.join(tmp, "boot")
    shutil.rmtree(bt, ignore_errors=True)
    make_boot_tree(bt)
    mkfs_ext4_at(path, boot[0], boot[1], bt, "boot")
    shutil.rmtree(bt)
    fss.append({"name": "boot", "type": "ext4", "off": boot[0], "size": boot[1],
                "device": "/dev/sda2" if esp else "/dev/sda1"})
    lvs = make_lvm(path, pv[0], pv[1], min(swap_mib, pv[1] // 4 // MIB), tmp)
    rt = os.path.join(tmp, "root")
    shutil.rmtree(rt, ignore_errors=True)
    make_root_tree(rt, a.bulk_files)
    mkfs_ext4_at(path, lvs["root"][0], lvs["root"][1], rt, "root")
    shutil.rmtree(rt)
    sw = os.path.join(tmp, "swap.img")
    with open(sw, "wb") as f:
        f.truncate(lvs["swap"][1])
    run("mkswap", "-L", "swap", sw)
    with open(sw, "rb") as f, open(path, "r+b") as g:
        g.seek(lvs["swap"][0])
        g.write(f.read(64 * 1024))
    os.unlink(sw)
    fss.append({"name": "root", "type": "ext4", "off": lvs["root"][0], "size": lvs["root"][1],
                "device": "/dev/rhel/root"})
    data = os.stat(path).st_blocks * 512
    log("image %s: %d GiB disk, %.0f MiB of data, built in %.1f s" % (kind, a.disk_gib, data / MIB,
                                                                       time.monotonic() - t0))
    return {"kind": kind, "disk_bytes": size, "data_bytes": data, "filesystems": fss,
            "lvs": {k: {"off": v[0], "size": v[1]} for k, v in lvs.items()}}


def sparse_copy(src, dst):
    run("cp", "--sparse=always", src, dst)


# ---- the two sides ---------------------------------------------------------------------------
def run_native(exe, plan_file, image, work, a, runs, host, export=None, keep=None):
    out = os.path.join(work, "native.json")
    cmd = [exe, "--plan", plan_file, "--image", image, "--dir", os.path.join(work, "native"),
           "--runs", str(runs), "--warmup", str(a.warmup), "--vol", a.vol, "--host", host,
           "--log", os.path.join(work, "native.log"), "--json", out]
    if export:
        cmd += ["--export", export, "--keep-workdir", keep]
    snap = api_bench.cpu_snapshot([])
    la = loadavg()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cpu = api_bench.cpu_delta(snap, api_bench.cpu_snapshot([]), 0)
    if r.returncode != 0:
        raise SetupError("native run failed:\n%s" % r.stdout[-3000:])
    with open(out) as f:
        res = json.load(f)
    os.unlink(out)
    res["loadavg_before"] = la
    res["others_pct"] = cpu["others_pct"]
    res["command"] = " ".join(["build/bench/script_bench"] + cmd[1:])
    shutil.rmtree(os.path.join(work, "native"), ignore_errors=True)
    return res


def summary(v):
    """median, p90 (nearest rank), min, max, mean: as script_bench.c computes them"""
    s = sorted(v)
    k = len(s)
    return {"median": statistics.median(s), "p90": s[(90 * k + 99) // 100 - 1], "min": s[0], "max": s[-1],
            "mean": sum(s) / k, "n": k}


def merge_native(parts):
    """The figures of several script_bench invocations of one build plan, as one set of runs."""
    m = {k: v for k, v in parts[-1].items() if not k.endswith("_all") and not isinstance(v, dict)}
    for k in parts[0]:
        if k.endswith("_all"):
            m[k] = sum((p[k] for p in parts), [])
            m[k[:-4]] = summary(m[k])
    m["runs"] = sum(p["runs"] for p in parts)
    m["blocks"] = [{"runs": p["runs"], "loadavg_before": p["loadavg_before"], "others_pct": p["others_pct"],
                    "total_ms_median": p["total_ms"]["median"], "command": p["command"]} for p in parts]
    return m


GF_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def gf_cmd(image, rw=True):
    # guestfish's ! and <! use system(3)/popen(3): /bin/sh, bash on HPE's appliance
    inner = "mount --bind /bin/bash /bin/sh && exec guestfish %s --format=raw -a %s" % (
        "--rw" if rw else "--ro", image)
    return ["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", inner]


def run_guestfish(image, cwd, stdin_text):
    env = dict(os.environ, **GF_ENV)
    snap = api_bench.cpu_snapshot([])
    la = loadavg()
    t0 = time.monotonic()
    r = subprocess.run(gf_cmd(image), input=stdin_text.encode(), cwd=cwd, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.monotonic() - t0
    cpu = api_bench.cpu_delta(snap, api_bench.cpu_snapshot([]), 1)
    return {"wall_s": round(wall, 3), "rc": r.returncode, "stdout": r.stdout.decode(errors="replace"),
            "stderr": r.stderr.decode(errors="replace"), "cpu_s": cpu["wrk_s"], "others_pct": cpu["others_pct"],
            "loadavg_before": la}


def guestfish_launch_only(image, n):
    env = dict(os.environ, **GF_ENV)
    walls = []
    for i in range(n + 1):
        t0 = time.monotonic()
        r = subprocess.run(gf_cmd(image, rw=False), input=b"run\n", env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        w = time.monotonic() - t0
        if r.returncode != 0:
            raise SetupError("guestfish run failed: %s" % r.stderr.decode(errors="replace")[-2000:])
        if i:  # the first launch is a warm-up
            walls.append(round(w, 3))
        log("guestfish launch only%s: %.2f s" % (" (warm-up)" if not i else "", w))
    return walls


# ---- the differential check ------------------------------------------------------------------
class Loop:
    def __init__(self, img, off, size):
        self.dev = run("losetup", "-f", "--show", "-r", "-o", str(off), "--sizelimit", str(size), img).strip()

    def __enter__(self):
        return self.dev

    def __exit__(self, *exc):
        subprocess.run(["losetup", "-d", self.dev])


def tree(root, with_meta):
    """{relative path: description} of every entry under root."""
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                d = {"type": "link", "target": os.readlink(p)}
            elif stat.S_ISDIR(st.st_mode):
                d = {"type": "dir"}
            else:
                with open(p, "rb") as f:
                    d = {"type": "file", "size": st.st_size, "sha256": hashlib.sha256(f.read()).hexdigest()}
            if with_meta and d["type"] != "link":
                d.update(mode="%04o" % stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)
            out[rel] = d
    return out


def extract(img, fs, dst):
    os.makedirs(dst)
    if fs["type"] == "vfat":
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        run("mcopy", "-s", "-n", "-Q", "-i", "%s@@%d" % (img, fs["off"]), "::/*", dst, env=env)
        with Loop(img, fs["off"], fs["size"]) as dev:
            r = subprocess.run(["fsck.vfat", "-n", dev], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return r.returncode, r.stdout[-800:]
    with Loop(img, fs["off"], fs["size"]) as dev:
        run("debugfs", "-R", "rdump / %s" % dst, dev)
        r = subprocess.run(["e2fsck", "-fn", dev], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout[-800:]


def diff_trees(a, b, prefix, volatile):
    diffs, expected = [], []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            line = "%s%s: native %s, guestfish %s" % (prefix, k, a.get(k, "missing"), b.get(k, "missing"))
            (expected if prefix + k in volatile else diffs).append(line)
    return diffs, expected


def compare(native_img, gf_img, manifest, native_work, gf_work, volatile, tmp):
    res = {"filesystems": {}, "differences": [], "expected_differences": []}
    for fs in manifest["filesystems"]:
        da, db = os.path.join(tmp, "n-" + fs["name"]), os.path.join(tmp, "g-" + fs["name"])
        for d in (da, db):
            shutil.rmtree(d, ignore_errors=True)
        rca, outa = extract(native_img, fs, da)
        rcb, outb = extract(gf_img, fs, db)
        meta = fs["type"] != "vfat"
        ta, tb = tree(da, meta), tree(db, meta)
        if fs["type"] != "vfat":
            for t in (ta, tb):  # debugfs rdump gives lost+found its own mode; not the script's doing
                t.pop("lost+found", None)
        d, x = diff_trees(ta, tb, fs["name"] + ":/", volatile)
        res["differences"] += d
        res["expected_differences"] += x
        res["filesystems"][fs["name"]] = {"type": fs["type"], "device": fs["device"], "entries": len(ta),
                                          "fsck_native": rca, "fsck_guestfish": rcb,
                                          "same": not d, "differences": len(d)}
        if rca != 0 or rcb != 0:
            res["differences"].append("%s: fsck exit status native %d, guestfish %d:\n%s\n%s"
                                      % (fs["name"], rca, rcb, outa, outb))
        shutil.rmtree(da)
        shutil.rmtree(db)
    wa, wb = tree(native_work, False), tree(gf_work, False)
    d, x = diff_trees(wa, wb, "work:", volatile)
    res["differences"] += d
    res["expected_differences"] += x
    res["workdir"] = {"entries": len(wa), "same": not d}
    res["agree"] = not res["differences"]
    return res


# ---- one workload ------------------------------------------------------------------------------
def median(v):
    return statistics.median(v) if v else None


def bench_workload(name, w, exe, research, images, a, work):
    plan = load_plan(research, w)
    d = os.path.join(work, name)
    os.makedirs(d)
    plan_file = os.path.join(d, "plan.json")
    with open(plan_file, "w") as f:
        json.dump(plan, f)
    expansion = os.path.join(d, "expanded.txt")
    run(exe, "--plan", plan_file, "--expand", expansion)
    with open(expansion) as f:
        script = f.read()
    img, manifest = images[w["image"]]
    log("%s: %s / %s (%d steps, %d lines) on the %s image" % (name, plan["bundle"], plan["name"],
                                                                len(plan["steps"]), script.count("\n"), w["image"]))
    # native: half of the runs before guestfish's, half after (the neighbours' load then hits both
    # sides alike); the last native run's disk and work directory go to the check
    native_img, native_work = os.path.join(d, "native.img"), os.path.join(d, "native-work")
    first = (a.runs + 1) // 2
    parts = [run_native(exe, plan_file, img, d, a, first, a.host)]
    gf = []
    gf_img = gf_work = None
    for i in range(a.gf_runs):
        gf_img = os.path.join(d, "gf-%d.img" % i)
        gf_work = os.path.join(d, "gf-work-%d" % i)
        os.makedirs(gf_work)
        sparse_copy(img, gf_img)
        r = run_guestfish(gf_img, gf_work, "run\n" + script)
        if r["rc"] != 0:
            with open(os.path.join(d, "guestfish.err"), "w") as f:
                f.write(r["stdout"] + "\n---- stderr\n" + r["stderr"])
            raise SetupError("%s: guestfish exited with %d:\n%s" % (name, r["rc"], r["stderr"][-3000:]))
        log("  guestfish run %d: %.2f s (others %.0f%% of the CPUs, load %s)"
            % (i + 1, r["wall_s"], r["others_pct"], r["loadavg_before"]))
        with open(os.path.join(d, "guestfish-%d.out" % i), "w") as f:
            f.write(r["stdout"])
        del r["stdout"]
        r["stderr"] = r["stderr"][-2000:]
        gf.append(r)
        if i < a.gf_runs - 1:
            os.unlink(gf_img)
            shutil.rmtree(gf_work)
    parts.append(run_native(exe, plan_file, img, d, a, max(1, a.runs - first), a.host, native_img, native_work))
    nat = merge_native(parts)
    log("  native: total median %.2f ms p90 %.2f, excluding host commands %.2f ms p90 %.2f "
        "(%d host commands, %.1f ms), CPU %.2f ms; load %s / %s"
        % (nat["total_ms"]["median"], nat["total_ms"]["p90"], nat["excl_host_ms"]["median"],
           nat["excl_host_ms"]["p90"], nat["host_commands"], nat["host_ms"]["median"], nat["cpu_ms"]["median"],
           parts[0]["loadavg_before"], parts[1]["loadavg_before"]))
    plain = None
    if nat["host_commands"] and a.host == "sandbox" and a.plain_runs:
        p = run_native(exe, plan_file, img, d, a, a.plain_runs, "plain")
        plain = {k: p[k] for k in ("total_ms", "host_ms", "excl_host_ms", "cpu_ms", "child_cpu_ms", "runs",
                                   "loadavg_before", "others_pct", "command")}
        log("  native, host commands in a plain bash (for comparison): total median %.2f ms, host %.2f ms"
            % (p["total_ms"]["median"], p["host_ms"]["median"]))
    chk = compare(native_img, gf_img, manifest, native_work, gf_work, w["volatile"], d)
    log("  outputs %s (%s)" % ("AGREE" if chk["agree"] else "DIFFER",
                               ", ".join("%s %d entries%s" % (k, v["entries"], "" if v["same"] else " DIFFER")
                                         for k, v in chk["filesystems"].items())))
    for line in chk["differences"][:40]:
        log("    " + line)
    for line in chk["expected_differences"]:
        log("    (time-dependent, expected) " + line)
    gf_med = median([r["wall_s"] for r in gf]) * 1000
    res = {"what": w["what"], "bundle": plan["bundle"], "plan": plan["name"], "steps": len(plan["steps"]),
           "script_lines": script.count("\n"), "script_bytes": len(script), "image": w["image"],
           "values": plan["values"], "native": nat, "native_plain_host": plain, "guestfish": gf,
           "guestfish_median_ms": gf_med,
           "ratio_total": gf_med / nat["total_ms"]["median"],
           "ratio_excl_host": gf_med / nat["excl_host_ms"]["median"], "check": chk, "target": w["target"]}
    if not a.keep:
        for p in (native_img, gf_img):
            os.unlink(p)
    return res


# ---- report ---------------------------------------------------------------------------------------
def report(result):
    print()
    print("Plan scripts: Streamer (native, %s, host commands in %s) vs guestfish %s (TCG appliance)"
          % (result["vol"], result["host"], result["guestfish_version"]))
    print("launch only: guestfish --ro -a IMAGE run: %s s (median %.2f)" % (
        " / ".join("%.2f" % x for x in result["launch_only_s"]), median(result["launch_only_s"]) or 0)
        if result["launch_only_s"] else "launch only: not measured")
    hdr = ("workload", "native med", "p90", "excl host", "p90", "host", "CPU", "guestfish med", "runs",
           "ratio", "ratio ex-host", "agree")
    print("%-8s %10s %8s %10s %8s %8s %7s %13s %22s %8s %13s %6s" % hdr)
    for name, r in result["workloads"].items():
        n = r["native"]
        print("%-8s %8.2fms %6.2fms %8.2fms %6.2fms %6.1fms %5.1fms %11.0fms %22s %7.0fx %12.0fx %6s" % (
            name, n["total_ms"]["median"], n["total_ms"]["p90"], n["excl_host_ms"]["median"],
            n["excl_host_ms"]["p90"], n["host_ms"]["median"], n["cpu_ms"]["median"], r["guestfish_median_ms"],
            " / ".join("%.1f" % g["wall_s"] for g in r["guestfish"]), r["ratio_total"], r["ratio_excl_host"],
            "yes" if r["check"]["agree"] else "NO"))
    print()
    print("targets (issue 5 item 8): native >= %.0fx faster than guestfish, <= %.0f ms per build plan "
          "excluding host-shell time" % (TARGET_RATIO, TARGET_MS))
    for name, r in result["workloads"].items():
        if not r["target"]:
            continue
        n = r["native"]
        print("  %-7s ratio %.0fx: %s; %.2f ms excluding host commands (median; p90 %.2f): %s" % (
            name, r["ratio_total"], "met" if r["ratio_total"] >= TARGET_RATIO else "NOT MET",
            n["excl_host_ms"]["median"], n["excl_host_ms"]["p90"],
            "met" if n["excl_host_ms"]["median"] <= TARGET_MS else "NOT MET"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workloads", nargs="*", help="%s (default: all)" % " ".join(WORKLOADS))
    ap.add_argument("--runs", type=int, default=30, help="timed native runs per workload (default 30)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed native runs first (default 2)")
    ap.add_argument("--gf-runs", type=int, default=3, help="guestfish runs per workload (default 3)")
    ap.add_argument("--gf-launch-runs", type=int, default=3,
                    help="timed `guestfish run` launches without a script, after a warm-up (default 3; 0: none)")
    ap.add_argument("--vol", choices=("clone", "file"), default="clone",
                    help="native runs on OS volume clones (default) or image file copies")
    ap.add_argument("--host", choices=("sandbox", "plain"), default="sandbox",
                    help="native host commands in the bubblewrap sandbox (default) or a plain bash")
    ap.add_argument("--plain-runs", type=int, default=10,
                    help="extra native runs with host commands in a plain bash, for comparison (default 10; 0: none)")
    ap.add_argument("--disk-gib", type=int, default=20, help="disk size of the images (default 20)")
    ap.add_argument("--bulk-files", type=int, default=20000, help="small files under /usr in the root (default 20000)")
    ap.add_argument("--dir", help="work directory (default: the roomiest of build/bench, /var/tmp, /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (images, logs, outputs)")
    ap.add_argument("--wait-quiet", type=int, default=120, metavar="SEC")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "script.json"))
    ap.add_argument("--exe", default=os.path.join(REPO, "build", "bench", "script_bench"),
                    help="the native driver (default build/bench/script_bench)")
    a = ap.parse_args()
    names = a.workloads or list(WORKLOADS)
    bad = [n for n in names if n not in WORKLOADS]
    if bad:
        ap.error("unknown workload %s" % bad)
    work = None
    try:
        exe = ensure_tools(a.exe)
        research = research_dir()
        base = a.dir or pick_dir()
        os.makedirs(base, exist_ok=True)
        work = tempfile.mkdtemp(prefix="script-bench-", dir=base)
        log("work dir %s" % work)
        private = os.path.join(work, "script_bench")  # a concurrent `make` must not swap it mid-run
        shutil.copy2(exe, private)
        images = {}
        for kind in sorted({WORKLOADS[n]["image"] for n in names}):
            p = os.path.join(work, kind + ".img")
            images[kind] = (p, make_image(kind, p, a, work))
        result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "commit": git_commit(), "machine": api_bench.machine_info(),
                  "guestfish_version": run("guestfish", "--version").strip(),
                  "exe": a.exe, "vol": a.vol, "host": a.host, "runs": a.runs, "gf_runs": a.gf_runs,
                  "images": {k: v[1] for k, v in images.items()}, "workloads": {}}
        result["cpu_others_pct_before"] = api_bench.wait_quiet(a.wait_quiet)
        result["loadavg_start"] = loadavg()
        result["launch_only_s"] = []
        if a.gf_launch_runs:
            result["launch_only_s"] = guestfish_launch_only(images[WORKLOADS[names[0]]["image"]][0], a.gf_launch_runs)
        disagree = False
        for n in names:
            r = bench_workload(n, WORKLOADS[n], private, research, images, a, work)
            result["workloads"][n] = r
            disagree |= not r["check"]["agree"]
        result["loadavg_end"] = loadavg()
    except SetupError as e:
        log("FAILED: %s" % e)
        if work:
            log("work dir kept: %s" % work)
        return 1
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    report(result)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    log("wrote %s" % a.out)
    return 1 if disagree else 0


def git_commit():
    try:
        c = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
