"""test_bundles.py — artifact bundles (issue 7) through the REST API.

Every real HPE bundle of the corpus (../shared/research/bundles, 88 zips)
uploads, lists its contents and extracts into an empty Streamer, and every
plan script, build plan and deployment plan reads back equal, field by field,
to the JSON in the zip; bundles Streamer writes have HPE's layout and round-trip
losslessly into a fresh server; the Developer bundle's deployment plan deploys;
conflicts (stop, rename, replace, explicit renames, reuse, id remap), read-only
artifacts, hostile zips (each refused with its code, nothing left behind),
all-or-nothing (a failure after a golden image was imported leaves nothing),
the extract requests of every client, stopArtifactCreate, backup and restore,
roles.

"Empty Streamer": the corpus is split into groups whose bundles share no
artifact name and no id, one fresh server per group, so every artifact of a
bundle must be created, under its own id.

Field-by-field: every field of the zip's JSON except the server-side ones
(uri, category, eTag, etag, created, modified, status, state,
dependentArtifacts, readOnly; plan scripts' customAttributes, which the server
derives), references mapped (build steps' planScriptUri by id, deployment
plans' oeBuildPlanURI / goldenImageURI by name). Password values are masked by
every GET, so there they must read back empty; the round trip (the zip
Streamer exports) compares them in clear.
"""
import io
import json
import os
import struct
import uuid
import zipfile

import harness
import test_deploy as td
import test_golden_images as tgi
from bundlelib import (COLL, REST, Zip, artifacts_zip, bp_doc, bundle_files, check_extracted,
                       check_hpe_layout, compare, completed, corpus, create_bundle, download, dp_doc,
                       extract, extract_ok, file_sha256, inventory, make_zip, members, name_resolver,
                       ps_doc, report_of, server_doc, task_error, task_of, upload, upload_error,
                       upload_ok)

DEV = tgi.DEV_BUNDLE
FOUNDATION = os.path.join(os.path.dirname(DEV), "HPE_Foundation_Artifacts-5_00.zip")


def groups():
    """The corpus split greedily into groups sharing no (type, name) and no id."""
    out = []
    for path in corpus():
        zb = Zip(path)
        keys = set()
        for kind, n, d in zb.artifacts():
            keys.add((kind, d["name"]))
            keys.add(zb.member_id(n))
        for g in out:
            if not (g[0] & keys):
                g[0].update(keys)
                g[1].append((path, zb))
                break
        else:
            out.append((keys, [(path, zb)]))
    return [g[1] for g in out]


def bundle_query(zb):
    return "?lenient=true" if zb.bad_digests else ""


def check_contents(doc, path, zb):
    """The bundle document lists what the zip holds, before any extraction."""
    name = os.path.basename(path)[:-4]
    assert doc["type"] == "ArtifactsBundle" and doc["name"] == name, (doc["name"], name)
    assert doc["uri"] == "%s/%s" % (COLL, doc["id"]) and doc["artifactsbundleID"] == doc["id"], doc
    assert doc["downloadURI"] == "%s/download/%s" % (COLL, doc["id"]), doc
    assert doc["size"] == os.path.getsize(path), doc["size"]
    assert doc["checksum"] == doc["checkSum"] == file_sha256(path), doc
    assert doc["importbundle"] is True and doc["extracted"] is False, doc
    assert doc["readOnly"] is zb.read_only, doc["readOnly"]
    assert doc["status"] == "OK", doc
    assert doc["artifactsCount"] == len(zb.ps) + len(zb.bp) + len(zb.dp) + len(zb.gi), doc
    got = sorted((p["psID"], p["planScriptName"], p["readOnly"], p["planType"]) for p in doc["planScripts"])
    want = sorted((d["id"], d["name"], zb.read_only or bool(d["hpProvided"]), d["planType"]) for _, d in zb.ps)
    assert got == want, (got, want)
    for p in doc["planScripts"]:
        member = "%s_planscript.json" % p["psID"]
        from bundlelib import sha256
        assert p["checksum"] == sha256(zb.members[member]), p
    got = sorted((b["bpID"], b["buildPlanName"], b["readOnly"], b["oeBuildPlanType"],
                  tuple(b["planScriptName"])) for b in doc["buildPlans"])
    want = sorted((d["buildPlanid"], d["name"], zb.read_only or bool(d["hpProvided"]), d["oeBuildPlanType"],
                   tuple(s["planScriptName"] for s in d["buildStep"])) for _, d in zb.bp)
    assert got == want, (got, want)
    got = sorted((x["dpId"], x["deploymentplanName"], x["readOnly"], x["oebpName"], x["goldenImageName"] or "")
                 for x in doc["deploymentPlans"])
    want = sorted((d["id"], d["name"], zb.read_only or bool(d["hpProvided"]), d["oeBuildPlanURI"],
                   d["goldenImageURI"] or "") for _, d in zb.dp)
    assert got == want, (got, want)
    got = sorted((g["giID"], g["giId"], g["goldenimageName"]) for g in doc["goldenimage"])
    assert got == sorted((d["id"], d["id"], d["name"]) for _, d in zb.gi), got
    assert doc["goldenImages"] == doc["goldenimage"], doc
    mf = doc["manifest"]
    assert mf["artifactName"] == zb.manifest["Artifact Name"], mf
    assert mf["readOnly"] is zb.read_only and mf["artifactType"] == "USER", mf
    integ = doc["integrity"]
    assert integ["checksumFile"] == zb.sumfile, integ
    assert integ["algorithm"] == ("sha256" if zb.sumfile.startswith("SHA256") else "sha1"), integ
    bad = sorted(m["name"] for m in integ["members"] if not m["ok"])
    assert bad == sorted(zb.bad_digests), (bad, zb.bad_digests)
    assert integ["lenient"] is False and integ["verified"] is True, integ
    listed = {m["name"] for m in integ["members"]}
    assert listed >= set(zb.names) - {zb.sumfile}, (listed, zb.names)


