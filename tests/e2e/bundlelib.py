"""bundlelib.py — helpers for the artifact-bundle tests (test_bundles.py,
test_cli_bundle.py) and bench/bundle_bench.py: the corpus, multipart uploads
to /rest/artifact-bundles, extraction, the field-by-field comparison of
extracted artifacts with the JSON in a zip, the HPE layout check of a zip
Streamer writes, and a writer of HPE-style zips for synthetic bundles.

Not a test module (no test_ prefix). Python standard library only.
"""
import glob
import hashlib
import io
import json
import os
import re
import urllib.parse
import zipfile

import harness
import test_golden_images as tgi

BUNDLES = os.path.join(harness.RESEARCH, "bundles")
COLL = "/rest/artifact-bundles"
KINDS = (("_planscript.json", "PlanScript"), ("_goldenimage.json", "GoldenImage"),
         ("_buildplan.json", "OeBuildPlan"), ("_deploymentplan.json", "OEDeploymentPlan"))
REST = {"PlanScript": "/rest/plan-scripts", "OeBuildPlan": "/rest/build-plans",
        "OEDeploymentPlan": "/rest/deployment-plans", "GoldenImage": "/rest/golden-images"}
# Server-side fields: not compared (the brief's list).
SERVER_FIELDS = {"uri", "category", "eTag", "etag", "created", "modified", "status", "state",
                 "dependentArtifacts", "readOnly"}
NULL_FIELDS = ("uri", "category", "eTag", "created", "modified", "status", "state", "dependentArtifacts")


def corpus():
    return sorted(glob.glob(os.path.join(BUNDLES, "*", "*.zip")))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


# -- reading a zip the way the tests see it -------------------------------------------------------
class Zip:
    """The artifacts of a bundle zip: ps/bp/dp/gi lists of (member, json),
    the manifest dict, checksum lines, and which members fail their digest."""

    def __init__(self, path=None, data=None):
        self.path = path
        self.data = data if data is not None else open(path, "rb").read()
        z = zipfile.ZipFile(io.BytesIO(self.data))
        self.infos = z.infolist()
        self.names = z.namelist()
        self.members = {n: z.read(n) for n in self.names}
        self.by_kind = {k: [] for _, k in KINDS}
        for n in self.names:
            for suf, k in KINDS:
                if n.endswith(suf):
                    self.by_kind[k].append((n, json.loads(self.members[n].decode("utf-8"))))
        self.ps = self.by_kind["PlanScript"]
        self.bp = self.by_kind["OeBuildPlan"]
        self.dp = self.by_kind["OEDeploymentPlan"]
        self.gi = self.by_kind["GoldenImage"]
        self.manifest = parse_manifest(self.members.get("MANIFEST.MF", b"").decode("utf-8"))
        self.sumfile = next((n for n in ("SHA256SUM.sha256sum", "SHA1SUM.sha1sum") if n in self.members), None)
        self.bad_digests = []
        self.self_listed = False
        if self.sumfile:
            algo = hashlib.sha256 if self.sumfile.startswith("SHA256") else hashlib.sha1
            for line in self.members[self.sumfile].decode().splitlines():
                if not line.strip():
                    continue
                name, digest = line.rsplit("\t", 1) if "\t" in line else line.rsplit(" ", 1)
                name = name.strip()
                if name == self.sumfile:  # a checksum file cannot hold its own digest: not checked
                    self.self_listed = True
                    continue
                if algo(self.members[name]).hexdigest() != digest.strip().lower():
                    self.bad_digests.append(name)

    @property
    def read_only(self):
        return self.manifest.get("Read Only", "").strip().lower() == "true"

    def artifacts(self):
        for _, k in KINDS:
            for n, d in self.by_kind[k]:
                yield k, n, d

    def member_id(self, member):
        return os.path.basename(member).split("_")[0]


def parse_manifest(text):
    """Key:Value lines; a line without a known key continues the previous value."""
    out, last = {}, None
    for line in text.split("\n"):
        m = re.match(r"^(Artifact Name|Description|Read Only|Time Stamp|Artifact Type):(.*)$", line)
        if m:
            last = m.group(1)
            out[last] = m.group(2)
        elif last:
            out[last] += "\n" + line
    return out


def expected_read_only(zb, doc):
    return zb.read_only or bool(doc.get("hpProvided")) or bool(doc.get("readOnly"))


