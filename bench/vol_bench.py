#!/usr/bin/python3
"""vol_bench.py — volume and golden image benchmarks, each beside its peer.

Run by `make bench` (never by `make test`). Python 3 standard library only.

  clone, many, io   build/bench/vol_bench (bench/vol_bench.c, linked with
                    build/libstreamer.a): clones against `qemu-img create`, 4 KiB
                    random I/O through struct vol against a raw file. See the C
                    file's header for what each section does.
  upload            a 20 GiB raw image holding 2 GiB of pseudo-random data in
                    chunks (a sparse file), uploaded to streamerd through
                    POST /rest/golden-images (multipart, streamed with
                    http.client; holes sent from a memfd of zeros, see
                    send_file) as the HPE zip (zipfile, deflate) and as .raw,
                    --upload-repeat times each (interleaved); times from the
                    first byte sent: body sent, 202, usable (the golden image
                    document exists: at that moment a download's first byte and
                    an OS volume clone of it are timed, to show it is usable),
                    SHA-256 recorded (the import task completes); then
                    GET /rest/golden-images/download/{id}: time to the first
                    byte and throughput. Peers, on the same raw file:
                    `qemu-img convert -O qcow2` (what a qemu user waits for before
                    the image is usable) and `cp --sparse=always`; for the
                    download, a sequential read of the golden volume's file.

Output: tables on stdout and build/bench/vol.json. Timings never decide the exit
status: 0 unless the setup failed, a tool or the server failed, or a check of the
content failed (the SHA-256 streamerd computes must equal ours).

Disk: the work dir (--dir; by default under the file system with the most room
among build/bench/, /var/tmp and /tmp) needs about 12 GiB for clone/many/io and
about 26 GiB more for the upload (inputs: the sparse raw image takes its 2 GiB of data, the
zip 2 GiB; each golden volume 2 GiB; the qemu-img peer's output; room for an older
streamerd, which received a .raw upload as a 20 GiB file). Big
inputs are kept between runs only with --cache DIR. Everything else is deleted.
"""
import argparse
import datetime
import hashlib
import http.client
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
import harness  # noqa: E402  (tests/e2e/harness.py: start streamerd, log in, requests)
import api_bench  # noqa: E402  (apt_install, machine_info, wait_quiet, log)

GIB = 1 << 30
MIB = 1 << 20
TARGET_USABLE_S = 15.0
TARGET_TTFB_S = 1.0
log = api_bench.log


class SetupError(Exception):
    pass


# ---- tools and place ------------------------------------------------------------------
def ensure_tools():
    if not shutil.which("qemu-img"):
        api_bench.apt_install(["qemu-utils"], "qemu-img (the peer)")
    return shutil.which("qemu-img")


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def pick_dir(want):
    """The candidate directory on the file system with the most free space."""
    cands = [os.path.join(REPO, "build", "bench"), "/var/tmp", tempfile.gettempdir()]
    best = None
    for c in cands:
        try:
            os.makedirs(c, exist_ok=True)
            f = free_bytes(c)
        except OSError:
            continue
        if best is None or f > best[1]:
            best = (c, f)
    if best is None:
        raise SetupError("no writable work directory among %s" % cands)
    if best[1] < want:
        log("WARNING: %s has %.1f GiB free, the run wants about %.1f GiB"
            % (best[0], best[1] / GIB, want / GIB))
    return best[0]


