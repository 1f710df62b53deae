#!/usr/bin/python3
"""bundle_bench.py — upload + extract of the whole HPE bundle corpus, beside the floor of reading it.

Run by hand or by `make bench` (never by `make test`). Python 3 standard library only.

  corpus     every zip under $STREAMER_RESEARCH/bundles (88 real HPE bundles, 2.8 MB, six
             of them with a 100 MiB golden image inside: HPE's Developer and Support bundles).
  Streamer   one streamerd (tests/e2e/harness.py, plain HTTP on loopback, a fresh data dir per
             repeat), the bundles one after another over the REST API: POST
             /rest/artifact-bundles (multipart `file`; ?lenient=true for a bundle whose digests do
             not all verify: none in the corpus), its task polled every 2 ms until Completed, then
             PUT /rest/artifact-bundles/{id}?extract=true&forceImport=true (conflicts renamed),
             its task polled until Completed. Timed: the first POST to the last extract task
             read as Completed. Checked (not timed): every task Completed, and every artifact of
             every zip created, reused or renamed by some extraction.
  peer       the floor of merely reading the same files: `unzip -tq FILE` (inflates and CRC-checks
             every member) and `sha256sum FILE`, one process each per file, sequentially; and the
             same in-process with Python's zipfile (read every member) + hashlib.
  target     Streamer <= 5 s for the corpus (issue 7).

  --golden-gib N   instead: one bundle holding a golden image of N GiB (a sparse raw disk, a
             tenth of it random data in four runs): create (POST /rest/artifact-bundles with the
             image, until Completed), download, upload into a fresh server and extract, the
             image's SHA-256 checked after the round trip. Peers on the same raw file: what a
             bundle's creation does at least — `gzip -1` (deflate) and `sha256sum`, one after
             the other — and what its extraction does at least — `gunzip` and `sha256sum`.

Output: a table on stdout and build/bench/bundle.json, with the load average and the other
processes' CPU share at the start. Timings never decide the exit status: 1 only when the setup,
the server or a check fails.
"""
import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import api_bench  # noqa: E402  (machine_info, wait_quiet)
import vol_bench  # noqa: E402  (git_commit)
import bundlelib  # noqa: E402

TARGET_S = 5.0


class CheckError(Exception):
    pass


def log(msg):
    print("bundle_bench: " + msg, file=sys.stderr, flush=True)


def completed(srv, uri, what, timeout=300):
    """Task uri's document once Completed (polled every 2 ms: the wait is timed); CheckError
    naming `what` when it ends otherwise or not in time."""
    try:
        t = srv.wait_task(uri, timeout=timeout, poll=0.002)
    except RuntimeError as ex:
        raise CheckError("%s: %s" % (what, ex))
    if t["taskState"] != "Completed":
        raise CheckError("%s: %s" % (what, json.dumps(t)[:2000]))
    return t


def streamer_run(files, lenient, work, rep):
    """One timed pass in a fresh data dir. Returns (total s, per-bundle rows, tasks)."""
    data = os.path.join(work, "data-%d" % rep)
    rows, tasks = [], []
    with harness.Server(data_dir=data) as srv:
        srv.login()
        t0 = time.monotonic()
        for path in files:
            q = "?lenient=true" if path in lenient else ""
            a = time.monotonic()
            r = bundlelib.upload(srv, os.path.basename(path), path=path, query=q)
            if r.status != 202:
                raise CheckError("%s: upload answered %r" % (path, r))
            t = completed(srv, r.headers["location"], "%s: upload task" % path)
            b = time.monotonic()
            uri = t["associatedResource"]["resourceUri"]
            r = srv.request("PUT", uri + "?extract=true&forceImport=true", raw="null",
                            headers={"Content-Type": "text/plain;charset=UTF-8"})
            if r.status != 202:
                raise CheckError("%s: extract answered %r" % (path, r))
            t2 = completed(srv, r.headers["location"], "%s: extract task" % path)
            c = time.monotonic()
            rows.append({"bundle": os.path.relpath(path, bundlelib.BUNDLES), "upload_s": round(b - a, 4),
                         "extract_s": round(c - b, 4)})
            tasks.append(t2)
        total = time.monotonic() - t0
        srv_counts = {k: len(bundlelib.members(srv, v)) for k, v in bundlelib.REST.items()}
    return total, rows, tasks, srv_counts


