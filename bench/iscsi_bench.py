#!/usr/bin/python3
"""iscsi_bench.py — Streamer's iSCSI target beside tgtd 1.0.85, same run, same data.

Run by `make bench` (never by `make test`). Python 3 standard library, Debian's
libiscsi-bin (iscsi-perf, iscsi-readcapacity16), tgt, and build/bench/iscsi_load
(bench/iscsi_load.c, libiscsi's async API: writes, many sessions, per-session times).

The data: --size GiB (default 1) of pseudo-random bytes, no holes, in data.raw.
  tgtd      serves data.raw itself for the reads and the boot storm (64 targets, one
            LUN each, all on data.raw: the same page cache, as clones share their
            golden volume), and a fresh full copy of it for the random writes
            (overwrites in place: tgtd's best case);
  Streamer  gets data.raw uploaded as a golden image (POST /rest/golden-images, .raw)
            and serves OS volume clones of it (POST /rest/os-volumes): one clone for
            the reads, a fresh clone for the writes (first writes: copy-on-write
            allocation, the realistic case), 64 clones for the boot storm.
Both are read once end to end through iSCSI before the timed runs (page cache warm).

Workloads (each on tgtd, then on Streamer; --repeat N alternates them, median kept):
  randread   iscsi-perf -r -m 32 -b <4 KiB>  -t DURATION     4 KiB random read, QD 32
  seqread    iscsi-perf    -m 8  -b <1 MiB>  -t DURATION     1 MiB sequential read, QD 8
  randwrite  iscsi_load -m randwrite -b 4096 -q 32 -t DURATION   on the write clone/copy
  storm      iscsi_load -m seqread -b 131072 -q 4 -n 256MiB, 64 sessions, each its own
             target: aggregate MB/s (all bytes / wall time), slowest session, mean
  rss        a fresh streamerd with 1,000 exported OS volumes (and a discovery of
             them all): VmHWM; tgtd with 1,000 targets on sparse files: VmHWM.
Also recorded per run: the target's CPU time per command (/proc/PID/stat, all threads)
and the CPU other processes used (the machine is shared: see "other").

Output: a table with streamer/tgtd ratios and the issue's targets on stdout, and
build/bench/iscsi.json. Exit status 1 only if the setup fails, a target dies, or a
load run reports command errors; the figures never decide it.
--targets tgtd measures tgtd alone (for the baseline while Streamer's target is not
there); if Streamer's setup fails, its rows say why and tgtd's figures still print.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, os.path.join(REPO, "tests", "iscsi"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import api_bench  # noqa: E402  (log, wait_quiet, machine_info, cpu helpers, apt_install)
import iscsi_env  # noqa: E402
from tgtd import Tgtd  # noqa: E402

GIB, MIB = 1 << 30, 1 << 20
INITIATOR = "iqn.2024-11.org.streamer.bench:load"
LOAD = os.path.join(REPO, os.environ.get("STREAMER_BUILD", "build"), "bench", "iscsi_load")
log = api_bench.log
TARGETS = {  # the targets (issue 4 §7)
    "randread_iops_ratio": 2.0, "seqread_mb_s_ratio": 1.3, "randwrite_iops_ratio": 1.0,
    "storm_aggregate_ratio": 1.0, "storm_slowest_over_mean": 0.5, "rss_1000_targets_mib": 64,
}


class SetupError(Exception):
    pass


# ---- helpers ---------------------------------------------------------------------------------
def pick_dir(want):
    best = None
    for c in (os.path.join(REPO, "build", "bench"), "/var/tmp", tempfile.gettempdir()):
        try:
            os.makedirs(c, exist_ok=True)
            st = os.statvfs(c)
            f = st.f_bavail * st.f_frsize
        except OSError:
            continue
        if best is None or f > best[1]:
            best = (c, f)
    if not best or best[1] < want:
        raise SetupError("need %.1f GiB free for the work dir, found %.1f" % (want / GIB, (best or (0, 0))[1] / GIB))
    return best[0]


def proc_status(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def tool_version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def dpkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def readcap(url):
    out = iscsi_env.run_tool(["iscsi-readcapacity16", "-i", INITIATOR, url]).stdout
    blk = int(re.search(r"LOGICAL BLOCK LENGTH IN BYTES:(\d+)", out).group(1))
    size = int(re.search(r"Total size:(\d+)", out).group(1))
    return blk, size


def iscsi_perf(url, blocks, qd, rand, seconds):
    args = ["iscsi-perf", "-i", INITIATOR, "-m", str(qd), "-b", str(blocks), "-t", str(seconds)]
    if rand:
        args.append("-r")
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 60)
    m = re.findall(r"iops average (\d+)", r.stdout)
    if r.returncode != 0 or not m:
        raise SetupError("%s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout[-1500:], r.stderr[-800:]))
    return {"iops": float(m[-1]), "cmd": " ".join(args + ["URL"])}


def iscsi_load(urls, mode, bs, qd, seconds=None, nbytes=None, timeout=600):
    args = [LOAD, "-i", INITIATOR, "-m", mode, "-b", str(bs), "-q", str(qd)]
    if seconds:
        args += ["-t", str(seconds)]
    if nbytes:
        args += ["-n", str(nbytes)]
    r = subprocess.run(args + list(urls), capture_output=True, text=True, timeout=timeout)
    try:
        res = json.loads(r.stdout)
    except ValueError:
        raise SetupError("%s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout[-800:], r.stderr[-800:]))
    if res.get("errors"):
        raise SetupError("%s: %d command errors, first: %s" % (mode, res["errors"], res.get("first_error")))
    res["cmd"] = " ".join(args + ["URL"] + (["... (%d URLs)" % len(urls)] if len(urls) > 1 else []))
    return res


# ---- the two targets ---------------------------------------------------------------------------
class TgtdSide:
    name = "tgtd"

    def __init__(self, work, data):
        self.work, self.data = work, data
        self.t = Tgtd(tmpdir=work).start()
        self.n = 0

    def pid(self):
        return self.t.pid()

    def export(self, path, tag):
        self.n += 1
        iqn = "iqn.2024-11.org.streamer.bench:%s" % tag
        self.t.add_target(iqn, path, ("ALL",))
        return "iscsi://127.0.0.1:%d/%s/1" % (self.t.port, iqn)

    def read_url(self):
        if not self.n:
            self.read = self.export(self.data, "read")
        return self.read

    def write_url(self):
        copy = os.path.join(self.work, "tgtd-write.raw")
        subprocess.run(["cp", self.data, copy], check=True)  # a full copy: overwrites in place
        return self.export(copy, "write")

    def storm_urls(self, n):
        return [self.export(self.data, "storm-%02d" % i) for i in range(n)]

    def close(self):
        self.t.cleanup()


class StreamerSide:
    name = "streamer"

    def __init__(self, work, data, binary):
        self.work = work
        d = os.path.join(work, "streamerd")
        os.makedirs(d, exist_ok=True)
        harness.STREAMERD = binary
        self.srv = harness.Server(tls=False, data_dir=os.path.join(d, "data"), extra_args=["--log-level", "info"])
        shutil.rmtree(self.srv.tmp)
        self.srv.tmp, self.srv.log_path = d, os.path.join(d, "streamerd.log")
        self.srv.start()
        self.srv.login()
        self.size = os.path.getsize(data)
        log("streamer: uploading %s (%.1f GiB) as a golden image" % (data, self.size / GIB))
        t0 = time.time()
        self.golden = iscsi_env.upload_golden(self.srv, data, "iscsi-bench", timeout=1800)
        log("streamer: golden image %s in %.1fs" % (self.golden.get("id"), time.time() - t0))
        self.n = 0

    def pid(self):
        return self.srv.proc.pid

    def clone(self, tag, initiators=(INITIATOR,)):
        body = {"name": "bench-%s" % tag, "size": self.size, "initiatorNames": list(initiators),
                "goldenImageUri": self.golden["uri"]}
        r = self.srv.request("POST", "/rest/os-volumes", body)
        if r.status != 202:
            raise SetupError("POST /rest/os-volumes: %r" % r)
        t = self.srv.wait_task(r.json()["uri"], timeout=120)
        if t["taskState"] != "Completed":
            raise SetupError("os-volume task: %s" % json.dumps(t)[:800])
        doc = self.srv.request("GET", t["associatedResource"]["resourceUri"]).json()
        isc = doc["iscsi"]
        return "iscsi://%s/%s/%d" % (isc["portals"][0], isc["targetName"], isc.get("lun", 0))

    def read_url(self):
        if not self.n:
            self.n += 1
            self.read = self.clone("read")
        return self.read

    def write_url(self):
        return self.clone("write")

    def storm_urls(self, n):
        return [self.clone("storm-%02d" % i) for i in range(n)]

    def alive(self):
        return self.srv.proc and self.srv.proc.poll() is None

    def close(self):
        rc = self.srv.stop()
        text = self.srv.read_log()
        if rc != 0 or "AddressSanitizer" in text:
            log("streamerd exited with %r:\n%s" % (rc, text[-2000:]))


# ---- runs ---------------------------------------------------------------------------------------
def measured(side, fn, ops_key=None):
    """Run fn() with CPU accounting of the target process; add cpu figures to its result."""
    c0 = api_bench.cpu_snapshot([side.pid()])
    res = fn()
    c1 = api_bench.cpu_snapshot([side.pid()])
    ops = res.get("ops") or (res.get("iops", 0) * res.get("elapsed_s", 0)) or None
    c = api_bench.cpu_delta(c0, c1, ops)
    # api_bench's names: server = the target process, wrk = our children (the load tool)
    res["cpu"] = {"wall_s": c["wall_s"], "target_s": c["server_s"], "target_us_per_cmd": c["server_us_per_req"],
                  "client_s": c["wrk_s"], "client_us_per_cmd": c["wrk_us_per_req"], "softirq_s": c["softirq_s"],
                  "others_s": c["others_s"], "others_pct": c["others_pct"]}
    return res


def run_workloads(a, sides, results):
    urls = {}
    for s in sides:
        urls[s.name] = {"read": s.read_url()}
        blk, size = readcap(urls[s.name]["read"])
        urls[s.name]["block"], urls[s.name]["size"] = blk, size
        log("%s: read LUN %s, %d-byte blocks, %d bytes; warming the page cache" % (s.name, urls[s.name]["read"], blk,
                                                                                   size))
        iscsi_load([urls[s.name]["read"]], "seqread", MIB, 8, nbytes=size)

    def one(s, wl):
        u = urls[s.name]
        blk = u["block"]
        if wl == "randread":
            r = measured(s, lambda: dict(iscsi_perf(u["read"], 4096 // blk, 32, True, a.duration),
                                         elapsed_s=a.duration))
            r["mb_s"] = r["iops"] * 4096 / 1e6
        elif wl == "seqread":
            r = measured(s, lambda: dict(iscsi_perf(u["read"], MIB // blk, 8, False, a.duration),
                                         elapsed_s=a.duration))
            r["mb_s"] = r["iops"] * MIB / 1e6
        elif wl == "randwrite":
            if "write" not in u:
                u["write"] = s.write_url()
            r = measured(s, lambda: iscsi_load([u["write"]], "randwrite", 4096, 32, seconds=a.duration))
        elif wl == "storm":
            if "storm" not in u:
                log("%s: exporting %d storm volumes" % (s.name, a.sessions))
                u["storm"] = s.storm_urls(a.sessions)
            r = measured(s, lambda: iscsi_load(u["storm"], "seqread", a.storm_block, a.storm_qd,
                                               nbytes=a.storm_bytes, timeout=1800))
            per = [p["mb_s"] for p in r["per_session"]]
            r["aggregate_mb_s"] = r["bytes"] / r["elapsed_s"] / 1e6
            r["mean_session_mb_s"] = sum(per) / len(per)
            r["slowest_session_mb_s"] = min(per)
            r["slowest_over_mean"] = min(per) / r["mean_session_mb_s"] if r["mean_session_mb_s"] else None
            r.pop("per_session")
            r["per_session_mb_s"] = [round(p, 1) for p in per]
        else:
            raise ValueError(wl)
        if hasattr(s, "alive") and not s.alive():
            raise SetupError("streamerd died during %s" % wl)
        r.update({"workload": wl, "target": s.name})
        return r

    for wl in [w for w in ("randread", "seqread", "randwrite", "storm") if w in a.sections]:
        runs = {s.name: [] for s in sides}
        for rep in range(a.repeat):
            order = sides if rep % 2 == 0 else list(reversed(sides))
            for s in order:
                api_bench.wait_quiet(a.wait_quiet)
                r = one(s, wl)
                log("%-8s %-9s [%d/%d] %s" % (s.name, wl, rep + 1, a.repeat, summary_line(r)))
                runs[s.name].append(r)
        for name, rs in runs.items():
            key = "aggregate_mb_s" if wl == "storm" else "iops"
            rs.sort(key=lambda x: x[key])
            m = dict(rs[(len(rs) - 1) // 2])
            if len(rs) > 1:
                m["repeats"] = [round(x[key], 1) for x in rs]
            results.append(m)


def summary_line(r):
    if r["workload"] == "storm":
        return ("%d sessions x %d MiB: aggregate %.0f MB/s, mean session %.1f MB/s, slowest %.1f MB/s (%.0f%% of mean), "
                "target CPU %.1fs, others %.0f%%" % (r["sessions"], r["bytes"] // r["sessions"] // MIB,
                                                     r["aggregate_mb_s"], r["mean_session_mb_s"],
                                                     r["slowest_session_mb_s"], 100 * (r["slowest_over_mean"] or 0),
                                                     r["cpu"]["target_s"], r["cpu"]["others_pct"]))
    return "%.0f IOPS, %.1f MB/s, target CPU %s us/cmd, others %.0f%%" % (
        r["iops"], r["mb_s"], r["cpu"]["target_us_per_cmd"], r["cpu"]["others_pct"])


def rss_tgtd(work, n):
    t = Tgtd(tmpdir=work).start()
    try:
        d = os.path.join(work, "rss-tgtd")
        os.makedirs(d)
        t0 = time.time()
        for i in range(n):
            p = os.path.join(d, "%04d.img" % i)
            with open(p, "wb") as f:
                f.truncate(GIB)
            t.add_target("iqn.2024-11.org.streamer.bench:rss-%04d" % i, p, ("iqn.2024-11.org.streamer.bench:i%04d" % i,))
        made = time.time() - t0
        r = iscsi_env.run_tool(["iscsi-ls", "-i", "iqn.2024-11.org.streamer.bench:i0001", "iscsi://127.0.0.1:%d" % t.port])
        return {"targets": n, "setup_s": round(made, 1), "vmrss": proc_status(t.pid(), "VmRSS"),
                "vmhwm": proc_status(t.pid(), "VmHWM"), "discovery_ok": "rss-0001" in r.stdout}
    finally:
        t.cleanup()


def rss_streamer(work, n, binary):
    d = os.path.join(work, "rss-streamer")
    os.makedirs(d)
    harness.STREAMERD = binary
    srv = harness.Server(tls=False, data_dir=os.path.join(d, "data"))
    shutil.rmtree(srv.tmp)
    srv.tmp, srv.log_path = d, os.path.join(d, "streamerd.log")
    srv.start()
    try:
        srv.login()
        base = proc_status(srv.proc.pid, "VmRSS")
        t0 = time.time()
        tasks = []
        for i in range(n):
            r = srv.request("POST", "/rest/os-volumes", {"name": "rss-%04d" % i, "size": "1G",
                                                          "initiatorNames": ["iqn.2024-11.org.streamer.bench:i%04d" % i]})
            if r.status != 202:
                raise SetupError("POST /rest/os-volumes #%d: %r" % (i, r))
            tasks.append(r.json()["uri"])
        for u in tasks:
            t = srv.wait_task(u, timeout=300)
            if t["taskState"] != "Completed":
                raise SetupError("os-volume task: %s" % json.dumps(t)[:600])
        made = time.time() - t0
        t = srv.wait_task(tasks[1])
        portal = srv.request("GET", t["associatedResource"]["resourceUri"]).json()["iscsi"]["portals"][0]
        r = iscsi_env.run_tool(["iscsi-ls", "-i", "iqn.2024-11.org.streamer.bench:i0001", "iscsi://" + portal])
        return {"targets": n, "setup_s": round(made, 1), "vmrss_idle_before": base,
                "vmrss": proc_status(srv.proc.pid, "VmRSS"), "vmhwm": proc_status(srv.proc.pid, "VmHWM"),
                "discovery_ok": "rss-0001" in r.stdout}
    finally:
        srv.stop()


# ---- report -------------------------------------------------------------------------------------
def ratio(a, b):
    return a / b if a is not None and b else None


def report(results, rss, info, a):
    by = {(r["workload"], r["target"]): r for r in results}
    lines = []
    fmt = "%-40s %-9s %10s %10s %9s %9s %11s %7s"
    hdr = fmt % ("workload", "target", "IOPS", "MB/s", "p50 us", "p99 us", "tgt us/cmd", "other")
    lines += [hdr, "-" * len(hdr)]
    titles = {"randread": "4 KiB random read, QD32 (iscsi-perf)", "seqread": "1 MiB sequential read, QD8 (iscsi-perf)",
              "randwrite": "4 KiB random write, QD32 (iscsi_load)",
              "storm": "boot storm %d x %d MiB (iscsi_load)" % (a.sessions, a.storm_bytes // MIB)}
    ratios, targets = {}, {}
    for wl in ("randread", "seqread", "randwrite", "storm"):
        t, s = by.get((wl, "tgtd")), by.get((wl, "streamer"))
        for r in (t, s):
            if not r:
                continue
            lat = r.get("lat_us", {})
            if wl == "storm":
                lines.append(fmt % (titles[wl] if r is (t or s) else "", r["target"], "-",
                                    "%.0f" % r["aggregate_mb_s"], lat.get("p50", "-"), lat.get("p99", "-"),
                                    "%.1f" % (r["cpu"]["target_us_per_cmd"] or 0), "%.0f%%" % r["cpu"]["others_pct"]))
                lines.append(fmt % ("  slowest session %.1f MB/s = %.0f%% of mean %.1f" % (
                    r["slowest_session_mb_s"], 100 * r["slowest_over_mean"], r["mean_session_mb_s"]), "", "", "", "", "",
                    "", ""))
            else:
                lines.append(fmt % (titles[wl] if r is (t or s) else "", r["target"], "%.0f" % r["iops"],
                                    "%.1f" % r["mb_s"], lat.get("p50", "-"), lat.get("p99", "-"),
                                    "%.1f" % (r["cpu"]["target_us_per_cmd"] or 0), "%.0f%%" % r["cpu"]["others_pct"]))
        if t and s:
            if wl == "storm":
                q = ratio(s["aggregate_mb_s"], t["aggregate_mb_s"])
                ratios[wl] = {"aggregate": q, "slowest_session": ratio(s["slowest_session_mb_s"], t["slowest_session_mb_s"])}
                targets["storm aggregate >= tgtd"] = q is not None and q >= TARGETS["storm_aggregate_ratio"]
                targets["storm slowest >= 50% of mean"] = s["slowest_over_mean"] >= TARGETS["storm_slowest_over_mean"]
            else:
                q = ratio(s["iops"], t["iops"])
                ratios[wl] = {"iops": q, "target_cpu_per_cmd": ratio(s["cpu"]["target_us_per_cmd"],
                                                                     t["cpu"]["target_us_per_cmd"])}
                need = {"randread": TARGETS["randread_iops_ratio"], "seqread": TARGETS["seqread_mb_s_ratio"],
                        "randwrite": TARGETS["randwrite_iops_ratio"]}[wl]
                targets["%s >= %.1fx tgtd" % (wl, need)] = q >= need
            lines.append(fmt % ("", "ratio", "%.2fx" % q if wl != "storm" else "-",
                                "%.2fx" % q, "", "", "", ""))
    if rss:
        for name in ("tgtd", "streamer"):
            r = rss.get(name)
            if isinstance(r, dict):
                lines.append("peak RSS with %d exported targets, %-8s: VmHWM %.1f MiB (VmRSS %.1f MiB), set up in %.1fs"
                             % (r["targets"], name, r["vmhwm"] / MIB, r["vmrss"] / MIB, r["setup_s"]))
            elif r:
                lines.append("peak RSS, %s: %s" % (name, r))
        s = rss.get("streamer")
        if isinstance(s, dict):
            targets["RSS with 1,000 targets <= 64 MiB"] = s["vmhwm"] <= TARGETS["rss_1000_targets_mib"] * MIB
    print()
    print("iSCSI target benchmark: Streamer vs tgtd %s, loopback, %d s per run, %.1f GiB of data"
          % (info["tgt"], a.duration, a.size))
    print("tgt us/cmd = CPU time of the target process per command (all threads); other = CPU used by unrelated "
          "processes in % of all CPUs; ratio = streamer / tgtd")
    print("\n".join(lines))
    for k, v in targets.items():
        print("target %-36s %s" % (k + ":", "MET" if v else "NOT MET"))
    for k, v in info.get("skipped", {}).items():
        print("%s: not measured: %s" % (k, v))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    out = dict(info)
    out.update({"results": results, "rss": rss, "ratios_streamer_over_tgtd": ratios, "targets_met": targets,
                "table": lines})
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print("wrote %s" % os.path.relpath(a.out, os.getcwd()))


# ---- main -----------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sections", nargs="*", default=["randread", "seqread", "randwrite", "storm", "rss"],
                    help="any of randread seqread randwrite storm rss (default: all)")
    ap.add_argument("--targets", choices=["both", "tgtd", "streamer"], default="both")
    ap.add_argument("--size", type=float, default=1.0, help="GiB of data (default 1)")
    ap.add_argument("--duration", type=int, default=20, help="seconds per timed run (default 20)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per workload and target, alternating (median)")
    ap.add_argument("--sessions", type=int, default=64, help="boot storm sessions (default 64)")
    ap.add_argument("--storm-bytes", type=int, default=256 * MIB, help="bytes each storm session reads (256 MiB)")
    ap.add_argument("--storm-block", type=int, default=128 * 1024, help="storm read size (128 KiB)")
    ap.add_argument("--storm-qd", type=int, default=4, help="storm commands in flight per session (4)")
    ap.add_argument("--rss-targets", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="small sizes and 3 s runs: a smoke test, not figures")
    ap.add_argument("--dir", help="work dir parent (default: the roomiest of build/bench, /var/tmp, /tmp)")
    ap.add_argument("--wait-quiet", type=int, default=120, metavar="SEC")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "iscsi.json"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    # SIGTERM, and SIGINT even when started in the background (where it is ignored),
    # end the run through the finally below: tgtd and streamerd stopped, work dir removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if a.quick:
        a.size, a.duration, a.sessions, a.storm_bytes, a.rss_targets = 0.25, 3, 8, 32 * MIB, 50
    a.storm_bytes = min(a.storm_bytes, int(a.size * GIB))
    for s in a.sections:
        if s not in ("randread", "seqread", "randwrite", "storm", "rss"):
            ap.error("unknown section %s" % s)
    for tool, pkg in (("tgtd", "tgt"), ("iscsi-perf", "libiscsi-bin"), ("iscsi-readcapacity16", "libiscsi-bin")):
        if not shutil.which(tool):
            api_bench.apt_install([pkg], tool)
    if not os.access(LOAD, os.X_OK):
        log("no %s: run `make bench` (or make build/bench/iscsi_load)" % LOAD)
        return 1
    use_streamer = a.targets in ("both", "streamer")
    if use_streamer and not os.access(harness.STREAMERD, os.X_OK):
        log("no %s: run make first" % harness.STREAMERD)
        return 1

    work = tempfile.mkdtemp(prefix="iscsi-bench-", dir=a.dir or pick_dir(int(a.size * GIB) * 4 + 2 * GIB))
    sides, results, rss = [], [], {}
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": api_bench.machine_info(), "tgt": dpkg_version("tgt"), "libiscsi": dpkg_version("libiscsi-bin"),
            "git_commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True).stdout.strip(),
            "streamerd": harness.STREAMERD, "streamerd_version": tool_version([harness.STREAMERD, "--version"]),
            "config": {k: v for k, v in vars(a).items() if k not in ("out",)}, "skipped": {}}
    try:
        log("work dir %s; machine: %s" % (work, info["machine"]))
        info["others_busy_pct_before"] = api_bench.wait_quiet(a.wait_quiet)
        data = os.path.join(work, "data.raw")
        log("writing %.2f GiB of pseudo-random data" % a.size)
        iscsi_env.random_file(data, int(a.size * GIB), seed=b"iscsi-bench", holes=False)
        binary = os.path.join(work, "streamerd.bin")
        if use_streamer:
            shutil.copy2(harness.STREAMERD, binary)  # a concurrent make cannot swap it
        workloads = [s for s in a.sections if s != "rss"]
        if workloads:
            if a.targets in ("both", "tgtd"):
                sides.append(TgtdSide(work, data))
            if use_streamer:
                try:
                    sides.append(StreamerSide(work, data, binary))
                    sides[-1].read_url()  # probe: the os-volumes API and the target are there
                except (SetupError, AssertionError, KeyError, RuntimeError, OSError) as e:
                    info["skipped"]["streamer"] = str(e)[:600]
                    log("streamer: setup failed, measuring tgtd alone: %s" % str(e)[:600])
                    if sides and sides[-1].name == "streamer":
                        sides.pop().close()
            run_workloads(a, sides, results)
            for s in sides:
                if s.name == "streamer":
                    info["streamer_vmhwm_after_workloads"] = proc_status(s.pid(), "VmHWM")
        if "rss" in a.sections:
            if a.targets in ("both", "tgtd"):
                log("tgtd: %d targets for the RSS figure" % a.rss_targets)
                rss["tgtd"] = rss_tgtd(work, a.rss_targets)
            if use_streamer and "streamer" not in info["skipped"]:
                log("streamer: %d exported OS volumes for the RSS figure" % a.rss_targets)
                try:
                    rss["streamer"] = rss_streamer(work, a.rss_targets, binary)
                except (SetupError, AssertionError, RuntimeError) as e:
                    rss["streamer"] = "failed: %s" % str(e)[:400]
        report(results, rss, info, a)
        return 0
    except (SetupError, subprocess.TimeoutExpired, OSError, RuntimeError) as e:
        log("FAILED: %s" % e)
        return 1
    finally:
        for s in sides:
            try:
                s.close()
            except Exception as e:  # cleanup only
                log("closing %s: %s" % (s.name, e))
        if a.keep:
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