def git_commit():
    try:
        c = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def drop_cache(path):
    """Drop the page cache of one file (its clean pages), as for a cold start."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd) if os.access(path, os.W_OK) else None
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def perf_start(outdir, pid, tag, freq=199):
    """perf record -e cpu-clock (works on VMs without hardware counters) of pid;
    DWARF call graphs because the build keeps no frame pointers."""
    os.makedirs(outdir, exist_ok=True)
    data = os.path.join(os.path.abspath(outdir), tag + ".data")
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(freq), "--call-graph",
                          "dwarf,16384", "-p", str(pid), "-o", data],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return p, data


def allocated(path):
    return os.stat(path).st_blocks * 512


# ---- the C side -------------------------------------------------------------------------
def run_c(a, work, sections):
    exe = os.path.join(REPO, "build", "bench", "vol_bench")
    if not os.access(exe, os.X_OK):
        raise SetupError("%s is missing: run `make build/bench/vol_bench` (make bench does)" % exe)
    # A private copy: a concurrent `make` must not swap the binary mid-run.
    private = os.path.join(work, "vol_bench")
    shutil.copy2(exe, private)
    out = os.path.join(work, "vol_c.json")
    cmd = [private, "--dir", os.path.join(work, "c"), "--json", out]
    if a.cache:
        cmd += ["--cache", a.cache]
    if a.quick:
        cmd += ["--clones", "20", "--many", "100", "--io-size", "1", "--io-ops", "20000",
                "--io-cold-ops", "2000", "--io-write-ops", "10000", "--repeat", "1",
                "--clone-sizes", "1,20"]
    cmd += a.c_args + sections
    log("running " + " ".join(cmd))
    perf = None
    p = subprocess.Popen(cmd)
    if a.perf:
        perf = perf_start(a.perf, p.pid, "vol_bench")
    rc = p.wait()
    if perf:
        api_bench.perf_stop(*perf)
    os.unlink(private)
    if rc != 0:
        raise SetupError("vol_bench exited with %d" % rc)
    with open(out) as f:
        res = json.load(f)
    os.unlink(out)
    shutil.rmtree(os.path.join(work, "c"), ignore_errors=True)
    res["command"] = " ".join(["build/bench/vol_bench"] + cmd[1:])
    return res


# ---- the upload image ----------------------------------------------------------------------
def make_image(path, size, data, chunk=16 * MIB):
    """A sparse raw image of `size` bytes holding `data` bytes of pseudo-random
    content in `chunk`-byte pieces spread evenly (the first one at offset 0, so
    the image starts like a disk with content). Returns its SHA-256 (holes as
    zeros) and the seconds it took."""
    t0 = time.monotonic()
    n = max(1, data // chunk)
    stride = size // n // chunk * chunk
    if stride < chunk:
        raise SetupError("--upload-data is larger than --upload-size")
    sha = hashlib.sha256()
    zeros = bytes(16 * MIB)
    with open(path, "wb") as f:
        f.truncate(size)
        pos = 0
        for i in range(n):
            off = i * stride
            while pos < off:  # the hole before the chunk, for the checksum
                k = min(len(zeros), off - pos)
                sha.update(zeros[:k] if k < len(zeros) else zeros)
                pos += k
            buf = os.urandom(chunk)
            # not a zip or a partition table by accident: the import checks the first sector
            f.seek(off)
            f.write(buf)
            sha.update(buf)
            pos = off + chunk
        while pos < size:
            k = min(len(zeros), size - pos)
            sha.update(zeros[:k] if k < len(zeros) else zeros)
            pos += k
        f.flush()
        os.fsync(f.fileno())
    return sha.hexdigest(), time.monotonic() - t0


def make_zip(raw, path, member):
    """The HPE way: Python's zipfile, deflate, one member (zip64: > 4 GiB)."""
    t0 = time.monotonic()
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        z.write(raw, arcname=member)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, path)
    return time.monotonic() - t0