def check(files, tasks, counts):
    """Every artifact of every zip accounted for by an extraction report."""
    want = 0
    for path, t in zip(files, tasks):
        zb = bundlelib.Zip(path)
        n = sum(1 for _ in zb.artifacts())
        want += n
        rep = bundlelib.report_of(t)
        got = sum(len(rep[k]) for k in ("created", "reused", "renamed", "replaced"))
        if got != n:
            raise CheckError("%s: %d artifacts, the report accounts for %d: %s" % (path, n, got, json.dumps(rep)[:800]))
        if rep["replaced"]:
            raise CheckError("%s: forceImport replaced something: %r" % (path, rep["replaced"]))
    made = sum(len(bundlelib.report_of(t)["created"]) + len(bundlelib.report_of(t)["renamed"]) for t in tasks)
    if made != sum(counts.values()):
        raise CheckError("the reports created %d artifacts, the server holds %r" % (made, counts))
    return want


def peer_tools(files):
    t0 = time.monotonic()
    for f in files:
        r = subprocess.run(["unzip", "-tq", f], capture_output=True)
        if r.returncode != 0:
            raise CheckError("unzip -tq %s: %s" % (f, r.stdout[-300:]))
        subprocess.run(["sha256sum", f], check=True, capture_output=True)
    return time.monotonic() - t0


def peer_python(files):
    t0 = time.monotonic()
    for f in files:
        with zipfile.ZipFile(f) as z:
            for n in z.namelist():
                z.read(n)
        with open(f, "rb") as g:
            hashlib.sha256(g.read()).hexdigest()
    return time.monotonic() - t0