# -- REST -------------------------------------------------------------------------------------------
def upload(srv, filename, data=None, path=None, query="", fields=(), token=None, target=COLL):
    return tgi.upload(srv, tgi.Body(filename, data=data, path=path, fields=fields), query, token=token,
                      target=target)


def task_of(srv, r, timeout=120):
    assert r.status == 202, r
    assert r.headers.get("location", "").startswith("/rest/tasks/"), r.headers
    return srv.wait_task(r.headers["location"], timeout=timeout)


def completed(t):
    assert t["taskState"] == "Completed" and t["taskErrors"] == [], json.dumps(t)[:3000]
    return t


def task_error(t):
    assert t["taskState"] == "Error", json.dumps(t)[:3000]
    assert len(t["taskErrors"]) >= 1, t
    return t["taskErrors"][0]


def upload_ok(srv, filename, data=None, path=None, query="", fields=()):
    t = completed(task_of(srv, upload(srv, filename, data, path, query, fields)))
    uri = t["associatedResource"]["resourceUri"]
    assert uri.startswith(COLL + "/"), t
    r = srv.request("GET", uri)
    assert r.status == 200, r
    return r.json()


def upload_error(srv, filename, data=None, path=None, query=""):
    """An upload that must be refused: a 4xx at once or a task in Error. The error object."""
    r = upload(srv, filename, data, path, query)
    if r.status == 202:
        return task_error(task_of(srv, r))
    assert 400 <= r.status < 500, r
    err = r.json()
    assert err["errorCode"] and err["message"], err
    return err


def extract(srv, bundle, query="?extract=true&forceImport=true", body=None, raw="null",
            ctype="text/plain;charset=UTF-8", token=None):
    """PUT .../{id}?extract...: the response (202 + task expected)."""
    uri = bundle["uri"] if isinstance(bundle, dict) else bundle
    if body is not None:
        return srv.request("PUT", uri + query, body, token=token)
    return srv.request("PUT", uri + query, raw=raw, headers={"Content-Type": ctype}, token=token)


def extract_ok(srv, bundle, query="?extract=true&forceImport=true", body=None):
    return completed(task_of(srv, extract(srv, bundle, query, body), timeout=300))


def report_of(t):
    """The extraction report {created, reused, renamed, replaced} from a task."""
    d = t.get("data") or {}
    rep = d.get("report", d)
    assert isinstance(rep, dict) and "created" in rep, t
    for k in ("created", "reused", "renamed", "replaced"):
        rep.setdefault(k, [])
    return rep


def members(srv, coll):
    r = srv.request("GET", coll + "?count=100000")
    assert r.status == 200, r
    return r.json()["members"]


def inventory(srv):
    """Every artifact and bundle on the server: {(collection, id): name}."""
    out = {}
    for coll in list(REST.values()) + [COLL]:
        for m in members(srv, coll):
            out[(coll, m["id"] if "id" in m else m["uri"].rsplit("/", 1)[1])] = m["name"]
    return out


def bundle_files(srv):
    d = os.path.join(srv.data_dir, "volumes", "bundles")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def download(srv, uri, token=None):
    c = srv.connection()
    c.timeout = 120
    try:
        c.request("GET", uri, headers={"X-API-Version": "2020", "auth": token or srv.token})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def create_bundle(srv, name, dps=(), bps=(), pss=(), gis=(), with_gi=False, read_only=False,
                  description="created by the tests"):
    def sel(xs):
        return [{"resourceUri": x, "readOnly": "true" if read_only else "false"} for x in xs]
    body = {"type": "ArtifactsBundle", "name": name, "description": description,
            "deploymentPlans": sel(dps), "buildPlans": sel(bps), "planScripts": sel(pss),
            "goldenImages": sel(gis)}
    if with_gi:
        body["withGoldenImages"] = True
    t = completed(task_of(srv, srv.request("POST", COLL, body), timeout=300))
    r = srv.request("GET", t["associatedResource"]["resourceUri"])
    assert r.status == 200, r
    return r.json()


# -- field-by-field comparison --------------------------------------------------------------------
class Mismatch(AssertionError):
    pass


def same_attr_value(za, sa, password_masked=True):
    """Attribute value read back: passwords are masked by every GET (""),
    an empty NIC value is null on the server (its documented normal form)."""
    zt = (za.get("type") or "").lower()
    zv, sv = za.get("value"), sa.get("value")
    if zt == "password" and password_masked:
        return sv in ("", None)
    if zt == "nic" and zv in ("", None):
        return sv in ("", None)
    return zv == sv


