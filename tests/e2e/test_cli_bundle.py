"""test_cli_bundle.py — `streamer bundle` end to end (contract §6): upload
(with its progress bars on a terminal), list, show (the contents table),
extract (conflicts: refused, --force-import, --rename), download, create (a
deployment plan and its closure, --with-golden-images, --read-only), rename,
delete, backup (created and downloaded) and restore; exit codes 0 / 1 (the
server refused) / 2 (a local problem).
"""
import io
import json
import os
import zipfile

import harness
import test_golden_images as tgi
from bundlelib import (COLL, REST, Zip, artifacts_zip, check_extracted, check_hpe_layout, members,
                       ps_doc, bp_doc, dp_doc)

DEV = tgi.DEV_BUNDLE


def runner(srv):
    env = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token}

    def run(*args):
        return srv.cli(*args, env=env, input="")
    return run


def test_cli_bundle(srv):
    run = runner(srv)
    zb = Zip(DEV)
    path = os.path.join(srv.tmp, "Developer bundle.zip")
    with open(DEV, "rb") as f, open(path, "wb") as g:
        g.write(f.read())
    r = run("bundle", "upload", path)
    assert r.returncode == 0, r.stderr
    assert "Developer bundle" in r.stdout, r.stdout
    assert "\r" not in r.stderr, r.stderr  # no bars without a terminal
    r = run("bundle", "list")
    assert r.returncode == 0 and "Developer bundle" in r.stdout, r.stdout
    r = run("bundle", "show", "Developer bundle")
    assert r.returncode == 0, r.stderr
    for _, d in zb.ps + zb.bp + zb.dp + zb.gi:
        assert d["name"] in r.stdout, (d["name"], r.stdout)
    r = run("--json", "bundle", "show", "Developer bundle")
    doc = json.loads(r.stdout)
    assert doc["type"] == "ArtifactsBundle" and doc["extracted"] is False, doc
    r = run("bundle", "show", doc["id"])
    assert r.returncode == 0 and "Developer bundle" in r.stdout, r.stdout
    r = run("bundle", "extract", "Developer bundle")
    assert r.returncode == 0, (r.stdout, r.stderr)
    check_extracted(srv, zb)
    assert srv.request("GET", doc["uri"]).json()["extracted"] is True

    # conflicts: a plan script of another content under a bundle's name
    ps = ps_doc("0d6c3f6e-1111-4a4a-9b9b-000000000001", "CLI PS", content="echo bundle")
    bp = bp_doc("0d6c3f6e-1111-4a4a-9b9b-000000000002", "CLI BP", [ps])
    dp = dp_doc("0d6c3f6e-1111-4a4a-9b9b-000000000003", "CLI DP", "CLI BP")
    small = os.path.join(srv.tmp, "small.zip")
    with open(small, "wb") as f:
        f.write(artifacts_zip([ps], [bp], [dp]))
    r = srv.request("POST", REST["PlanScript"], {"type": "PlanScript", "name": "CLI PS", "planType": "deploy",
                                                "description": "", "content": "echo mine"})
    assert r.status == 201, r
    r = run("bundle", "upload", small, "--name", "Small")
    assert r.returncode == 0, r.stderr
    r = run("bundle", "extract", "Small")
    assert r.returncode == 1 and "CLI PS" in r.stderr, (r.stdout, r.stderr)
    assert [m["name"] for m in members(srv, REST["OeBuildPlan"])].count("CLI BP") == 0
    r = run("bundle", "extract", "Small", "--rename", "PlanScript:CLI PS=CLI PS from the bundle")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "CLI PS from the bundle" in [m["name"] for m in members(srv, REST["PlanScript"])]
    r = run("bundle", "extract", "Small", "--force-import")
    assert r.returncode == 0, r.stderr

    # download: byte for byte what was uploaded
    out = os.path.join(srv.tmp, "out.zip")
    r = run("bundle", "download", "Developer bundle", out)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f, open(DEV, "rb") as g:
        assert f.read() == g.read()

    # create from a deployment plan: closure, golden image, read-only
    dpname = [d["name"] for _, d in zb.dp if d["goldenImageURI"]][0]
    r = run("bundle", "create", "CLI export", "--deployment-plan", dpname, "--with-golden-images",
            "--read-only", "--description", "made by the CLI")
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = run("--json", "bundle", "show", "CLI export")
    exp = json.loads(r.stdout)
    assert exp["readOnly"] is True and exp["description"] == "made by the CLI", exp
    assert len(exp["goldenimage"]) == 1 and len(exp["deploymentPlans"]) == 1, exp
    out2 = os.path.join(srv.tmp, "export.zip")
    assert run("bundle", "download", "CLI export", out2).returncode == 0
    with open(out2, "rb") as f:
        ex = check_hpe_layout(f.read())
    assert ex.manifest["Read Only"] == "true" and ex.manifest["Description"] == "made by the CLI", ex.manifest

    # rename, delete
    r = run("bundle", "rename", "CLI export", "CLI export 2")
    assert r.returncode == 0, r.stderr
    r = run("bundle", "delete", "CLI export 2")
    assert r.returncode == 0, r.stderr
    assert "CLI export 2" not in [m["name"] for m in members(srv, COLL)]

    # errors: server refusals exit 1, local problems 2
    r = run("bundle", "upload", small, "--name", "Small")
    assert r.returncode == 1, r.stderr
    bad = os.path.join(srv.tmp, "notes.txt")
    with open(bad, "w") as f:
        f.write("hello")
    r = run("bundle", "upload", bad)
    assert r.returncode in (1, 2) and r.stderr, r.stderr
    r = run("bundle", "upload", os.path.join(srv.tmp, "missing.zip"))
    assert r.returncode == 2, r.stderr
    r = run("bundle", "show", "no such bundle")
    assert r.returncode == 1, r.stderr
    r = run("bundle", "extract", "Small", "--on-conflict", "sideways")
    assert r.returncode == 2, r.stderr
    r = run("bundle", "download", "Small", os.path.join(srv.tmp, "no", "dir.zip"))
    assert r.returncode == 2, r.stderr

    # lenient upload (a wrong MANIFEST.MF digest)
    z = zipfile.ZipFile(io.BytesIO(artifacts_zip([ps_doc("0d6c3f6e-1111-4a4a-9b9b-000000000009", "L PS")])))
    sums = z.read("SHA256SUM.sha256sum").decode().split("\n")
    sums = [ln if not ln.startswith("MANIFEST.MF") else "MANIFEST.MF\t" + "3" * 64 for ln in sums]
    lpath = os.path.join(srv.tmp, "lenient.zip")
    with zipfile.ZipFile(lpath, "w", zipfile.ZIP_DEFLATED) as w:
        for n in z.namelist():
            w.writestr(n, "\n".join(sums) if n == "SHA256SUM.sha256sum" else z.read(n))
    r = run("bundle", "upload", lpath)
    assert r.returncode == 1 and "MANIFEST.MF" in r.stderr, r.stderr
    r = run("bundle", "upload", lpath, "--lenient")
    assert r.returncode == 0, r.stderr