def upload_inputs(a, work):
    """(raw path, zip path, sha256, info) — from the cache when it is there."""
    d = a.cache or work
    os.makedirs(d, exist_ok=True)
    size, data = a.upload_size * GIB, int(a.upload_data * GIB)
    stem = "upload-%dg-%gg" % (a.upload_size, a.upload_data)
    raw, zpath, meta = (os.path.join(d, stem + ".raw"), os.path.join(d, stem + ".zip"),
                        os.path.join(d, stem + ".json"))
    info = {}
    if a.cache and os.path.exists(meta) and os.path.exists(raw):
        with open(meta) as f:
            info = json.load(f)
        if os.path.getsize(raw) != size or info.get("size") != size:
            info = {}
    if not info:
        log("making %s: %d GiB sparse raw image with %g GiB of pseudo-random data" % (raw, a.upload_size,
                                                                                    a.upload_data))
        sha, secs = make_image(raw, size, data)
        info = {"size": size, "data": data, "sha256": sha, "make_s": round(secs, 1)}
        if os.path.exists(zpath):
            os.unlink(zpath)
    else:
        log("reusing %s" % raw)
    if "zip" in a.formats and not os.path.exists(zpath):
        log("zipping it the HPE way (zipfile, ZIP_DEFLATED): %s" % zpath)
        info["zip_s"] = round(make_zip(raw, zpath, stem + ".raw"), 1)
    if os.path.exists(zpath):
        info["zip_bytes"] = os.path.getsize(zpath)
    info["raw_allocated"] = allocated(raw)
    with open(meta, "w") as f:
        json.dump(info, f)
    return raw, zpath, meta, info


# ---- upload and download through the REST API ------------------------------------------------
BOUNDARY = "vol-bench-boundary-5d41402abc4b2a76"


ZEROS = 4 * MIB


def send_file(sock, path):
    """Send the file's bytes: its data with sendfile, its holes as zeros with
    sendfile from a memfd of zeros (made once). A plain sendfile of a sparse
    file makes the kernel allocate and zero a page-cache page for every hole
    page, which on this VM costs more than the upload itself (29-40 s for the
    20 GiB image against a receiver that only reads, 16.5 s this way)."""
    zfd = os.memfd_create("zeros")
    with os.fdopen(zfd, "r+b") as zeros, open(path, "rb") as f:
        os.ftruncate(zfd, ZEROS)
        os.pwrite(zfd, bytes(ZEROS), 0)
        fd, size, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                data = size
            while pos < data:
                k = min(ZEROS, data - pos)
                sock.sendfile(zeros, 0, k)
                pos += k
            if pos < size:
                end = os.lseek(fd, pos, os.SEEK_HOLE)
                sock.sendfile(f, pos, end - pos)
                pos = end


def upload(srv, path, filename, name):
    """POST /rest/golden-images with the file streamed (send_file) as the multipart
    `file` part. Returns (202 response, seconds to send the body, seconds to the
    response)."""
    head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n' % (BOUNDARY, filename)).encode()
    tail = ("\r\n--%s--\r\n" % BOUNDARY).encode()
    length = len(head) + os.path.getsize(path) + len(tail)
    c = srv.connection()
    c.timeout = 3600
    t0 = time.monotonic()
    c.putrequest("POST", "/rest/golden-images?name=%s" % name)
    for k, v in (("X-API-Version", "2020"), ("auth", srv.token),
                 ("Content-Type", "multipart/form-data; boundary=%s" % BOUNDARY),
                 ("Content-Length", str(length))):
        c.putheader(k, v)
    c.endheaders()
    c.send(head)
    send_file(c.sock, path)
    c.send(tail)
    t_sent = time.monotonic() - t0
    r = c.getresponse()
    body = r.read().decode("utf-8", "replace")
    t_resp = time.monotonic() - t0
    c.close()
    if r.status != 202:
        raise SetupError("upload of %s: %d %s" % (filename, r.status, body[:500]))
    return json.loads(body), t_sent, t_resp, t0