def compare_attrs(where, zattrs, sattrs, password_masked=True):
    if zattrs in (None, []) and sattrs in (None, []):
        return
    if not isinstance(zattrs, list) or not isinstance(sattrs, list):
        raise Mismatch("%s customAttributes %r != %r" % (where, zattrs, sattrs))
    if [a.get("name") for a in zattrs] != [a.get("name") for a in sattrs]:
        raise Mismatch("%s attribute names %r != %r" % (where, [a.get("name") for a in zattrs],
                                                       [a.get("name") for a in sattrs]))
    for za, sa in zip(zattrs, sattrs):
        for k, v in za.items():
            if k == "value":
                if not same_attr_value(za, sa, password_masked):
                    raise Mismatch("%s attribute %s value %r != %r" % (where, za["name"], v, sa.get("value")))
            elif sa.get(k) != v:
                raise Mismatch("%s attribute %s field %s: %r != %r" % (where, za["name"], k, v, sa.get(k)))


def compare(kind, zdoc, sdoc, ps_uri, bp_name_of_uri, gi_name_of_uri, password_masked=True):
    """zdoc (the zip's JSON) against sdoc (the server's GET). ps_uri maps the
    bundle's plan script ids to server URIs; *_name_of_uri resolve DP references."""
    where = "%s %r" % (kind, zdoc.get("name"))
    for k, v in zdoc.items():
        if k in SERVER_FIELDS or (kind == "PlanScript" and k == "customAttributes"):
            continue
        s = sdoc.get(k, "<absent>")
        if k == "customAttributes":
            compare_attrs(where, v, s, password_masked)
        elif kind == "OeBuildPlan" and k == "buildStep":
            if not isinstance(s, list) or len(s) != len(v):
                raise Mismatch("%s buildStep %r != %r" % (where, v, s))
            for zs, ss in zip(v, s):
                for sk, sv in zs.items():
                    if sk == "planScriptUri":
                        want = ps_uri[sv.rsplit("/", 1)[1]]
                        if ss.get(sk) != want:
                            raise Mismatch("%s step %s planScriptUri %r != %r" % (where, zs["serialNumber"], ss.get(sk), want))
                    elif ss.get(sk, "<absent>") != sv:
                        raise Mismatch("%s step %s %s: %r != %r" % (where, zs.get("serialNumber"), sk, sv, ss.get(sk, "<absent>")))
        elif kind == "OEDeploymentPlan" and k == "oeBuildPlanURI":
            if bp_name_of_uri(s) != v:
                raise Mismatch("%s oeBuildPlanURI %r names %r, want %r" % (where, s, bp_name_of_uri(s), v))
        elif kind == "OEDeploymentPlan" and k == "goldenImageURI":
            if v in ("", None):
                if s not in ("", None):
                    raise Mismatch("%s goldenImageURI %r, want none" % (where, s))
            elif gi_name_of_uri(s) != v:
                raise Mismatch("%s goldenImageURI %r names %r, want %r" % (where, s, gi_name_of_uri(s), v))
        elif s != v:
            raise Mismatch("%s field %s: %r != %r" % (where, k, v if len(repr(v)) < 300 else repr(v)[:300] + "...",
                                                      s if len(repr(s)) < 300 else repr(s)[:300] + "..."))


def name_resolver(srv):
    cache = {}

    def name_of(uri):
        if not uri:
            return None
        if uri not in cache:
            r = srv.request("GET", uri)
            cache[uri] = r.json()["name"] if r.status == 200 else None
        return cache[uri]
    return name_of


def server_doc(srv, kind, id_):
    r = srv.request("GET", "%s/%s" % (REST[kind], id_))
    assert r.status == 200, (kind, id_, r)
    return r.json()


