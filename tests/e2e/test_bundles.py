"""test_bundles.py — artifact bundles (issue 7) through the REST API.

Every real HPE bundle of the corpus (../shared/research/bundles, 88 zips)
uploads and lists its contents (names, types, read-only flags, per-member
checksum report) without extracting anything; the lenient flag for a wrong
MANIFEST.MF digest (refused without it, the member named); hostile zips, each
refused with its code of the contract (issue7 §5) and nothing left behind (no
bundle document, no file under VOLUMES/bundles, no artifact, no golden image);
roles; rename and name conflicts. Helpers: bundlelib.py.
"""
import io
import json
import os
import struct
import uuid
import zipfile

import test_golden_images as tgi
from bundlelib import (COLL, REST, Zip, artifacts_zip, bp_doc, bundle_files, corpus, download, dp_doc,
                       extract, file_sha256, inventory, make_zip, members, ps_doc, upload, upload_error,
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


# -- (a) the corpus: upload and list ----------------------------------------------------------------
def test_corpus_upload_and_list(srv):
    n = 0
    for path in corpus():
        zb = Zip(path)
        try:
            doc = upload_ok(srv, os.path.basename(path), path=path, query=bundle_query(zb))
            check_contents(doc, path, zb)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (os.path.basename(path), str(e)[:3000])) from None
        n += 1
    assert n == len(members(srv, COLL)) >= 88
    assert len(bundle_files(srv)) == n
    assert [m for m in members(srv, REST["PlanScript"])] == []  # uploading never extracts


def uid():
    return str(uuid.uuid4())


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


def test_roles(srv):
    doc = upload_ok(srv, "f.zip", path=FOUNDATION)
    tok = tgi.readonly_user(srv)
    assert srv.request("GET", COLL, token=tok).status == 200
    assert srv.request("GET", doc["uri"], token=tok).status == 200
    status, _, _ = download(srv, doc["downloadURI"], token=tok)
    assert status == 200
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