def probe_usable(srv, gi_uri):
    """At the moment the golden image exists: the first byte of its download, and
    an OS volume cloned from it (POST /rest/os-volumes, task waited for)."""
    out = {}
    gid = gi_uri.rsplit("/", 1)[1]
    c = srv.connection()
    t0 = time.monotonic()
    c.request("GET", "/rest/golden-images/download/%s" % gid,
              headers={"X-API-Version": "2020", "auth": srv.token})
    r = c.getresponse()
    first = r.read(64) if r.status == 200 else b""
    out["download_ttfb_s"] = round(time.monotonic() - t0, 4) if first.startswith(b"PK\x03\x04") else None
    c.close()
    t0 = time.monotonic()
    r = srv.request("POST", "/rest/os-volumes", {"name": "vol-bench-clone-%s" % gid[:8], "goldenImageUri": gi_uri,
                                                 "initiatorNames": ["*"], "allowAnyInitiator": True})
    if r.status == 202 and r.headers.get("location", "").startswith("/rest/tasks/"):
        t = wait_task(srv, r.headers["location"], t0, 120)[0]
        if t["taskState"] == "Completed":
            out["clone_s"] = round(time.monotonic() - t0, 3)
            out["clone_uri"] = t["associatedResource"]["resourceUri"]
        else:
            out["clone_error"] = json.dumps(t.get("taskErrors"))[:300]
    else:
        out["clone_error"] = "POST /rest/os-volumes: %d %s" % (r.status, r.text[:200])
    return out


def wait_usable(srv, task_uri, gi_uri, t0, timeout):
    """Poll every 20 ms until the import task ends: (task, seconds since t0 when the
    golden image document appeared, seconds when the task ended, probes at usable)."""
    deadline = time.monotonic() + timeout
    t_usable, probes = None, {}
    while time.monotonic() < deadline:
        if t_usable is None and srv.request("GET", gi_uri).status == 200:
            t_usable = time.monotonic() - t0
            probes = probe_usable(srv, gi_uri)
        t = srv.request("GET", task_uri).json()
        if t["taskState"] not in ("New", "Starting", "Pending", "Running", "Stopping"):
            return t, t_usable, time.monotonic() - t0, probes
        time.sleep(0.02)
    raise SetupError("task %s did not finish in %d s" % (task_uri, timeout))