def check_extracted(srv, zb, ids=None, password_masked=True):
    """Every plan script, build plan and deployment plan of zb on srv equal to
    its JSON; ids maps (kind, bundle id) -> server id (default: the same id)."""
    ids = ids or {}
    name_of = name_resolver(srv)

    def sid(kind, i):
        return ids.get((kind, i), i)
    ps_uri = {}
    for n, d in zb.ps:
        s = server_doc(srv, "PlanScript", sid("PlanScript", d["id"]))
        compare("PlanScript", d, s, None, None, None, password_masked)
        assert s["readOnly"] == expected_read_only(zb, d), (s["name"], s["readOnly"])
        ps_uri[d["id"]] = s["uri"]
    for n, d in zb.bp:
        s = server_doc(srv, "OeBuildPlan", sid("OeBuildPlan", d["buildPlanid"]))
        compare("OeBuildPlan", d, s, ps_uri, None, None, password_masked)
        assert s["readOnly"] == expected_read_only(zb, d), (s["name"], s["readOnly"])
    for n, d in zb.dp:
        s = server_doc(srv, "OEDeploymentPlan", sid("OEDeploymentPlan", d["id"]))
        compare("OEDeploymentPlan", d, s, ps_uri, name_of, name_of, password_masked)
        assert s["readOnly"] == expected_read_only(zb, d), (s["name"], s["readOnly"])
    for n, d in zb.gi:
        s = server_doc(srv, "GoldenImage", sid("GoldenImage", d["id"]))
        assert s["name"] == d["name"] and s["description"] == d["description"], (s, d)
        assert s["importedFromBundle"] is True, s
        assert s["readOnly"] == (zb.read_only or bool(d.get("readOnly"))), s


# -- HPE layout of a zip Streamer writes ----------------------------------------------------------
MANIFEST_KEYS = ["Artifact Name", "Description", "Read Only", "Time Stamp", "Artifact Type"]


def check_hpe_layout(data):
    """Everything hpe-artifacts.md §1 says of an appliance export. Returns the Zip."""
    z = zipfile.ZipFile(io.BytesIO(data))
    infos = z.infolist()
    names = [i.filename for i in infos]
    assert len(set(names)) == len(names), names
    for i in infos:
        assert i.flag_bits & 0x0808 == 0x0808, (i.filename, hex(i.flag_bits))
        assert i.flag_bits & 0x1 == 0, i.filename
        assert i.create_system == 0, (i.filename, i.create_system)  # MS-DOS
        assert i.compress_type == zipfile.ZIP_DEFLATED, (i.filename, i.compress_type)
        assert "/" not in i.filename and "\\" not in i.filename and not i.is_dir(), i.filename
    assert z.testzip() is None
    zb = Zip(data=data)
    gi_names = {d["name"] for _, d in zb.gi}
    # order: PS* (GIJ GI)* BP* DP* MANIFEST.MF SHA256SUM.sha256sum
    seq = []
    for n in names:
        if n.endswith("_planscript.json"):
            seq.append("P")
        elif n.endswith("_goldenimage.json"):
            seq.append("J")
        elif n in gi_names:
            seq.append("G")
        elif n.endswith("_buildplan.json"):
            seq.append("B")
        elif n.endswith("_deploymentplan.json"):
            seq.append("D")
        elif n == "MANIFEST.MF":
            seq.append("M")
        elif n == "SHA256SUM.sha256sum":
            seq.append("S")
        else:
            raise AssertionError("unexpected member %r" % n)
    assert re.fullmatch(r"P*(JG)*B*D*MS", "".join(seq)), (seq, names)
    for i, n in enumerate(names):  # each payload right after its json, named by it
        if n.endswith("_goldenimage.json"):
            gj = json.loads(z.read(n))
            assert names[i + 1] == gj["name"], (n, names[i + 1])
    # MANIFEST.MF
    mf = z.read("MANIFEST.MF").decode("utf-8")
    assert not mf.endswith("\n") and "\r" not in mf, repr(mf)
    lines = mf.split("\n")
    assert [ln.split(":", 1)[0] for ln in lines] == MANIFEST_KEYS, lines
    kv = dict(ln.split(":", 1) for ln in lines)
    assert kv["Read Only"] in ("true", "false") and kv["Artifact Type"] == "USER", kv
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", kv["Time Stamp"]), kv
    # SHA256SUM: every other member in zip order, each digest right
    sums = z.read("SHA256SUM.sha256sum").decode()
    assert sums.endswith("\n"), repr(sums[-50:])
    rows = [ln.split("\t") for ln in sums[:-1].split("\n")]
    assert [r[0] for r in rows] == names[:-1], (rows, names)
    for n, digest in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", digest), digest
        assert sha256(z.read(n)) == digest, n
    # JSON members
    ps_ids = {d["id"]: d["name"] for _, d in zb.ps}
    bp_names = {d["name"] for _, d in zb.bp}
    for kind, n, d in zb.artifacts():
        raw = z.read(n)
        assert not raw.startswith(b"\xef\xbb\xbf"), n
        pairs = json.loads(raw, object_pairs_hook=lambda p: p)
        assert pairs[0][0] == "type", (n, pairs[:2])
        assert d["type"] == kind, (n, d["type"])
        own = d["buildPlanid"] if kind == "OeBuildPlan" else d["id"]
        assert n == "%s%s" % (own, dict((k, s) for s, k in KINDS)[kind]), n
        for f in NULL_FIELDS:
            if f not in d and (kind == "GoldenImage" or f in ("state", "dependentArtifacts")):
                continue  # HPE's build plans have no "state", some DPs no "dependentArtifacts"
            assert f in d and d[f] is None, (n, f, d.get(f, "<absent>"))
        if kind == "PlanScript":
            assert d["customAttributes"] is None, n
        if kind in ("OeBuildPlan", "OEDeploymentPlan"):
            for a in d.get("customAttributes") or []:
                assert isinstance(a.get("constraints"), str), (n, a)
                json.loads(a["constraints"])
        if kind == "OeBuildPlan":
            for i, s in enumerate(d["buildStep"]):
                assert s["serialNumber"] == str(i + 1), (n, s)
                pid = s["planScriptUri"].split("/rest/plan-scripts/", 1)[1]
                assert ps_ids.get(pid) == s["planScriptName"], (n, s)
        if kind == "OEDeploymentPlan":
            assert d["oeBuildPlanURI"] in bp_names, (n, d["oeBuildPlanURI"])
            assert d["goldenImageURI"] in (None, "") or d["goldenImageURI"] in gi_names, (n, d["goldenImageURI"])
        if kind == "GoldenImage":
            inner = zipfile.ZipFile(io.BytesIO(z.read(d["name"])))
            assert len(inner.namelist()) == 1, inner.namelist()
    return zb


