#!/usr/bin/python3
"""boot_bench.py — a Linux boot over iSCSI through Streamer's target beside tgtd 1.0.85,
same run, same bytes.

Run by `make bench` (never by `make test`). Python 3 standard library and Debian's
qemu-system-x86 + ipxe-qemu (TCG: KVM is not usable here, machine.md §1), tgt, and what
examples/images/build-debian-tiny.sh needs.

The disk: the Debian tiny golden image (examples/images/build-debian-tiny.sh): SYSLINUX
and the kernel + initramfs read by iPXE through INT 13h over iSCSI, then the guest's own
kernel initiator (iscsistart, from the iBFT) logs in again and mounts its root filesystem
from partition 2 of the same disk; its init prints `hostname: ...` and powers off.
  Streamer  the image uploaded as a golden image; each boot gets a fresh OS volume clone
            (POST /rest/os-volumes, not timed), LUN 0;
  tgtd      each boot gets a fresh sparse copy of the same image file (not timed), LUN 1.
Each boot: qemu (TCG, 256 MiB, e1000, slirp) runs its iPXE ROM, which fetches a script from
slirp's TFTP and `sanboot`s the disk. Timed from the qemu process's start to each console
milestone, by the time its line arrives on the serial console:
  san       "Registered SAN device"          iPXE logged in (DHCP + TFTP before it)
  syslinux  "SYSLINUX"                       the boot loader read from the disk
  initramfs "streamer-tiny: iBFT found"      kernel + initramfs read through INT 13h
  root      "root filesystem ... mounted"    the guest kernel's own iSCSI login + mount
  hostname  "hostname:"                      the root filesystem's init running (the figure)
--repeat N boots per target, alternating (tgtd, Streamer, tgtd, ...); medians and the
Streamer / tgtd ratio of each milestone. Boots are CPU-bound in TCG on a shared 2-core
machine: the CPU other processes used during each boot is recorded beside it.

Output: a table on stdout and build/bench/boot.json. Exit status 1 only when a boot does
not reach its hostname line (or the setup fails); the times never decide it.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, os.path.join(REPO, "tests", "iscsi"))
import harness  # noqa: E402
import iscsi_env  # noqa: E402

INITIATOR = "iqn.2024-11.org.streamer.bench:boot"
MILESTONES = [("san", r"Registered SAN device"), ("syslinux", r"^SYSLINUX "),
              ("initramfs", r"streamer-tiny: iBFT found"), ("root", r"streamer-tiny: root filesystem .* mounted"),
              ("hostname", r"^hostname: ")]
FAIL = r"STREAMER-INITRAMFS-FAILED|STREAMER-IPXE-FAILED|Kernel panic"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def cpu_total():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]   # all, idle + iowait


def proc_cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12]) + int(v[13]) + int(v[14])
    except (OSError, IndexError, ValueError):
        return 0


def boot(script, timeout):
    """One qemu boot: {milestone: seconds from qemu's start}, the console, cpu of others."""
    tmp = tempfile.mkdtemp(prefix="streamer-bootbench-")
    with open(os.path.join(tmp, "boot.ipxe"), "w") as f:
        f.write(script)
    args = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
            "-boot", "n", "-nodefaults", "-serial", "stdio", "-vga", "none", "-monitor", "none",
            "-netdev", "user,id=n0,tftp=%s,bootfile=boot.ipxe" % tmp, "-device", "e1000,netdev=n0"]
    marks, out = {}, []
    done = threading.Event()
    c0 = cpu_total()
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    q0 = proc_cpu_ticks(proc.pid)

    def reader():
        buf = b""
        while True:
            b = proc.stdout.read1(65536)
            if not b:
                break
            now = time.monotonic() - t0
            buf += b
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", line.decode("utf-8", "replace")).strip("\r")
                out.append(text)
                for k, p in MILESTONES:
                    if k not in marks and re.search(p, text):
                        marks[k] = now
                if "hostname" in marks or re.search(FAIL, text):
                    done.set()
        done.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    done.wait(timeout)
    q1 = proc_cpu_ticks(proc.pid)
    c1 = cpu_total()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    th.join(5)
    shutil.rmtree(tmp, ignore_errors=True)
    hz = os.sysconf("SC_CLK_TCK")
    busy = (c1[0] - c0[0]) - (c1[1] - c0[1])
    wall = time.monotonic() - t0
    return {"marks": marks, "console": out, "qemu_cpu_s": (q1 - q0) / hz,
            "others_cpu_s": max(0, busy - (q1 - q0)) / hz, "wall_s": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="boots per target (default 3)")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per boot at most")
    ap.add_argument("--image", help="a Debian tiny image already built (default: build it)")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "boot.json"))
    a = ap.parse_args()
    for t in ("qemu-system-x86_64", "tgtd", "tgtadm"):
        if not shutil.which(t) and not os.path.exists("/usr/sbin/" + t):
            log("missing %s: make bench-deps" % t)
            return 1
    work = tempfile.mkdtemp(prefix="streamer-bootbench-", dir=os.path.join(REPO, "build"))
    srv = tgt = None
    results = {"streamer": [], "tgtd": []}
    rc = 0
    try:
        img = a.image
        if not img:
            img = os.path.join(work, "tiny.img")
            log("building the Debian tiny image")
            subprocess.run([os.path.join(REPO, "examples", "images", "build-debian-tiny.sh"), img], check=True,
                           stdout=subprocess.DEVNULL)
        srv = harness.Server(data_dir=os.path.join(work, "data"))
        srv.start()
        srv.login()
        st = iscsi_env.StreamerTarget(srv)
        tgt = iscsi_env.TgtdTarget(tmpdir=work)
        size = "%dM" % (os.path.getsize(img) >> 20)
        order = []
        for i in range(a.repeat):
            order += [("tgtd", tgt), ("streamer", st)]
        for n, (name, target) in enumerate(order):
            ex = target.create("boot-%s-%d" % (name, n), size, [INITIATOR], image=img)
            script = iscsi_env.ipxe_script(iscsi_env.root_path(ex), INITIATOR)
            r = boot(script, a.timeout)
            target.delete(ex)
            ok = "hostname" in r["marks"]
            log("%-8s boot %d: %s  (qemu cpu %.1f s, others %.1f s)" % (
                name, n // 2 + 1, " ".join("%s %.1f" % (k, r["marks"][k]) for k, _ in MILESTONES if k in r["marks"]),
                r["qemu_cpu_s"], r["others_cpu_s"]))
            if not ok:
                rc = 1
                log("boot did not reach its hostname line:\n" + "\n".join(r["console"][-30:]))
            r.pop("console")
            results[name].append(r)
    finally:
        if tgt:
            tgt.close()
        if srv:
            srv.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    med = {}
    for name, runs in results.items():
        med[name] = {}
        for k, _ in MILESTONES:
            v = [r["marks"][k] for r in runs if k in r["marks"]]
            med[name][k] = statistics.median(v) if v else None
    print("\nBoot of the Debian tiny image over iSCSI, qemu TCG (median of %d boots each, s from qemu's start)" %
          a.repeat)
    print("%-10s %10s %10s %10s" % ("milestone", "Streamer", "tgtd", "ratio"))
    for k, _ in MILESTONES:
        s, t = med["streamer"][k], med["tgtd"][k]
        print("%-10s %10s %10s %10s" % (k, "%.2f" % s if s else "-", "%.2f" % t if t else "-",
                                        "%.3f" % (s / t) if s and t else "-"))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"date": datetime.datetime.utcnow().isoformat() + "Z", "repeat": a.repeat, "median": med,
                   "runs": results}, f, indent=2)
    log("wrote %s" % a.out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