def wait_task(srv, uri, t0, timeout):
    """Poll the task every 20 ms; (task, seconds since t0 when it left Running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = srv.request("GET", uri).json()
        if t["taskState"] not in ("New", "Starting", "Pending", "Running", "Stopping"):
            return t, time.monotonic() - t0
        time.sleep(0.02)
    raise SetupError("task %s did not finish in %d s" % (uri, timeout))


def download_image(srv, gid):
    """GET the download: seconds to the status line, to the first body byte, and
    to the end; bytes; the first bytes (a zip local header)."""
    c = srv.connection()
    c.timeout = 3600
    t0 = time.monotonic()
    c.request("GET", "/rest/golden-images/download/%s" % gid,
              headers={"X-API-Version": "2020", "auth": srv.token})
    r = c.getresponse()
    t_head = time.monotonic() - t0
    if r.status != 200:
        raise SetupError("download %s: %d %s" % (gid, r.status, r.read()[:300]))
    length = int(r.getheader("Content-Length") or -1)
    first = r.read(64)
    t_first = time.monotonic() - t0
    n = len(first)
    buf = bytearray(4 * MIB)
    while True:
        k = r.readinto(buf)
        if not k:
            break
        n += k
    t_end = time.monotonic() - t0
    c.close()
    if length >= 0 and n != length:
        raise SetupError("download %s: %d bytes, Content-Length said %d" % (gid, n, length))
    if not first.startswith(b"PK\x03\x04"):
        raise SetupError("download %s does not start with a zip local header" % gid)
    return {"ttfb_s": round(t_first, 4), "headers_s": round(t_head, 4), "total_s": round(t_end, 2),
            "bytes": n, "mb_per_s": round(n / t_end / 1e6, 1), "target_ttfb_met": t_first <= TARGET_TTFB_S}


def read_file_peer(path):
    """Sequential 256 KiB reads (streamerd's download block) of a file (the
    golden volume): the ceiling a download of it could reach here."""
    t0 = time.monotonic()
    n = 0
    buf = bytearray(256 << 10)
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            n += k
    t = time.monotonic() - t0
    return {"total_s": round(t, 2), "bytes": n, "mb_per_s": round(n / t / 1e6, 1)}


def timed(cmd):
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t = time.monotonic() - t0
    if r.returncode != 0:
        raise SetupError("%s failed: %s" % (" ".join(cmd), r.stdout[-1000:]))
    return t


def upload_once(a, srv, vols, fmt, src, info, download):
    name = "vol-bench-%s-%d-%d" % (fmt, os.getpid(), int(time.monotonic() * 1000))
    filename = os.path.basename(src)
    others = api_bench.wait_quiet(a.wait_quiet)
    drop_cache(src)
    log("uploading %s (%.2f GiB on the wire) as %s" % (filename, os.path.getsize(src) / GIB, fmt))
    perf = perf_start(a.perf, srv.proc.pid, "streamerd-upload-" + fmt) if a.perf else None
    task, t_sent, t_resp, t0 = upload(srv, src, filename, name)
    gi_uri = task["associatedResource"]["resourceUri"]
    task, t_usable, t_done, probes = wait_usable(srv, task["uri"], gi_uri, t0, 3600)
    if perf:
        api_bench.perf_stop(*perf)
    if task["taskState"] != "Completed":
        raise SetupError("import task of %s ended %s: %s" % (filename, task["taskState"],
                                                              json.dumps(task.get("taskErrors"))[:800]))
    if t_usable is None:
        raise SetupError("golden image %s never appeared" % gi_uri)
    gi = srv.request("GET", gi_uri).json()
    gid = gi.get("id") or gi_uri.rsplit("/", 1)[1]
    golden_file = os.path.join(vols, gid + ".raw")
    sha_ok = gi.get("checkSum") == info["sha256"]
    if not sha_ok:
        raise SetupError("golden image %s: our SHA-256 %s is not its checkSum %s"
                         % (gid, info["sha256"], json.dumps(gi)[:600]))
    r = {"wire_bytes": os.path.getsize(src), "send_s": round(t_sent, 2), "response_s": round(t_resp, 2),
         "usable_s": round(t_usable, 2), "checksum_s": round(t_done, 2), "import_s": round(t_usable - t_resp, 2),
         "golden_allocated": allocated(golden_file) if os.path.exists(golden_file) else None,
         "sha256_matches": sha_ok, "target_usable_met": t_usable <= TARGET_USABLE_S, "at_usable": probes,
         "cpu_others_pct_before": others}
    log("%s: sent in %.1f s, 202 after %.1f s, usable after %.1f s (download first byte %s s, clone %s s), "
        "SHA-256 recorded after %.1f s" % (fmt, t_sent, t_resp, t_usable, probes.get("download_ttfb_s"),
                                          probes.get("clone_s", probes.get("clone_error")), t_done))
    if download:
        api_bench.wait_quiet(a.wait_quiet)
        if os.path.exists(golden_file):
            drop_cache(golden_file)
        perf = perf_start(a.perf, srv.proc.pid, "streamerd-download") if a.perf else None
        r["download"] = download_image(srv, gid)
        if perf:
            api_bench.perf_stop(*perf)
        log("download: first byte after %.3f s, %.0f MB/s" % (r["download"]["ttfb_s"], r["download"]["mb_per_s"]))
        if os.path.exists(golden_file):
            drop_cache(golden_file)
            r["download_peer_read_file"] = read_file_peer(golden_file)
    if probes.get("clone_uri"):
        d = srv.request("DELETE", probes["clone_uri"])
        if d.status in (200, 202) and d.headers.get("location", "").startswith("/rest/tasks/"):
            wait_task(srv, d.headers["location"], time.monotonic(), 600)
    d = srv.request("DELETE", gi_uri)
    if d.status in (200, 202) and d.headers.get("location", "").startswith("/rest/tasks/"):
        wait_task(srv, d.headers["location"], time.monotonic(), 600)
    return r


def peer_once(a, work, raw, qemu, tag, res):
    """One run of a peer on the raw file, from a cold page cache of it."""
    mk = {"qemu_img_convert_qcow2": lambda out: [qemu, "convert", "-O", "qcow2", raw, out],
          "cp_sparse": lambda out: ["cp", "--sparse=always", raw, out]}[tag]
    out = os.path.join(work, "peer-" + tag)
    others = api_bench.wait_quiet(a.wait_quiet)
    drop_cache(raw)
    t = timed(mk(out))
    # `usable` for a qemu user: the file is written; sync it as the import does
    t0 = time.monotonic()
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    p = res["peers"].setdefault(tag, {"runs": [], "command": " ".join(mk("OUT"))})
    p["runs"].append({"s": round(t, 2), "s_with_fsync": round(t + time.monotonic() - t0, 2),
                      "allocated": allocated(out), "cpu_others_pct_before": others})
    log("peer %s: %.1f s (with fsync %.1f s)" % (tag, t, p["runs"][-1]["s_with_fsync"]))
    os.unlink(out)


def bench_upload(a, work, qemu):
    raw, zpath, meta, info = upload_inputs(a, work)
    res = {"image": info, "formats": {}, "peers": {}}
    data_dir = os.path.join(work, "streamerd")
    srv = harness.Server(tls=False, data_dir=data_dir)
    srv.start()
    try:
        srv.login()
        probe = srv.request("GET", "/rest/golden-images")
        if probe.status != 200:
            res["skipped"] = "GET /rest/golden-images answered %d: the golden image API is not there" % probe.status
            log(res["skipped"])
            return res
        vols = os.path.join(data_dir, "volumes", "golden")
        # each round: the uploads, then the peers on the same raw file (streamerd idle)
        for rnd in range(a.upload_repeat):
            for fmt in a.formats:
                r = upload_once(a, srv, vols, fmt, raw if fmt == "raw" else zpath, info,
                                download=rnd == 0 and (fmt == a.formats[0] or a.download_each))
                res["formats"].setdefault(fmt, {"runs": []})["runs"].append(r)
            for tag in ("qemu_img_convert_qcow2", "cp_sparse"):
                peer_once(a, work, raw, qemu, tag, res)
        for fmt, f in res["formats"].items():
            runs = f["runs"]
            for k in ("send_s", "response_s", "usable_s", "checksum_s", "import_s"):
                f[k] = round(statistics.median(x[k] for x in runs), 2)
            f["wire_bytes"] = runs[0]["wire_bytes"]
            f["target_usable_met"] = f["usable_s"] <= TARGET_USABLE_S
            for k in ("download", "download_peer_read_file"):
                if k in runs[0]:
                    f[k] = runs[0][k]
        for p in res["peers"].values():
            for k in ("s", "s_with_fsync", "allocated"):
                p[k] = statistics.median(x[k] for x in p["runs"])
    finally:
        srv.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(srv.tmp, ignore_errors=True)
    if not a.cache:
        for p in (raw, zpath, meta):
            if os.path.exists(p):
                os.unlink(p)
    return res


# ---- report --------------------------------------------------------------------------------
def report_upload(u):
    if not u or u.get("skipped"):
        print("\n== upload: skipped (%s)" % (u or {}).get("skipped", "not run"))
        return
    img = u["image"]
    n = max(len(f["runs"]) for f in u["formats"].values())
    print("\n== upload: %d GiB raw image with %.1f GiB of data; seconds from the first byte sent; "
          "usable = the golden image document exists; medians of %d" % (img["size"] // GIB, img["data"] / GIB, n))
    print("  %-30s %8s %7s %7s %8s %9s %9s   %s" % ("what", "wire GiB", "sent", "202", "usable", "SHA-256",
                                                  "vs qemu", "each run: usable (SHA-256)"))
    qc = u["peers"].get("qemu_img_convert_qcow2", {}).get("s_with_fsync")
    for fmt, r in u["formats"].items():
        runs = ", ".join("%.1f (%.1f)" % (x["usable_s"], x["checksum_s"]) for x in r["runs"])
        print("  %-30s %8.2f %7.1f %7.1f %8.1f %9.1f %9s   %s" % (
            "streamerd upload ." + fmt, r["wire_bytes"] / GIB, r["send_s"], r["response_s"], r["usable_s"],
            r["checksum_s"], "%.2f" % (r["usable_s"] / qc) if qc else "", runs))
        for x in r["runs"]:
            p = x.get("at_usable", {})
            print("    at usable: download first byte %s s, OS volume clone %s" % (
                p.get("download_ttfb_s"), "%s s" % p["clone_s"] if "clone_s" in p else p.get("clone_error")))
    for tag, p in u["peers"].items():
        print("  %-30s %8s %7s %7s %8.1f %9s %9s   (with fsync %.1f s; runs %s)" % (
            tag, "", "", "", p["s"], "", "", p["s_with_fsync"], ", ".join("%.1f" % x["s"] for x in p["runs"])))
    for fmt, r in u["formats"].items():
        d = r.get("download")
        if d:
            pr = r.get("download_peer_read_file", {})
            print("  download (.%s upload): first byte after %.3f s (target <= %.0f s: %s), %.0f MB/s over "
                  "%.1f GiB; peer sequential read of the golden file %.0f MB/s (ratio %.2f)"
                  % (fmt, d["ttfb_s"], TARGET_TTFB_S, "met" if d["target_ttfb_met"] else "NOT met",
                     d["mb_per_s"], d["bytes"] / GIB, pr.get("mb_per_s", 0),
                     d["mb_per_s"] / pr["mb_per_s"] if pr.get("mb_per_s") else 0))
    for fmt, r in u["formats"].items():
        print("  target usable <= %.0f s (.%s): %s (%.1f s)" % (TARGET_USABLE_S, fmt,
                                                              "met" if r["target_usable_met"] else "NOT met",
                                                              r["usable_s"]))


def targets(r):
    """[(target, figure, peer figure, met)] of everything that ran."""
    out = []
    for z in r.get("clone", {}).get("sizes", []):
        out.append(("clone of a %d GiB golden volume, median <= 2 ms" % z["golden_gib"],
                    "%.2f ms" % z["streamer"]["median_ms"],
                    "qemu-img create %.2f ms (ratio %.2f)" % (z["qemu_img"]["median_ms"], z["ratio_median"]),
                    z["target_met"]))
    m = r.get("many")
    if m:
        out.append(("%d clones <= 5 s" % m["n"], "%.2f s" % m["streamer"]["total_s"],
                    "qemu-img %.2f s (ratio %.2f)" % (m["qemu_img"]["total_s"], m["ratio_total_time"]),
                    m["target_time_met"]))
        out.append(("<= 256 KiB per unwritten clone", "%d bytes" % m["streamer"]["allocated_max_bytes"],
                    "qcow2 %d bytes" % m["qemu_img"]["allocated_max_bytes"], m["target_meta_met"]))
    io = r.get("io")
    if io:
        for th in io["results"]:
            for key, label, goal in (("read", "4 KiB reads (page cache)", 0.8),
                                     ("read_cold", "4 KiB reads (cold)", 0.8),
                                     ("first_write", "4 KiB first writes", 0.5)):
                t = th[key]
                out.append(("%s, %d thread%s, >= %d%% of raw" % (label, th["threads"], "s" if th["threads"] > 1 else "",
                                                                 goal * 100),
                            "%d/s (%.2f)" % (t["clone"]["ops_per_s"], t["ratio_clone_raw"]),
                            "raw %d/s" % t["raw"]["ops_per_s"], t["ratio_clone_raw"] >= goal))
    u = r.get("upload")
    if u and not u.get("skipped"):
        qc = u["peers"].get("qemu_img_convert_qcow2", {}).get("s_with_fsync")
        for fmt, f in u["formats"].items():
            out.append(("upload .%s of %d GiB (%g GiB data) usable <= 15 s" % (fmt, u["image"]["size"] // GIB,
                                                                              u["image"]["data"] / GIB),
                        "%.1f s" % f["usable_s"], "qemu-img convert %.1f s" % qc if qc else "", f["target_usable_met"]))
            if f.get("download"):
                out.append(("download starts streaming <= 1 s", "%.3f s" % f["download"]["ttfb_s"],
                            "", f["download"]["target_ttfb_met"]))
    return out


def report_targets(r):
    rows = targets(r)
    r["targets"] = [{"target": a, "streamer": b, "peer": c, "met": d} for a, b, c, d in rows]
    print("\n== targets")
    for a, b, c, d in rows:
        print("  %-52s %-8s %-22s %s" % (a, "met" if d else "NOT met", b, c))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sections", nargs="*", default=[], help="clone many io upload (default: all)")
    ap.add_argument("--dir", help="work directory (default: picked by free space)")
    ap.add_argument("--cache", help="keep the big inputs here and reuse them (io golden data, upload image and zip)")
    ap.add_argument("--quick", action="store_true", help="small sizes and counts: a smoke test, not figures")
    ap.add_argument("--upload-size", type=int, default=20, help="GiB of the uploaded raw image (default 20)")
    ap.add_argument("--upload-data", type=float, default=2, help="GiB of data in it (default 2)")
    ap.add_argument("--formats", default="zip,raw", help="upload formats, in order (default zip,raw)")
    ap.add_argument("--download-each", action="store_true", help="download after every upload, not only the first")
    ap.add_argument("--upload-repeat", type=int, default=1, metavar="N",
                    help="upload each format N times, interleaved, and the peers N times (medians reported)")
    ap.add_argument("--wait-quiet", type=int, default=120, metavar="SEC")
    ap.add_argument("--perf", metavar="DIR", help="perf record (cpu-clock) the C benchmark")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "vol.json"))
    ap.add_argument("--c-arg", dest="c_args", action="append", default=[],
                    help="pass an option to build/bench/vol_bench (repeatable), e.g. --c-arg=--repeat=5")
    a = ap.parse_args()
    a.formats = [f for f in a.formats.split(",") if f]
    if a.quick:
        a.upload_size, a.upload_data = min(a.upload_size, 2), min(a.upload_data, 0.25)
    c_sections = [s for s in a.sections if s in ("clone", "many", "io")]
    do_upload = not a.sections or "upload" in a.sections
    do_c = not a.sections or bool(c_sections)
    bad = [s for s in a.sections if s not in ("clone", "many", "io", "upload")]
    if bad:
        ap.error("unknown section %s" % bad)
    try:
        qemu = ensure_tools()
        want = (12 * GIB if do_c else 0) + ((a.upload_size + 12) * GIB if do_upload else 0)
        base = a.dir or pick_dir(want)
        os.makedirs(base, exist_ok=True)
        work = tempfile.mkdtemp(prefix="vol-bench-", dir=base)
        log("work dir %s (%.1f GiB free)" % (work, free_bytes(work) / GIB))
        result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "commit": git_commit(), "machine": api_bench.machine_info(),
                  "qemu_img": api_bench.tool_version([qemu, "--version"]), "work_dir": work,
                  "filesystem": fs_info(work)}
        try:
            if do_c:
                result["cpu_others_pct_before"] = api_bench.wait_quiet(a.wait_quiet)
                result.update({k: v for k, v in run_c(a, work, c_sections).items() if k != "work_dir"})
            if do_upload:
                result["upload"] = bench_upload(a, work, qemu)
                report_upload(result["upload"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except (SetupError, harness_errors()) as e:
        log("FAILED: %s" % e)
        return 1
    report_targets(result)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    log("wrote %s" % a.out)
    return 0


def harness_errors():
    return (RuntimeError, api_bench.SetupError)


def fs_info(path):
    """Type and mount options of the file system holding path (from /proc/mounts)."""
    best = ("?", "?", "?")
    path = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, typ, opts = line.split()[:4]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
                    best = (dev, mnt, typ + " " + opts)
    except OSError:
        pass
    return {"device": best[0], "mount": best[1], "type_options": best[2]}


if __name__ == "__main__":
    sys.exit(main())