# -- (a) the corpus ---------------------------------------------------------------------------------
def test_corpus_upload_list_extract():
    gs = groups()
    total = sum(len(g) for g in gs)
    assert total == len(corpus()) >= 88, total
    # No corpus bundle has a wrong digest. The two 2017-03-24 bundles once said to need the
    # lenient flag list their own SHA1SUM.sha1sum in it (a digest no file can hold); that line is
    # not a member's digest, so they upload as they are. The flag itself: test_checksum_lenient.
    assert [os.path.basename(p) for g in gs for p, zb in g if zb.bad_digests] == []
    selfish = sorted(os.path.basename(p) for g in gs for p, zb in g if zb.self_listed)
    assert selfish == ["HPE-RHEL-7.2-2017-03-24.zip", "HPE-SLES-12-2017-03-24.zip"], selfish
    done = 0
    for g in gs:
        with harness.Server() as srv:
            srv.login()
            for path, zb in g:
                fn = os.path.basename(path)
                try:
                    doc = upload_ok(srv, fn, path=path, query=bundle_query(zb))
                    check_contents(doc, path, zb)
                    t = extract_ok(srv, doc)
                    rep = report_of(t)
                    created = sorted((c["type"], c["name"]) for c in rep["created"])
                    assert created == sorted((k, d["name"]) for k, _, d in zb.artifacts()), (created, rep)
                    assert rep["reused"] == rep["renamed"] == rep["replaced"] == [], rep
                    check_extracted(srv, zb)
                    after = srv.request("GET", doc["uri"]).json()
                    assert after["extracted"] is True and after["lastExtracted"], after
                except AssertionError as e:
                    raise AssertionError("%s: %s" % (fn, str(e)[:3000])) from None
                done += 1
    assert done == total


# -- (b) bundles Streamer writes: HPE layout, lossless round trip ---------------------------------
ROUND_TRIP = ["HewlettPackard__image-streamer-tools/HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip",
              "HewlettPackard__image-streamer-rhel/HPE-RHEL8-EFI-2020-04-08-v5.2.zip",
              "LaudateCorpus1__image-streamer-windows/HPE - Windows - 2019-07-16 - v5.0.zip",
              "HewlettPackard__image-streamer-reference-architectures/HPE - ESXi - additional configurations - 2018-08-20.zip",
              "HewlettPackard__image-streamer-reference-architectures/HPE-RHEL-7.3-Docker-Worker-2017-11-28-v3.1.zip",
              "HewlettPackard__image-streamer-rhel/HPE-RHEL-7.2-2017-03-24.zip"]


def fetch(srv, doc):
    status, h, data = download(srv, doc["downloadURI"])
    assert status == 200, (status, data[:300])
    assert h["content-type"] == "application/octet-stream", h
    assert h["content-disposition"] == 'attachment; filename="%s.zip"' % doc["name"], h
    assert int(h["content-length"]) == len(data) == doc["size"], (h, len(data), doc["size"])
    from bundlelib import sha256
    assert sha256(data) == doc["checksum"], doc
    return data


def test_round_trip_corpus_exports():
    """corpus zip -> extract -> create a bundle of all of it -> download ->
    fresh server -> extract: equal to the corpus JSON, field by field (and
    the exported JSON itself equal to the corpus JSON, passwords included)."""
    from bundlelib import BUNDLES
    for rel in ROUND_TRIP:
        path = os.path.join(BUNDLES, rel)
        zb = Zip(path)
        with harness.Server() as a:
            a.login()
            doc = upload_ok(a, os.path.basename(path), path=path, query=bundle_query(zb))
            extract_ok(a, doc)
            dps = [REST["OEDeploymentPlan"] + "/" + d["id"] for _, d in zb.dp]
            bps = [REST["OeBuildPlan"] + "/" + d["buildPlanid"] for _, d in zb.bp]
            pss = [REST["PlanScript"] + "/" + d["id"] for _, d in zb.ps]
            out = create_bundle(a, "export of " + doc["name"], dps=dps, bps=bps, pss=pss,
                                with_gi=bool(zb.gi), read_only=zb.read_only)
            assert out["importbundle"] is False and out["readOnly"] is zb.read_only, out
            data = fetch(a, out)
        ex = check_hpe_layout(data)
        # the exported JSON is the corpus JSON (ids kept in an empty server), field by field
        zj = {(k, d.get("buildPlanid") or d["id"]): d for k, _, d in zb.artifacts()}
        xj = {(k, d.get("buildPlanid") or d["id"]): d for k, _, d in ex.artifacts()}
        assert sorted(zj) == sorted(xj), (sorted(zj), sorted(xj))
        for key, zd in zj.items():
            xd = xj[key]
            if key[0] == "GoldenImage":
                assert (xd["name"], xd["description"]) == (zd["name"], zd["description"]), xd
                continue
            ps_uri = {d["id"]: "/rest/plan-scripts/" + d["id"] for _, d in zb.ps}
            compare(key[0], zd, xd, ps_uri, lambda n: n, lambda n: n, password_masked=False)
        for _, d in zb.gi:  # the payload: the same disk image
            assert raw_of(ex.members[d["name"]]) == raw_of(zb.members[d["name"]]), d["name"]
        assert ex.manifest["Read Only"] == ("true" if zb.read_only else "false"), ex.manifest
        with harness.Server() as b:
            b.login()
            doc2 = upload_ok(b, "round trip.zip", data=data)
            assert doc2["integrity"]["verified"] is True and doc2["integrity"]["lenient"] is False, doc2
            extract_ok(b, doc2)
            check_extracted(b, zb)


def raw_of(payload):
    z = zipfile.ZipFile(io.BytesIO(payload))
    (n,) = z.namelist()
    return z.read(n)


