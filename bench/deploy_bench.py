#!/usr/bin/python3
"""deploy_bench.py — deployment latency and throughput, beside the peers.

Run by `make bench` (never by `make test`). Python 3 standard library only.

  golden image   a 20 GiB sparse raw disk: GPT, one partition from 1 MiB to the end
                 holding ext4 (mkfs.ext4 -E offset, a small tree of /etc files),
                 uploaded through POST /rest/golden-images (vol_bench.upload: holes
                 sent from a memfd of zeros).
  plan           six plan scripts, one build step each (HPE runs them as one
                 script): mount, hostname, hosts, an SSH authorized key, a motd
                 from a here-document, umount — with Hostname, Domain and SshKey
                 attributes in the deployment plan.
  latency        --latency-runs deploys one after another, each to a new machine:
                 the time from sending POST /rest/server-profiles to the task read
                 as Completed (polled every 2 ms), the profile Normal with its boot
                 connection. Every deploy's target is then checked live with
                 libiscsi's iscsi-inq using the machine's initiator and CHAP
                 credentials (not timed), and its /etc/hostname read back through
                 the browse endpoint.
  many           --many deploys (default 1000) posted by 16 client threads to as
                 many machines; the time from the first POST to the last task
                 Completed.
  peers          one guestfish launch (`guestfish --ro -a IMG run`, TCG here: the
                 floor of any guestfish-based personalization, which is what HPE's
                 appliance runs per deploy) measured in the same run on the same
                 image; HPE's own figure for the volume copy alone: "< 5 s"
                 (stated, not measured here).

Output: a table on stdout and build/bench/deploy.json. Timings never decide the
exit status: 0 unless the setup, the server, or a check failed.
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import api_bench  # noqa: E402
import vol_bench  # noqa: E402
import script_bench  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
TARGET_MEDIAN_MS = 100.0
TARGET_MANY_S = 60.0

STEPS = [
    ("mount", "mount /dev/sda1 /\n"),
    ("hostname", "write /etc/hostname \"@Hostname@\\n\"\n"),
    ("hosts", "write /etc/hosts \"127.0.0.1 localhost\\n127.0.1.1 @Hostname@.@Domain:example.com@ "
              "@Hostname@\\n\"\n"),
    ("ssh key", "mkdir-p /root/.ssh\nchmod 0700 /root/.ssh\n"
                "write /root/.ssh/authorized_keys \"@SshKey@\\n\"\nchmod 0600 /root/.ssh/authorized_keys\n"),
    ("motd", "upload -<<EOF /etc/motd\nDeployed by Streamer as @Hostname@\nEOF\n"),
    ("umount", "umount /\n"),
]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO3Bf8wq0fQ3zCqT2m7u9y1aQ1bX7p0R8H6dD4cE5fG2 bench@streamer"


class SetupError(Exception):
    pass


def log(msg):
    print("[deploy_bench] " + msg, flush=True)


def run(*args, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        raise SetupError("%s failed (%d): %s" % (" ".join(map(str, args)), r.returncode,
                                                 r.stderr.decode(errors="replace")[-2000:]))
    return r.stdout.decode(errors="replace")


def make_image(path, size, tmp):
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", path], check=True,
                   input=b"label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
    tree = os.path.join(tmp, "tree")
    os.makedirs(os.path.join(tree, "etc"), exist_ok=True)
    for n, t in (("hostname", "golden\n"), ("hosts", "127.0.0.1 localhost\n"), ("motd", "golden image\n"),
                 ("os-release", "NAME=Bench\nID=bench\n")):
        with open(os.path.join(tree, "etc", n), "w") as f:
            f.write(t)
    os.makedirs(os.path.join(tree, "root"), exist_ok=True)
    off = MIB
    run("mkfs.ext4", "-q", "-F", "-L", "root", "-E", "offset=%d" % off, "-d", tree, path,
        "%dk" % ((size - off - MIB) // 1024))


def setup_plan(srv, gi):
    uris = []
    for i, (name, content) in enumerate(STEPS):
        r = srv.request("POST", "/rest/plan-scripts", {"name": "bench %d %s" % (i + 1, name), "planType": "deploy",
                                                       "description": "", "content": content})
        if r.status != 201:
            raise SetupError("plan script: %r" % r)
        uris.append(r.json()["uri"])
    r = srv.request("POST", "/rest/build-plans", {
        "name": "bench 6 steps", "oeBuildPlanType": "deploy",
        "buildStep": [{"serialNumber": str(i + 1), "planScriptUri": u} for i, u in enumerate(uris)],
        "customAttributes": []})
    if r.status != 201:
        raise SetupError("build plan: %r" % r)
    bp = r.json()
    r = srv.request("POST", "/rest/deployment-plans", {
        "name": "bench", "oeBuildPlanURI": bp["uri"], "goldenImageURI": gi["uri"],
        "customAttributes": [
            {"name": "Hostname", "type": "hostname", "value": "", "visible": True, "editable": True},
            {"name": "Domain", "type": "fqdn", "value": "example.com", "visible": True, "editable": True},
            {"name": "SshKey", "type": "string", "value": KEY, "visible": True, "editable": True}]})
    if r.status != 201:
        raise SetupError("deployment plan: %r" % r)
    return r.json()


def mac(i):
    return "52:54:01:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)


def machines(srv, first, n):
    out = []
    for i in range(first, first + n):
        r = srv.request("POST", "/rest/server-hardware", {"name": "m%05d" % i, "macAddresses": [mac(i)]})
        if r.status != 201:
            raise SetupError("hardware: %r" % r)
        out.append(r.json())
    return out


def post(srv, conn, name, hw, dp):
    body = json.dumps({"name": name, "serverHardwareUri": hw["uri"],
                       "osDeploymentSettings": {"osDeploymentPlanUri": dp["uri"],
                                                "osCustomAttributes": [{"name": "Hostname", "value": name}]}})
    conn.request("POST", "/rest/server-profiles", body=body,
                 headers={"X-API-Version": "2020", "auth": srv.token, "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 202:
        raise SetupError("deploy %s: %d %s" % (name, r.status, data[:500]))
    return json.loads(data)["uri"]


def task_state(srv, conn, uri):
    conn.request("GET", uri, headers={"X-API-Version": "2020", "auth": srv.token})
    r = conn.getresponse()
    return json.loads(r.read())


def deploy_timed(srv, name, hw, dp):
    conn = srv.connection()
    try:
        t0 = time.monotonic()
        uri = post(srv, conn, name, hw, dp)
        while True:
            t = task_state(srv, conn, uri)
            if t["taskState"] not in ("New", "Running", "Starting", "Pending"):
                break
            time.sleep(0.002)
        ms = (time.monotonic() - t0) * 1000
    finally:
        conn.close()
    if t["taskState"] != "Completed":
        raise SetupError("deploy %s: %s" % (name, json.dumps(t)[:2000]))
    return ms, t


def check_live(srv, t, hw, name):
    """The target answers the machine's initiator with its CHAP secret; the hostname is in the volume."""
    c = t["data"]["bootConnections"][0]
    vol_uri = t["data"]["osVolumeUri"]
    cred = srv.request("GET", vol_uri + "/iscsi-credentials").json()
    url = "iscsi://%s%%%s@%s:%d/%s/0" % (cred["chapName"], cred["chapSecret"], c["targetIp"], c["targetPort"],
                                         c["targetName"])
    r = subprocess.run(["iscsi-inq", "-i", hw["initiatorName"], url], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SetupError("iscsi-inq %s: %s" % (c["targetName"], r.stderr))
    r = srv.request("GET", vol_uri + "/files/content?device=/dev/sda1&path=/etc/hostname")
    if r.status != 200 or r.body.strip() != name:
        raise SetupError("hostname of %s: %r" % (name, r))


def many(srv, dp, hws, threads=16):
    local = [None] * len(hws)

    def one(i):
        conn = srv.connection()
        try:
            local[i] = post(srv, conn, "many%05d" % i, hws[i], dp)
        finally:
            conn.close()

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(len(hws))))
    posted = time.monotonic() - t0
    conn = srv.connection()
    pending = list(local)
    try:
        while pending:
            still = []
            for u in pending:
                t = task_state(srv, conn, u)
                if t["taskState"] in ("New", "Running"):
                    still.append(u)
                elif t["taskState"] != "Completed":
                    raise SetupError("deploy: %s" % json.dumps(t)[:2000])
            pending = still
            if pending:
                time.sleep(0.05)
    finally:
        conn.close()
    return posted, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=int, default=20, help="golden image size (GiB)")
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--many", type=int, default=1000)
    ap.add_argument("--guestfish-runs", type=int, default=1)
    ap.add_argument("--task-workers", type=int, default=4)
    ap.add_argument("--dir", help="work directory (default: under build/bench)")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "deploy.json"))
    a = ap.parse_args()
    for tool, pkg in (("sfdisk", "fdisk"), ("mkfs.ext4", "e2fsprogs"), ("iscsi-inq", "libiscsi-bin"),
                      ("guestfish", "libguestfs-tools")):
        if not shutil.which(tool):
            raise SetupError("%s missing: apt-get install %s" % (tool, pkg))
    base = a.dir or os.path.join(REPO, "build", "bench")
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="deploy-bench-", dir=base)
    res = {"date": datetime.datetime.utcnow().isoformat() + "Z", "commit": vol_bench.git_commit(),
           "machine": api_bench.machine_info(), "golden_gib": a.gib, "steps": len(STEPS),
           "task_workers": a.task_workers}
    try:
        img = os.path.join(work, "golden.raw")
        log("making a %d GiB golden image" % a.gib)
        make_image(img, a.gib * GIB, work)
        with harness.Server(extra_args=["--task-workers", str(a.task_workers)],
                            data_dir=os.path.join(work, "data")) as srv:
            srv.login()
            log("uploading it")
            task, _, _, _ = vol_bench.upload(srv, img, "golden.raw", "bench")
            t = srv.wait_task(task["uri"], timeout=1800)
            if t["taskState"] != "Completed":
                raise SetupError("upload: %r" % t)
            gi = srv.request("GET", t["associatedResource"]["resourceUri"]).json()
            dp = setup_plan(srv, gi)
            hws = machines(srv, 0, a.latency_runs + 1)
            # latency: one at a time (the first is a warm-up)
            lat = []
            for i, hw in enumerate(hws):
                name = "lat%03d" % i
                ms, t = deploy_timed(srv, name, hw, dp)
                check_live(srv, t, hw, name)
                if i:
                    lat.append(round(ms, 2))
            lat_sorted = sorted(lat)
            res["latency_ms"] = {"runs": lat, "median": statistics.median(lat), "min": lat_sorted[0],
                                 "p90": lat_sorted[int(len(lat) * 0.9) - 1], "max": lat_sorted[-1]}
            log("deploy latency: median %.1f ms (min %.1f, p90 %.1f, max %.1f)" % (
                res["latency_ms"]["median"], lat_sorted[0], res["latency_ms"]["p90"], lat_sorted[-1]))
            # a deployment's log says where the time goes
            vid = t["data"]["osVolumeUri"].rsplit("/", 1)[1]
            res["last_archive"] = srv.request("GET", "/rest/os-volumes/archive/" + vid).body[-3000:]
            if a.many:
                log("registering %d machines" % a.many)
                mh = machines(srv, 1000, a.many)
                log("%d deploys" % a.many)
                posted, total = many(srv, dp, mh)
                res["many"] = {"deploys": a.many, "posted_s": round(posted, 2), "total_s": round(total, 2),
                               "per_s": round(a.many / total, 1)}
                log("%d deploys: all posted in %.1f s, all Completed in %.1f s (%.1f/s)" % (
                    a.many, posted, total, a.many / total))
                vols = srv.request("GET", "/rest/os-volumes?count=1").json()["total"]
                if vols != a.many + len(hws):
                    raise SetupError("%d OS volumes, expected %d" % (vols, a.many + len(hws)))
        log("guestfish launch (peer)")
        gf = script_bench.guestfish_launch_only(img, a.guestfish_runs)
        res["guestfish_launch_s"] = gf
        med = res["latency_ms"]["median"]
        print()
        print("| measure | Streamer | peer | ratio |")
        print("|---|---|---|---|")
        print("| deploy, POST to Completed, %d GiB image, %d steps (median of %d) | %.1f ms | one guestfish "
              "launch %.2f s | %.0fx |" % (a.gib, len(STEPS), len(lat), med, statistics.median(gf),
                                           statistics.median(gf) * 1000 / med))
        print("| same | %.1f ms | HPE: volume copy alone < 5 s (stated) | > %.0fx |" % (med, 5000 / med))
        if "many" in res:
            print("| %d deploys | %.1f s | target %.0f s | |" % (a.many, res["many"]["total_s"], TARGET_MANY_S))
        print("target: median <= %.0f ms: %s" % (TARGET_MEDIAN_MS, "met" if med <= TARGET_MEDIAN_MS else "NOT met"))
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
    except SetupError as ex:
        print("deploy_bench: %s" % ex, file=sys.stderr)
        sys.exit(1)