def sh_time(cmd):
    t = time.monotonic()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def golden_run(gib, work):
    """Create / download / upload / extract of a bundle with an N GiB golden image, beside
    gzip -1 + sha256sum and gunzip + sha256sum of the same bytes."""
    raw = os.path.join(work, "golden.raw")
    with open(raw, "wb") as f:
        f.truncate(gib << 30)
        for i in range(4):  # a tenth of the image in data, the rest holes
            f.seek(i * (gib << 30) // 4)
            left = (gib << 30) // 40
            while left > 0:
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
    digest = subprocess.run(["sha256sum", raw], capture_output=True, text=True, check=True).stdout.split()[0]
    res = {"golden_gib": gib}
    with harness.Server(data_dir=os.path.join(work, "a")) as srv:
        srv.login()
        out = subprocess.run(["curl", "-sf", "-F", "file=@%s" % raw, srv.url + "/rest/golden-images?name=big",
                              "-H", "auth: " + srv.token, "-H", "X-API-Version: 2020"],
                             capture_output=True, text=True, check=True).stdout
        completed(srv, json.loads(out)["uri"], "golden upload", timeout=1800)
        gi = bundlelib.members(srv, "/rest/golden-images")[0]
        a = time.monotonic()
        r = srv.request("POST", bundlelib.COLL, {"type": "ArtifactsBundle", "name": "big",
                                                 "goldenImages": [{"resourceUri": gi["uri"]}]})
        t = completed(srv, r.headers["location"], "create", timeout=1800)
        res["create_s"] = time.monotonic() - a
        b = srv.request("GET", t["associatedResource"]["resourceUri"]).json()
        zpath = os.path.join(work, "big.zip")
        a = time.monotonic()
        subprocess.run(["curl", "-sf", "-o", zpath, srv.url + b["downloadURI"], "-H", "auth: " + srv.token,
                        "-H", "X-API-Version: 2020"], check=True)
        res["download_s"] = time.monotonic() - a
        res["bundle_bytes"] = os.path.getsize(zpath)
    with harness.Server(data_dir=os.path.join(work, "b")) as srv:
        srv.login()
        a = time.monotonic()
        r = bundlelib.upload(srv, "big.zip", path=zpath)
        t = completed(srv, r.headers["location"], "upload", timeout=1800)
        res["upload_s"] = time.monotonic() - a
        a = time.monotonic()
        r = srv.request("PUT", t["associatedResource"]["resourceUri"] + "?extract=true&forceImport=true",
                        raw="null", headers={"Content-Type": "text/plain;charset=UTF-8"})
        completed(srv, r.headers["location"], "extract", timeout=1800)
        res["extract_s"] = time.monotonic() - a
        gi = bundlelib.members(srv, "/rest/golden-images")[0]
        if gi["checkSum"] != digest:
            raise CheckError("the golden image's SHA-256 changed in the round trip")
    gz = os.path.join(work, "golden.gz")
    res["peer_gzip1_sha256sum_s"] = sh_time("gzip -1 -c %s > %s" % (raw, gz)) + sh_time("sha256sum %s" % raw)
    res["peer_gunzip_sha256sum_s"] = sh_time("gunzip -c %s > /dev/null" % gz) + sh_time("sha256sum %s" % raw)
    # coreutils' sha256sum has no SHA-NI code; OpenSSL (Python's hashlib) and GnuTLS do: the
    # same work in one process with zlib and OpenSSL, the stronger peer.
    res["peer_py_deflate1_sha256_s"], res["peer_py_inflate_sha256_s"] = py_deflate_sha256(raw)
    print()
    print("| bundle with a %d GiB golden image (%.0f MB of data) | seconds | Streamer / peer |" % (
        gib, (gib << 30) / 10 / 1e6))
    print("|---|---:|---:|")
    print("| create (POST to Completed; %.0f MB zip) | %.1f | %.2fx of gzip -1 + sha256sum (%.1f s) |" % (
        res["bundle_bytes"] / 1e6, res["create_s"], res["create_s"] / res["peer_gzip1_sha256sum_s"],
        res["peer_gzip1_sha256sum_s"]))
    print("| create, other peer: Python zlib level 1 + hashlib SHA-256, one pass | | %.2fx (%.1f s) |" % (
        res["create_s"] / res["peer_py_deflate1_sha256_s"], res["peer_py_deflate1_sha256_s"]))
    print("| download | %.1f | |" % res["download_s"])
    print("| upload into a fresh server (checksums verified) | %.1f | |" % res["upload_s"])
    print("| extract (image imported, SHA-256 recorded) | %.1f | %.2fx of gunzip + sha256sum (%.1f s) |" % (
        res["extract_s"], res["extract_s"] / res["peer_gunzip_sha256sum_s"], res["peer_gunzip_sha256sum_s"]))
    print("| extract, other peer: Python zlib inflate + hashlib SHA-256, one pass | | %.2fx (%.1f s) |" % (
        res["extract_s"] / res["peer_py_inflate_sha256_s"], res["peer_py_inflate_sha256_s"]))
    return res


def py_deflate_sha256(raw):
    """Seconds to deflate (level 1) and SHA-256 the raw file in one pass, then to inflate the
    result and SHA-256 it again: zlib and OpenSSL, in this process."""
    import zlib
    a = time.monotonic()
    c, h, parts = zlib.compressobj(1, zlib.DEFLATED, -15), hashlib.sha256(), []
    with open(raw, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            parts.append(c.compress(chunk))
    parts.append(c.flush())
    t1 = time.monotonic() - a
    a = time.monotonic()
    d, h2 = zlib.decompressobj(-15), hashlib.sha256()
    for p in parts:
        h2.update(d.decompress(p))
    h2.update(d.flush())
    t2 = time.monotonic() - a
    if h.digest() != h2.digest():
        raise CheckError("zlib round trip differs")
    return t1, t2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes, each on a fresh server (median reported)")
    ap.add_argument("--peer-repeat", type=int, default=3)
    ap.add_argument("--wait-quiet", type=int, default=60)
    ap.add_argument("--dir", help="work directory (default: under build/bench)")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "bundle.json"))
    ap.add_argument("--golden-gib", type=int, default=0, help="time a bundle with a golden image of N GiB instead")
    a = ap.parse_args()
    if a.golden_gib:
        base = a.dir or os.path.join(REPO, "build", "bench")
        os.makedirs(base, exist_ok=True)
        work = tempfile.mkdtemp(prefix="bundle-bench-gi-", dir=base)
        try:
            res = golden_run(a.golden_gib, work)
            res.update({"date": datetime.datetime.utcnow().isoformat() + "Z", "commit": vol_bench.git_commit(),
                        "loadavg": os.getloadavg()})
            print("load average %.2f / %.2f / %.2f" % res["loadavg"])
            with open(os.path.join(os.path.dirname(a.out), "bundle-golden.json"), "w") as f:
                json.dump(res, f, indent=1)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    if not shutil.which("unzip"):
        raise CheckError("unzip missing: apt-get install unzip")
    files = bundlelib.corpus()
    if not files:
        raise CheckError("no bundles under %s" % bundlelib.BUNDLES)
    lenient = {f for f in files if bundlelib.Zip(f).bad_digests}
    base = a.dir or os.path.join(REPO, "build", "bench")
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bundle-bench-", dir=base)
    size = sum(os.path.getsize(f) for f in files)
    res = {"date": datetime.datetime.utcnow().isoformat() + "Z", "commit": vol_bench.git_commit(),
           "machine": api_bench.machine_info(), "bundles": len(files), "bytes": size,
           "lenient": sorted(os.path.relpath(f, bundlelib.BUNDLES) for f in lenient)}
    try:
        res["others_busy_pct"] = api_bench.wait_quiet(a.wait_quiet)
        res["loadavg_start"] = os.getloadavg()
        for f in files:  # page cache: both sides read warm files
            with open(f, "rb") as g:
                g.read()
        runs = []
        for rep in range(a.repeat):
            total, rows, tasks, counts = streamer_run(files, lenient, work, rep)
            n = check(files, tasks, counts)
            runs.append({"total_s": round(total, 3), "rows": rows, "artifacts": n, "server_counts": counts})
            log("pass %d: %d bundles, %d artifacts, %.2f s (upload %.2f s, extract %.2f s)" % (
                rep + 1, len(files), n, total, sum(r["upload_s"] for r in rows), sum(r["extract_s"] for r in rows)))
        tools = [peer_tools(files) for _ in range(a.peer_repeat)]
        py = [peer_python(files) for _ in range(a.peer_repeat)]
        res["loadavg_end"] = os.getloadavg()
        med = statistics.median(r["total_s"] for r in runs)
        best = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
        slow = sorted(best["rows"], key=lambda r: -(r["upload_s"] + r["extract_s"]))[:5]
        res.update({"streamer_s": [r["total_s"] for r in runs], "streamer_median_s": med,
                    "median_run": best, "peer_unzip_sha256sum_s": [round(x, 3) for x in tools],
                    "peer_python_zipfile_s": [round(x, 3) for x in py]})
        tm, pm = statistics.median(tools), statistics.median(py)
        print()
        print("| measure (%d bundles, %.1f MB, %d artifacts) | seconds | ratio Streamer / this |" % (
            len(files), size / 1e6, best["artifacts"]))
        print("|---|---|---|")
        print("| Streamer: upload + extract over REST, sequential (median of %d: %s) | %.2f | 1 |" % (
            len(runs), ", ".join("%.2f" % r["total_s"] for r in runs), med))
        print("|   of which upload tasks | %.2f | |" % sum(r["upload_s"] for r in best["rows"]))
        print("|   of which extract tasks | %.2f | |" % sum(r["extract_s"] for r in best["rows"]))
        print("| peer: unzip -tq + sha256sum per file (median of %d) | %.2f | %.1fx |" % (len(tools), tm, med / tm))
        print("| peer: Python zipfile read all + hashlib (median of %d) | %.2f | %.1fx |" % (len(py), pm, med / pm))
        print("slowest bundles: " + "; ".join("%s %.2f+%.2f s" % (r["bundle"], r["upload_s"], r["extract_s"])
                                              for r in slow))
        print("load average %.2f / %.2f / %.2f at the start, others %.0f%% of the CPUs" % (
            res["loadavg_start"][0], res["loadavg_start"][1], res["loadavg_start"][2], res["others_busy_pct"]))
        print("target: corpus <= %.0f s: %s" % (TARGET_S, "met" if med <= TARGET_S else "NOT met"))
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
        log("results in %s" % a.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckError as ex:
        print("bundle_bench: %s" % ex, file=sys.stderr)
        sys.exit(1)