def test_create_closure_with_and_without_golden_image(srv):
    """POST /rest/artifact-bundles of one deployment plan pulls in its build
    plan and plan scripts; its golden image only when asked."""
    zb = Zip(DEV)
    extract_ok(srv, upload_ok(srv, "dev.zip", path=DEV))
    dp = [d for _, d in zb.dp if d["goldenImageURI"]][0]
    bp = [d for _, d in zb.bp if d["name"] == dp["oeBuildPlanURI"]][0]
    steps = {s["planScriptUri"].rsplit("/", 1)[1] for s in bp["buildStep"]}
    dp_uri = REST["OEDeploymentPlan"] + "/" + dp["id"]
    for with_gi in (False, True):
        out = create_bundle(srv, "closure %s" % with_gi, dps=[dp_uri], with_gi=with_gi)
        ex = check_hpe_layout(fetch(srv, out))
        assert [d["id"] for _, d in ex.dp] == [dp["id"]], ex.names
        assert [d["buildPlanid"] for _, d in ex.bp] == [bp["buildPlanid"]], ex.names
        assert {d["id"] for _, d in ex.ps} == steps, ex.names
        assert out["readOnly"] is False and ex.manifest["Read Only"] == "false", out
        if with_gi:
            assert [d["name"] for _, d in ex.gi] == [dp["goldenImageURI"]], ex.names
            assert ex.dp[0][1]["goldenImageURI"] == dp["goldenImageURI"]
        else:
            assert ex.gi == [] and ex.dp[0][1]["goldenImageURI"] in (None, ""), ex.dp
        assert out["artifactsCount"] == 1 + 1 + len(steps) + (1 if with_gi else 0), out
        with harness.Server() as b:
            b.login()
            extract_ok(b, upload_ok(b, "closure.zip", data=ex.data))
            check_extracted(b, ex)
            for _, d in ex.dp:  # the DP reads back as in the source server (but its image)
                s = server_doc(b, "OEDeploymentPlan", d["id"])
                compare("OEDeploymentPlan", dp if with_gi else dict(dp, goldenImageURI=None), s,
                        None, name_resolver(b), name_resolver(b))
    # a reference that does not exist: 404 naming it, nothing created
    r = srv.request("POST", COLL, {"type": "ArtifactsBundle", "name": "broken",
                                   "deploymentPlans": [{"resourceUri": "/rest/deployment-plans/nope",
                                                        "readOnly": "false"}]})
    if r.status == 202:
        err = task_error(srv.wait_task(r.headers["location"]))
    else:
        err = r.json()
        assert r.status in (400, 404), r
    assert "/rest/deployment-plans/nope" in err["message"], err
    assert "broken" not in [m["name"] for m in members(srv, COLL)]


# -- (c) the Developer bundle deploys ---------------------------------------------------------------
def test_developer_bundle_deploys(srv):
    zb = Zip(DEV)
    doc = upload_ok(srv, os.path.basename(DEV), path=DEV)
    extract_ok(srv, doc)
    (gij,) = [d for _, d in zb.gi]
    gi = server_doc(srv, "GoldenImage", gij["id"])
    assert gi["readOnly"] is True and gi["importedFromBundle"] is True, gi
    assert gi["bundleName"] in (doc["name"], zb.manifest["Artifact Name"]) and gi["bundleURI"] == doc["uri"], gi
    # the bundle's golden image is the disk inside the payload, byte for byte
    status, _, data = tgi.download(srv, gi)
    assert status == 200
    assert raw_of(data) == raw_of(zb.members[gij["name"]])
    dpj = [d for _, d in zb.dp if d["oeBuildPlanURI"] == td.DEPLOY_BP and not d["hpProvided"]][0]
    dp = server_doc(srv, "OEDeploymentPlan", dpj["id"])
    assert dp["goldenImageURI"] == gi["uri"], dp
    hw = td.hardware(srv, "node1")
    t, p = td.deploy(srv, "web1", hw, dp, td.GOOD)
    vol = p["osDeploymentSettings"]["osVolumeUri"]
    msg = td.file_of(srv, vol, "/EFI/BOOT/message.txt")
    assert "has been personalized" in msg and "ExampleString1: Hello from a deployment" in msg, msg
    assert "ExampleFQDN: host.example.com" in msg, msg
    # the bundle's artifacts are read-only: no PUT, no DELETE
    for kind in ("OEDeploymentPlan", "OeBuildPlan", "PlanScript"):
        d = [x for k, _, x in zb.artifacts() if k == kind][0]
        s = server_doc(srv, kind, d.get("buildPlanid") or d["id"])
        r = srv.request("PUT", s["uri"], dict(s, description="changed"))
        assert r.status == 409 and r.json()["errorCode"] == "ARTIFACT_READ_ONLY", r
        r = srv.request("DELETE", s["uri"])
        assert r.status == 409 and r.json()["errorCode"] == "ARTIFACT_READ_ONLY", r
    td.delete_profile(srv, p)
    # a bundle can be deleted; what it extracted stays
    completed(task_of(srv, srv.request("DELETE", doc["uri"])))
    assert srv.request("GET", doc["uri"]).status == 404
    assert bundle_files(srv) == []
    assert srv.request("GET", gi["uri"]).status == 200 and srv.request("GET", dp["uri"]).status == 200


# -- (d) conflicts, reuse, remap ---------------------------------------------------------------------
def uid():
    return str(uuid.uuid4())


def small_bundle(tag="", ro=False, content="echo one", ps_id=None, name="Conflict PS"):
    ps = ps_doc(ps_id or uid(), name, content=content)
    bp = bp_doc(uid(), "Conflict BP" + tag, [ps])
    dp = dp_doc(uid(), "Conflict DP" + tag, bp["name"])
    return ps, bp, dp, artifacts_zip([ps], [bp], [dp], read_only=ro)


def post_ps(srv, name, content):
    r = srv.request("POST", REST["PlanScript"], {"type": "PlanScript", "name": name, "description": "",
                                                "planType": "deploy", "content": content})
    assert r.status == 201, r
    return r.json()