def test_cli_backup_restore(srv):
    run = runner(srv)
    r = srv.request("POST", REST["PlanScript"], {"type": "PlanScript", "name": "Keep me", "planType": "deploy",
                                                "description": "", "content": "echo keep"})
    assert r.status == 201, r
    ps = r.json()
    out = os.path.join(srv.tmp, "backup.zip")
    r = run("bundle", "backup", out)
    assert r.returncode == 0, (r.stdout, r.stderr)
    with open(out, "rb") as f:
        zb = check_hpe_layout(f.read())
    assert [d["name"] for _, d in zb.ps] == ["Keep me"], zb.names
    assert len(members(srv, COLL + "/backups")) == 1
    assert srv.request("DELETE", ps["uri"]).status in (200, 204)
    r = run("bundle", "restore", out)
    assert r.returncode == 0, (r.stdout, r.stderr)
    back = srv.request("GET", ps["uri"])
    assert back.status == 200 and back.json()["content"] == "echo keep", back


def test_cli_bundle_progress_on_a_terminal(srv):
    import test_cli
    env = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token}
    path = os.path.join(srv.tmp, "dev.zip")
    with open(DEV, "rb") as f, open(path, "wb") as g:
        g.write(f.read())
    err = test_cli.run_with_tty_stderr([harness.STREAMER, "bundle", "upload", path], env)
    assert "upload:" in err and "100%" in err, err
    err = test_cli.run_with_tty_stderr([harness.STREAMER, "bundle", "extract", "dev", "--force-import"], env)
    assert "Completed" in err and "100%" in err, err
