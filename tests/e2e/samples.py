"""samples.py — what the tests of examples/ share: the sample artifacts (plan scripts,
build plans, deployment plans as the JSON files the REST API takes), creating them on a
server, and the Debian tiny golden image (examples/images/build-debian-tiny.sh), built
once per test run."""
import hashlib
import json
import os
import subprocess

import harness

EXAMPLES = os.path.join(harness.REPO, "examples")
KINDS = (("plan-scripts", "/rest/plan-scripts"), ("build-plans", "/rest/build-plans"),
         ("deployment-plans", "/rest/deployment-plans"))
TINY_NAME = "Streamer Debian tiny"   # the golden image name the sample deployment plan names
_tiny = {}


def load(kind):
    """{file stem: document} of examples/<kind>/*.json."""
    d = os.path.join(EXAMPLES, kind)
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".json"):
            with open(os.path.join(d, f)) as fh:
                out[f[:-5]] = json.load(fh)
    return out


def _builder_key(cache):
    """What the built image depends on: the builder, mkbootdisk.py, the cached .debs."""
    h = hashlib.sha256()
    for p in (os.path.join(EXAMPLES, "images", "build-debian-tiny.py"),
              os.path.join(harness.REPO, "tests", "iscsi", "mkbootdisk.py")):
        with open(p, "rb") as f:
            h.update(f.read())
    debs = os.path.join(cache, "debs")
    h.update("\n".join(sorted(os.listdir(debs)) if os.path.isdir(debs) else []).encode())
    return h.hexdigest()


def tiny_image():
    """The Debian tiny image, built by the example builder; reused while the builder and
    the cached Debian packages are unchanged (tests upload copies and never write it)."""
    if "path" not in _tiny:
        cache = os.path.join(harness.REPO, "build", "debian-tiny")
        out = os.path.join(harness.BUILD, "debian-tiny", "test-tiny.img")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        stamp = out + ".key"
        key = _builder_key(cache)
        try:
            with open(stamp) as f:
                fresh = f.read() == key and os.path.exists(out)
        except OSError:
            fresh = False
        if not fresh:
            r = subprocess.run([os.path.join(EXAMPLES, "images", "build-debian-tiny.sh"), out],
                               capture_output=True, text=True, timeout=1800)
            assert r.returncode == 0, "build-debian-tiny.sh failed:\n%s%s" % (r.stdout, r.stderr)
            with open(stamp, "w") as f:
                f.write(_builder_key(cache))   # the .debs it just downloaded count too
        _tiny["path"] = out
    return _tiny["path"]


def create_all(srv, skip_missing_golden=False):
    """POST every sample (plan scripts, build plans, deployment plans); {stem: document}."""
    made = {}
    for kind, coll in KINDS:
        for stem, doc in load(kind).items():
            r = srv.request("POST", coll, doc)
            if skip_missing_golden and r.status == 400 and doc.get("goldenImageURI"):
                continue
            assert r.status == 201, "%s/%s: %r" % (kind, stem, r)
            made[stem] = r.json()
    return made


def by_name(srv, coll, name):
    r = srv.request("GET", "%s?filter=%s" % (coll, "\"name='%s'\"" % name))
    assert r.status == 200, r
    for m in r.json()["members"]:
        if m["name"] == name:
            return m
    return None


def stop_checked(srv):
    """Stop streamerd and fail on a non-zero exit or a sanitizer report (what harness.Server's
    `with` block checks, for tests that restart a server)."""
    rc = srv.stop()
    log = srv.read_log()
    assert "ERROR: AddressSanitizer" not in log and "ERROR: LeakSanitizer" not in log and \
        "runtime error:" not in log, log[-4000:]
    assert rc == 0, "streamerd exit status %r\n%s" % (rc, log[-4000:])