def test_conflicts(srv):
    ps, bp, dp, data = small_bundle()
    mine = post_ps(srv, "Conflict PS", "echo mine")
    doc = upload_ok(srv, "conflicts.zip", data=data)
    before = inventory(srv)
    # default (no forceImport, or onConflict=stop; JV's variant without any query): 409, nothing created
    for query in ("?extract=true", "", "?extract=true&onConflict=stop"):
        err = task_error(task_of(srv, extract(srv, doc, query=query)))
        assert err["errorCode"] == "BUNDLE_CONFLICTS", err
        nested = err.get("nestedErrors") or err.get("data", {}).get("conflicts")
        assert any(c.get("name") == "Conflict PS" and c.get("type") == "PlanScript" and
                   c.get("existingUri") == mine["uri"] for c in nested), err
        assert inventory(srv) == before
    # forceImport: renamed "<name> (2)", reported, references follow
    t = extract_ok(srv, doc)
    rep = report_of(t)
    (rn,) = rep["renamed"]
    assert rn["type"] == "PlanScript" and rn["name"] == "Conflict PS" and rn["newName"] == "Conflict PS (2)", rep
    assert server_doc(srv, "PlanScript", mine["id"])["content"] == "echo mine"
    b = server_doc(srv, "OeBuildPlan", bp["buildPlanid"])
    assert b["buildStep"][0]["planScriptUri"] == rn["uri"], b
    assert server_doc(srv, "PlanScript", rn["uri"].rsplit("/", 1)[1])["content"] == "echo one"


def test_reuse_identical(srv):
    """Artifacts that exist with identical content are reused, not conflicts:
    nothing new, references point to the existing ones (even with stop)."""
    ps, bp, dp, data = small_bundle(tag=" reuse", name="Reuse PS")
    mine = post_ps(srv, "Reuse PS", "echo one")  # same name, type, content, description
    doc = upload_ok(srv, "reuse.zip", data=data)
    rep = report_of(extract_ok(srv, doc, query="?extract=true&onConflict=stop"))
    assert [(x["type"], x["name"]) for x in rep["reused"]] == [("PlanScript", "Reuse PS")], rep
    assert sorted(x["name"] for x in rep["created"]) == ["Conflict BP reuse", "Conflict DP reuse"], rep
    b = server_doc(srv, "OeBuildPlan", bp["buildPlanid"])
    assert b["buildStep"][0]["planScriptUri"] == mine["uri"], b
    # the same bundle again: everything exists identically -> all reused, nothing new
    before = inventory(srv)
    rep = report_of(extract_ok(srv, doc, query="?extract=true&onConflict=stop"))
    assert rep["created"] == [] and len(rep["reused"]) == 3, rep
    assert inventory(srv) == before


def test_conflict_rename_replace_explicit(srv):
    ps, bp, dp, data = small_bundle()
    mine = post_ps(srv, "Conflict PS", "echo mine")
    doc = upload_ok(srv, "c.zip", data=data)
    # explicit rename through the JSON body
    body = {"renames": [{"type": "PlanScript", "name": "Conflict PS", "newName": "Chosen name"}]}
    t = completed(task_of(srv, srv.request("PUT", doc["uri"] + "?extract=true", body), timeout=60))
    rep = report_of(t)
    assert [(x["name"], x["newName"]) for x in rep["renamed"]] == [("Conflict PS", "Chosen name")], rep
    (chosen,) = [m for m in members(srv, REST["PlanScript"]) if m["name"] == "Chosen name"]
    assert chosen["content"] == "echo one"
    # replace: a second bundle whose plan script differs from the one that exists; id kept
    ps2 = ps_doc(uid(), "Conflict PS", content="echo replaced")
    doc2 = upload_ok(srv, "c2.zip", data=artifacts_zip([ps2]))
    t = extract_ok(srv, doc2, query="?extract=true&onConflict=replace")
    rep = report_of(t)
    assert [(x["type"], x["name"]) for x in rep["replaced"]] == [("PlanScript", "Conflict PS")], rep
    now = server_doc(srv, "PlanScript", mine["id"])
    assert now["content"] == "echo replaced" and now["name"] == "Conflict PS", now
    # replace cannot touch a read-only artifact: conflict error, nothing changed
    ro = upload_ok(srv, "ro.zip", data=artifacts_zip([ps_doc(uid(), "RO PS", content="echo ro")], read_only=True))
    extract_ok(srv, ro)
    doc3 = upload_ok(srv, "c3.zip", data=artifacts_zip([ps_doc(uid(), "RO PS", content="echo other")]))
    before = inventory(srv)
    err = task_error(task_of(srv, extract(srv, doc3, query="?extract=true&onConflict=replace")))
    assert err["errorCode"] == "BUNDLE_CONFLICTS" and "RO PS" in json.dumps(err), err
    assert inventory(srv) == before
    (rops,) = [m for m in members(srv, REST["PlanScript"]) if m["name"] == "RO PS"]
    assert rops["content"] == "echo ro" and rops["readOnly"] is True
    for method, body in (("PUT", dict(rops, content="echo x")), ("DELETE", None)):
        r = srv.request(method, rops["uri"], body)
        assert r.status == 409 and r.json()["errorCode"] == "ARTIFACT_READ_ONLY", r


def test_id_remap(srv):
    """A bundle whose ids are taken by other artifacts: new ids, references remapped."""
    ps, bp, dp, data = small_bundle()
    extract_ok(srv, upload_ok(srv, "first.zip", data=data))
    # same ids, different names and contents
    ps2 = dict(ps, name="Other PS", content="echo other")
    bp2 = bp_doc(bp["buildPlanid"], "Other BP", [ps2])
    dp2 = dp_doc(dp["id"], "Other DP", bp2["name"])
    t = extract_ok(srv, upload_ok(srv, "second.zip", data=artifacts_zip([ps2], [bp2], [dp2])))
    rep = report_of(t)
    by = {c["name"]: c["uri"] for c in rep["created"]}
    assert set(by) == {"Other PS", "Other BP", "Other DP"}, rep
    for n, old in (("Other PS", ps["id"]), ("Other BP", bp["buildPlanid"]), ("Other DP", dp["id"])):
        assert not by[n].endswith(old), (n, by[n])
    b = srv.request("GET", by["Other BP"]).json()
    assert b["buildStep"][0]["planScriptUri"] == by["Other PS"], b
    d = srv.request("GET", by["Other DP"]).json()
    assert d["oeBuildPlanURI"] == by["Other BP"], d
    # the first bundle's artifacts are untouched
    assert server_doc(srv, "PlanScript", ps["id"])["content"] == "echo one"


# -- (e) hostile zips --------------------------------------------------------------------------------
def patch(data, old, new):
    assert data.count(old) >= 1
    return data.replace(old, new)