# -- writing synthetic bundles --------------------------------------------------------------------
def ps_doc(id_, name, content="echo hello", plan_type="deploy", description="", hp=False):
    return {"type": "PlanScript", "uri": None, "category": None, "eTag": None, "created": None,
            "modified": None, "id": id_, "name": name, "description": description, "status": None,
            "state": None, "planType": plan_type, "content": content, "customAttributes": None,
            "hpProvided": hp, "dependentArtifacts": None}


def bp_doc(id_, name, steps, attrs=None, description="", hp=False, bp_type="deploy"):
    return {"type": "OeBuildPlan", "buildPlanid": id_, "oeBuildPlanType": bp_type, "name": name,
            "hpProvided": hp, "customAttributes": attrs or [],
            "buildStep": [{"planScriptName": s["name"], "planScriptUri": "/rest/plan-scripts/" + s["id"],
                           "serialNumber": str(i + 1), "parameters": None} for i, s in enumerate(steps)],
            "description": description, "dependentArtifacts": None, "eTag": None, "created": None,
            "modified": None, "category": None, "status": None, "uri": None}


def dp_doc(id_, name, bp_name, gi_name=None, attrs=None, description="", hp=False):
    return {"type": "OEDeploymentPlan", "id": id_, "hpProvided": hp, "name": name, "description": description,
            "oeBuildPlanURI": bp_name, "goldenImageURI": gi_name, "importMetadata": False,
            "customAttributes": attrs or [], "uri": None, "category": None, "eTag": None, "created": None,
            "modified": None, "status": None, "state": None, "dependentArtifacts": None}


def make_zip(members, manifest=None, read_only=False, checksum=True, name="Test bundle"):
    """members: [(name, bytes|dict)] in order; then MANIFEST.MF and SHA256SUM."""
    out = io.BytesIO()
    entries = []
    for n, v in members:
        entries.append((n, json.dumps(v, separators=(",", ":")).encode() if isinstance(v, dict) else v))
    if manifest is not False:
        mf = manifest if manifest is not None else (
            "Artifact Name:%s\nDescription:synthetic\nRead Only:%s\nTime Stamp:2024-01-01T00:00:00.000Z\n"
            "Artifact Type:USER" % (name, "true" if read_only else "false"))
        entries.append(("MANIFEST.MF", mf.encode() if isinstance(mf, str) else mf))
    if checksum:
        entries.append(("SHA256SUM.sha256sum",
                        "".join("%s\t%s\n" % (n, sha256(b)) for n, b in entries).encode()))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in entries:
            z.writestr(n, b)
    return out.getvalue()


def artifacts_zip(ps=(), bp=(), dp=(), **kw):
    m = [("%s_planscript.json" % d["id"], d) for d in ps]
    m += [("%s_buildplan.json" % d["buildPlanid"], d) for d in bp]
    m += [("%s_deploymentplan.json" % d["id"], d) for d in dp]
    return make_zip(m, **kw)


def q(s):
    return urllib.parse.quote(s)