def good_members():
    ps = ps_doc(uid(), "Hostile PS")
    return ps, [("%s_planscript.json" % ps["id"], ps)]


def zip_raw(entries):
    """entries: [(ZipInfo or name, bytes)] written as given (no checks)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info, b in entries:
            z.writestr(info, b)
    return out.getvalue()


def hostile_cases():
    ps, good = good_members()
    cases = []
    cases.append(("not a zip", b"this is not a zip at all\n" * 100, "BUNDLE_NOT_ZIP"))
    ok = artifacts_zip([ps])
    cases.append(("truncated", ok[:len(ok) // 2], "BUNDLE_NOT_ZIP"))
    cases.append(("zip-slip", make_zip([("../%s_planscript.json" % ps["id"], ps)]), "BUNDLE_MEMBER_NAME"))
    cases.append(("absolute", make_zip([("/tmp/%s_planscript.json" % ps["id"], ps)]), "BUNDLE_MEMBER_NAME"))
    cases.append(("drive letter", make_zip([("C:%s_planscript.json" % ps["id"], ps)]), "BUNDLE_MEMBER_NAME"))
    cases.append(("backslash", make_zip([("x\\%s_planscript.json" % ps["id"], ps)]), "BUNDLE_MEMBER_NAME"))
    cases.append(("directory", make_zip(good + [("sub/", b"")]), "BUNDLE_MEMBER_NAME"))
    cases.append(("control char", make_zip([("a\x01b_planscript.json", ps)]), "BUNDLE_MEMBER_NAME"))
    bad_utf8 = make_zip(good + [("QQQQ.txt", b"x")])
    cases.append(("non-UTF-8 name", patch(bad_utf8, b"QQQQ.txt", b"Q\xff\xfeQ.txt"), "BUNDLE_MEMBER_NAME"))
    sl = zipfile.ZipInfo("%s_planscript.json" % ps["id"])
    sl.create_system = 3
    sl.external_attr = (0o120777 << 16)
    mf = ("MANIFEST.MF", b"Artifact Name:x\nDescription:\nRead Only:false\nTime Stamp:2024-01-01T00:00:00.000Z\n"
          b"Artifact Type:USER")
    cases.append(("symlink", zip_raw([(sl, b"/etc/passwd"), mf]), "BUNDLE_SYMLINK"))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases.append(("duplicate", zip_raw([(good[0][0], json.dumps(ps).encode()),
                                            (good[0][0], json.dumps(ps).encode()), mf]),
                      "BUNDLE_DUPLICATE_MEMBER"))
    big = ps_doc(ps["id"], "Big PS", content="a" * (17 << 20))
    cases.append(("zip bomb (17 MiB JSON)", make_zip([(good[0][0], big)], checksum=False), "BUNDLE_ZIP_BOMB"))
    # declared sizes lying: the central directory says 10 bytes, the member inflates to more
    body = json.dumps(ps_doc(ps["id"], "Liar", content="b" * 5000)).encode()
    lying = make_zip([(good[0][0], body)], checksum=False)
    size = struct.pack("<I", len(body))
    cases.append(("lying sizes", lying.replace(size, struct.pack("<I", 10)), "BUNDLE_ZIP_BOMB"))
    many = [("%s_planscript.json" % i, ps_doc(i, "PS %d" % n)) for n, i in
            enumerate(str(uuid.UUID(int=k)) for k in range(10001))]
    cases.append(("10,001 members", make_zip(many, checksum=False), "BUNDLE_TOO_MANY_MEMBERS"))
    cases.append(("malformed JSON", make_zip([(good[0][0], b'{"type":"PlanScript","id":')]), "BUNDLE_JSON"))
    cases.append(("JSON array", make_zip([(good[0][0], b"[1,2]")]), "BUNDLE_JSON"))
    cases.append(("wrong type", make_zip([(good[0][0], dict(ps, type="OeBuildPlan"))]), "BUNDLE_JSON"))
    cases.append(("id mismatch", make_zip([("%s_planscript.json" % uid(), ps)]), "BUNDLE_JSON"))
    orphan = bp_doc(uid(), "Orphan BP", [ps_doc(uid(), "Missing PS")])
    cases.append(("dangling step", artifacts_zip([ps], [orphan]), "BUNDLE_DANGLING_REFERENCE"))
    bp = bp_doc(uid(), "Some BP", [ps])
    cases.append(("dangling build plan", artifacts_zip([ps], [bp], [dp_doc(uid(), "DP", "No such BP")]),
                  "BUNDLE_DANGLING_REFERENCE"))
    cases.append(("dangling golden image",
                  artifacts_zip([ps], [bp], [dp_doc(uid(), "DP", bp["name"], gi_name="No such image")]),
                  "BUNDLE_DANGLING_REFERENCE"))
    sums = artifacts_zip([ps])
    z = zipfile.ZipFile(io.BytesIO(sums))
    wrong = z.read("SHA256SUM.sha256sum").decode().replace(
        z.read("SHA256SUM.sha256sum").decode().split("\t")[1][:64], "0" * 64, 1)
    cases.append(("bad checksum", make_zip(good + [("MANIFEST.MF", z.read("MANIFEST.MF")),
                                                   ("SHA256SUM.sha256sum", wrong.encode())],
                                           manifest=False, checksum=False), "BUNDLE_CHECKSUM_MISMATCH"))
    cases.append(("no manifest", make_zip(good, manifest=False), "BUNDLE_NO_MANIFEST"))
    cases.append(("bad manifest", make_zip(good, manifest="garbage without keys\x00"), "BUNDLE_MANIFEST"))
    cases.append(("unknown member", make_zip(good + [("README.txt", b"hello")]), "BUNDLE_UNKNOWN_MEMBER"))
    enc = make_zip(good, checksum=False)
    enc = bytearray(enc)
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        i = enc.find(sig)
        while i >= 0:
            off = i + (6 if sig == b"PK\x03\x04" else 8)
            enc[off] |= 1
            i = enc.find(sig, i + 4)
    cases.append(("encrypted flag", bytes(enc), "BUNDLE_ENCRYPTED"))
    info = zipfile.ZipInfo(good[0][0])
    info.compress_type = zipfile.ZIP_BZIP2
    cases.append(("bzip2 member", zip_raw([(info, json.dumps(ps).encode()), mf]), "BUNDLE_UNSUPPORTED_METHOD"))
    stored = zipfile.ZipInfo(good[0][0])
    stored.compress_type = zipfile.ZIP_STORED
    raw = json.dumps(ps).encode()
    crc = zip_raw([(stored, raw), mf])
    cases.append(("CRC mismatch", patch(crc, b'"Hostile PS"', b'"Hostile PZ"'), "BUNDLE_CRC"))
    return cases


def nothing_left(srv, before):
    assert inventory(srv) == before, "something was created"
    assert bundle_files(srv) == [], bundle_files(srv)
    gdir = os.path.join(srv.data_dir, "volumes", "golden")
    assert not os.path.isdir(gdir) or os.listdir(gdir) == [], os.listdir(gdir)


def test_hostile_zips(srv):
    before = inventory(srv)
    assert before == {}
    failures = []
    for what, data, code in hostile_cases():
        err = upload_error(srv, "hostile.zip", data=data)
        if err["errorCode"] != code or not err["message"]:
            failures.append("%s: want %s, got %s %s" % (what, code, err["errorCode"], err["message"][:200]))
        nothing_left(srv, before)
    # not a .zip file name: refused at once
    r = upload(srv, "bundle.tar", data=artifacts_zip([ps_doc(uid(), "x")]))
    assert r.status == 400 and r.json()["errorCode"] == "BUNDLE_NOT_ZIP", r
    nothing_left(srv, before)
    assert not failures, "\n".join(failures)
    assert srv.request("GET", "/rest/version").status == 200


def test_checksum_lenient(srv):
    """A wrong MANIFEST.MF digest: refused naming the member, accepted with
    ?lenient=true (reported); a wrong plan-script digest refused even so."""
    ps, good = good_members()
    mfb = b"Artifact Name:x\nDescription:d\nRead Only:false\nTime Stamp:2024-01-01T00:00:00.000Z\nArtifact Type:USER"
    from bundlelib import sha256
    lines = "%s\t%s\nMANIFEST.MF\t%s\n" % (good[0][0], sha256(json.dumps(ps, separators=(",", ":")).encode()),
                                          "1" * 64)
    data = make_zip(good + [("MANIFEST.MF", mfb), ("SHA256SUM.sha256sum", lines.encode())],
                    manifest=False, checksum=False)
    err = upload_error(srv, "lenient.zip", data=data)
    assert err["errorCode"] == "BUNDLE_CHECKSUM_MISMATCH" and "MANIFEST.MF" in err["message"], err
    assert members(srv, COLL) == [] and bundle_files(srv) == []
    doc = upload_ok(srv, "lenient.zip", data=data, query="?lenient=true")
    integ = doc["integrity"]
    assert integ["lenient"] is True, integ
    assert [m["name"] for m in integ["members"] if not m["ok"]] == ["MANIFEST.MF"], integ
    extract_ok(srv, doc)
    # the form-field spelling of the flag
    doc2 = upload_ok(srv, "lenient2.zip", data=data, fields=[("lenient", "true")])
    assert doc2["integrity"]["lenient"] is True
    lines = "%s\t%s\nMANIFEST.MF\t%s\n" % (good[0][0], "2" * 64, sha256(mfb))
    data = make_zip(good + [("MANIFEST.MF", mfb), ("SHA256SUM.sha256sum", lines.encode())],
                    manifest=False, checksum=False)
    err = upload_error(srv, "strict.zip", data=data, query="?lenient=true")
    assert err["errorCode"] == "BUNDLE_CHECKSUM_MISMATCH" and good[0][0] in err["message"], err
    # no checksum file at all: accepted, unverified
    doc3 = upload_ok(srv, "nosum.zip", data=make_zip(good, checksum=False))
    assert doc3["integrity"]["verified"] is False and doc3["integrity"]["checksumFile"] is None, doc3


def test_invalid_contents_at_extraction(srv):
    """A bundle that passes inspection but holds an invalid build plan
    (a bad attribute constraint): 400 naming the artifact, nothing created."""
    ps = ps_doc(uid(), "Fine PS", content="echo @Size@")
    bp = bp_doc(uid(), "Broken BP", [ps], attrs=[{"name": "Size", "value": "", "type": "number",
                                                 "constraints": "{not json", "description": ""}])
    doc = upload_ok(srv, "broken.zip", data=artifacts_zip([ps], [bp]))
    before = inventory(srv)
    err = task_error(task_of(srv, extract(srv, doc)))
    assert "Broken BP" in err["message"], err
    assert inventory(srv) == before


# -- (f) backup and restore; roles ------------------------------------------------------------------
def test_backup_restore(srv):
    ps = post_ps(srv, "Backed up PS", "echo backed up @Name@")
    r = srv.request("POST", REST["OeBuildPlan"], {"type": "OeBuildPlan", "name": "Backed up BP",
                                                 "oeBuildPlanType": "deploy", "buildStep": [
                                                     {"serialNumber": "1", "planScriptUri": ps["uri"]}]})
    assert r.status == 201, r
    bp = r.json()
    r = srv.request("POST", REST["OEDeploymentPlan"], {"type": "OEDeploymentPlan", "name": "Backed up DP",
                                                      "oeBuildPlanURI": bp["uri"]})
    assert r.status == 201, r
    dp = r.json()
    extract_ok(srv, upload_ok(srv, "dev.zip", path=DEV))
    snapshot = {uri: srv.request("GET", uri).json() for (coll, i) in inventory(srv)
                for uri in ["%s/%s" % (coll, i)] if coll != COLL}
    group = srv.request("GET", "/rest/deployment-groups").json()["members"][0]["uri"]
    completed(task_of(srv, srv.request("POST", COLL + "/backups", {"deploymentGroupURI": group}),
                          timeout=300))
    (b,) = members(srv, COLL + "/backups")
    assert b["downloadURI"] == COLL + "/backups/archive/" + b["uri"].rsplit("/", 1)[1], b
    status, h, data = download(srv, b["downloadURI"])
    assert status == 200 and h["content-type"] == "application/octet-stream", (status, h)
    assert int(h["content-length"]) == len(data) == b["size"], (h, b)
    zb = check_hpe_layout(data)
    assert {d["id"] for _, d in zb.dp} >= {dp["id"]}
    # a second backup replaces the first
    completed(task_of(srv, srv.request("POST", COLL + "/backups", {"deploymentGroupURI": group}), timeout=300))
    assert len(members(srv, COLL + "/backups")) == 1
    # delete what can be deleted, change something, add something new
    for uri in (dp["uri"], bp["uri"], ps["uri"]):
        r = srv.request("DELETE", uri)
        assert r.status in (200, 204), r
    newer = post_ps(srv, "Created after the backup", "echo new")
    # restore from the uploaded archive
    completed(task_of(srv, upload(srv, "backup.zip", data=data,
                                      query="?deploymentGrpUri=" + group, target=COLL + "/backups/archive"),
                          timeout=300))
    for uri, old in snapshot.items():
        r = srv.request("GET", uri)
        assert r.status == 200, (uri, r)
        now = r.json()
        for k in ("name", "description", "content", "buildStep", "customAttributes", "oeBuildPlanURI",
                  "goldenImageURI", "planType", "readOnly"):
            if k in old:
                assert now.get(k) == old[k], (uri, k, old[k], now.get(k))
    assert srv.request("GET", newer["uri"]).status == 200
    # the stored backup restores too (PUT .../backups/{id})
    (b,) = members(srv, COLL + "/backups")
    assert srv.request("DELETE", dp["uri"]).status in (200, 204)
    completed(task_of(srv, srv.request("PUT", b["uri"], {"deploymentGroupURI": group}), timeout=300))
    assert srv.request("GET", dp["uri"]).status == 200


def test_roles(srv):
    doc = upload_ok(srv, "f.zip", path=FOUNDATION)
    tok = tgi.readonly_user(srv)
    assert srv.request("GET", COLL, token=tok).status == 200
    assert srv.request("GET", doc["uri"], token=tok).status == 200
    # downloads carry password values in clear (as HPE's bundles do): Deploy only
    status, _, _ = download(srv, doc["downloadURI"], token=tok)
    assert status == 403
    assert download(srv, doc["downloadURI"])[0] == 200
    r = upload(srv, "g.zip", path=FOUNDATION, token=tok)
    assert r.status == 403, r
    assert extract(srv, doc, token=tok).status == 403
    assert srv.request("DELETE", doc["uri"], token=tok).status == 403
    assert srv.request("PUT", doc["uri"], {"name": "renamed"}, token=tok).status == 403
    assert srv.request("POST", COLL, {"type": "ArtifactsBundle", "name": "x"}, token=tok).status == 403
    assert srv.request("POST", COLL + "/backups", {}, token=tok).status == 403
    assert srv.request("GET", COLL, auth=False).status == 401
    status, _, _ = download(srv, doc["downloadURI"], token="no-such-session")
    assert status == 401
    assert [m["name"] for m in members(srv, COLL)] == ["f"]
    assert members(srv, REST["PlanScript"]) == []


def test_rename_and_name_conflict(srv):
    doc = upload_ok(srv, "first.zip", path=FOUNDATION)
    r = srv.request("PUT", doc["uri"], {"type": "ArtifactsBundle", "name": "Renamed"})
    assert r.status == 200 and r.json()["name"] == "Renamed", r
    doc2 = upload_ok(srv, "second.zip", path=FOUNDATION)
    r = srv.request("PUT", doc2["uri"], {"type": "ArtifactsBundle", "name": "Renamed"})
    assert r.status == 409, r
    err = upload_error(srv, "Renamed.zip", path=FOUNDATION)
    assert err["errorCode"] == "NAME_CONFLICT", err
    assert sorted(m["name"] for m in members(srv, COLL)) == ["Renamed", "second"]
    assert len(bundle_files(srv)) == 2, bundle_files(srv)


def rezip(zb, changes):
    """The zip of zb with some members' JSON replaced (member -> doc), every
    member in its order, MANIFEST.MF kept, SHA256SUM.sha256sum recomputed."""
    members_ = []
    for n in zb.names:
        if n in ("SHA256SUM.sha256sum", "SHA1SUM.sha1sum", "MANIFEST.MF"):
            continue
        members_.append((n, changes[n] if n in changes else zb.members[n]))
    return make_zip(members_, manifest=zb.members["MANIFEST.MF"].decode())


def test_all_or_nothing_with_golden_image(srv):
    """The Developer bundle with one deployment plan made invalid (a constraint
    that is not JSON): the extraction fails after its golden image was
    imported; the image, its volume and every document are gone again."""
    zb = Zip(DEV)
    member, dp = [(n, d) for n, d in zb.dp if d["customAttributes"]][-1]
    bad = json.loads(json.dumps(dp))
    bad["customAttributes"][0]["constraints"] = "{not json"
    doc = upload_ok(srv, "broken developer.zip", data=rezip(zb, {member: bad}))
    before = inventory(srv)
    t = task_of(srv, extract(srv, doc), timeout=300)
    err = task_error(t)
    assert dp["name"] in err["message"] or dp["name"] in json.dumps(err), err
    steps = [u["statusUpdate"] for u in t["progressUpdates"]]
    assert any(s.startswith("Importing golden image") for s in steps), steps  # failed after it
    assert inventory(srv) == before
    assert members(srv, REST["GoldenImage"]) == []
    gdir = os.path.join(srv.data_dir, "volumes", "golden")
    assert not os.path.isdir(gdir) or os.listdir(gdir) == [], os.listdir(gdir)
    assert bundle_files(srv) == [doc["id"] + ".zip"], bundle_files(srv)
    assert srv.request("GET", doc["uri"]).json()["extracted"] is False


def test_extract_request_variants(srv):
    """The extract requests the clients send (i3s-api §1.5): PY (query, body
    null, text/plain), RB (query, no body), JV (no query, empty body), PYold
    (no query, the full resource as text/plain); each one extracts."""
    ps = [ps_doc(uid(), "Variant PS %d" % i, content="echo %d" % i) for i in range(4)]
    for i, (query, raw) in enumerate((("?extract=true&forceImport=true", "null"),
                                      ("?extract=true&forceImport=true", ""),
                                      ("", ""),
                                      ("", None))):
        doc = upload_ok(srv, "variant %d.zip" % i, data=artifacts_zip([ps[i]]))
        if raw is None:
            raw = json.dumps(doc)
        r = extract(srv, doc, query=query, raw=raw)
        rep = report_of(completed(task_of(srv, r)))
        assert [c["name"] for c in rep["created"]] == ["Variant PS %d" % i], (i, rep)
    assert sorted(m["name"] for m in members(srv, REST["PlanScript"])) == ["Variant PS %d" % i for i in range(4)]


def test_stop_artifact_create(srv):
    """PUT .../{id}/stopArtifactCreate stops a running create (a bundle with a
    256 MiB golden image of random bytes: seconds of deflate): the task ends
    in Error, no document, no file. A stop after the end is a 404."""
    path = os.path.join(srv.tmp, "random.raw")
    with open(path, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    gi = tgi.upload_ok(srv, tgi.Body("random.raw", path=path), "?name=Random")
    os.unlink(path)
    ps = post_ps(srv, "Stop PS", "echo stop")
    r = srv.request("POST", REST["OeBuildPlan"], {"type": "OeBuildPlan", "name": "Stop BP",
                                                 "oeBuildPlanType": "deploy", "buildStep": [
                                                     {"serialNumber": "1", "planScriptUri": ps["uri"]}]})
    assert r.status == 201, r
    r = srv.request("POST", REST["OEDeploymentPlan"], {"type": "OEDeploymentPlan", "name": "Stop DP",
                                                      "oeBuildPlanURI": r.json()["uri"],
                                                      "goldenImageURI": gi["uri"]})
    assert r.status == 201, r
    dp = r.json()
    r = srv.request("POST", COLL, {"type": "ArtifactsBundle", "name": "Stopped",
                                   "deploymentPlans": [{"resourceUri": dp["uri"], "readOnly": "false"}],
                                   "withGoldenImages": True})
    assert r.status == 202, r
    task_uri = r.headers["location"]
    buri = r.json()["associatedResource"]["resourceUri"]
    s = srv.request("PUT", buri + "/stopArtifactCreate", {"taskUri": task_uri})
    assert s.status == 200, s
    err = task_error(srv.wait_task(task_uri, timeout=300))
    assert "stop" in (err["message"] + err["errorCode"]).lower(), err
    assert srv.request("GET", buri).status == 404
    assert members(srv, COLL) == [] and bundle_files(srv) == [], bundle_files(srv)
    s = srv.request("PUT", buri + "/stopArtifactCreate", {"taskUri": task_uri})
    assert s.status == 404, s


def test_extract_storage_quota():
    """--storage-quota counts a bundle's golden images as an upload's: an extraction whose
    images would exceed it ends 413 QUOTA_EXCEEDED and leaves nothing; a larger quota takes
    the same bundle."""
    with harness.Server(extra_args=["--storage-quota", str(200 << 10)]) as srv:
        srv.login()
        doc = upload_ok(srv, os.path.basename(DEV), path=DEV)
        before = inventory(srv)
        t = task_of(srv, extract(srv, doc), timeout=300)
        err = task_error(t)
        assert err["errorCode"] == "QUOTA_EXCEEDED" and "storage quota" in err["message"], err
        assert inventory(srv) == before
        gdir = os.path.join(srv.data_dir, "volumes", "golden")
        assert not os.path.isdir(gdir) or os.listdir(gdir) == [], os.listdir(gdir)
    with harness.Server(extra_args=["--storage-quota", str(200 << 20)]) as srv:
        srv.login()
        extract_ok(srv, upload_ok(srv, os.path.basename(DEV), path=DEV))
        (gi,) = members(srv, REST["GoldenImage"])
        assert gi["allocatedBytes"] > 200 << 10, gi  # what the small quota refused


def test_extract_checks_stored_payload(srv):
    """A bundle's golden payload is read once at extraction (its digest checked as it is
    imported): a stored bundle file damaged after its upload fails the extraction, nothing
    created."""
    doc = upload_ok(srv, os.path.basename(DEV), path=DEV)
    assert all(isinstance(g.get("crc32"), int) for g in doc["goldenimage"]), doc["goldenimage"]
    path = os.path.join(srv.data_dir, "volumes", "bundles", doc["id"] + ".zip")
    zb = Zip(DEV)
    (gij,) = [d for _, d in zb.gi]
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(gij["name"])
    with open(path, "r+b") as f:  # flip a byte in the middle of the payload's data
        f.seek(info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x55]))
    before = inventory(srv)
    gdir = os.path.join(srv.data_dir, "volumes", "golden")
    err = task_error(task_of(srv, extract(srv, doc), timeout=300))
    assert err["errorCode"].startswith(("BUNDLE_", "IMAGE_")), err
    assert gij["name"] in err["message"], err
    assert inventory(srv) == before
    assert not os.path.isdir(gdir) or os.listdir(gdir) == [], os.listdir(gdir)
    # the stored file rewritten whole (every CRC right) with a wrong digest for the payload in
    # SHA256SUM.sha256sum: the digest check at the import refuses it
    with zipfile.ZipFile(DEV) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for i in src.infolist():
            data = src.read(i)
            if i.filename == "SHA256SUM.sha256sum":
                lines = data.decode().split("\n")
                lines = [ln.split("\t")[0] + "\t" + "0" * 64 if ln.startswith(gij["name"] + "\t") else ln
                         for ln in lines]
                data = "\n".join(lines).encode()
            dst.writestr(i.filename, data)
    err = task_error(task_of(srv, extract(srv, doc), timeout=300))
    assert err["errorCode"] == "BUNDLE_CHECKSUM_MISMATCH" and gij["name"] in err["message"], err
    assert inventory(srv) == before
    assert not os.path.isdir(gdir) or os.listdir(gdir) == [], os.listdir(gdir)
