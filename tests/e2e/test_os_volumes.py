"""test_os_volumes.py — /rest/os-volumes and /rest/iscsi/targets end to end:
empty volumes and clones of golden images exported as iSCSI targets, every
validation error (and nothing left behind by one), roles, collections,
CHAP secrets that never leave the credentials endpoint, PUT, DELETE, the
re-export (and crash recovery) at restart, the golden image delete guard,
streamerd's --iscsi-listen, the CLI, and real initiators (libiscsi's
iscsi-ls / iscsi-inq) once the network target answers.
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
import urllib.parse

import harness
import test_golden_images as gi_test

INIT = "iqn.2004-10.com.ubuntu:01:c0ffee"
INIT2 = "iqn.1991-05.com.microsoft:web01.example.com"


# -- helpers ----------------------------------------------------------------------------------------
def create(srv, body, token=None):
    """POST a volume, expect 202 and a Completed task; return the volume."""
    r = srv.request("POST", "/rest/os-volumes", body, token=token)
    assert r.status == 202, r
    t = r.json()
    assert r.headers["location"] == t["uri"] and t["type"] == "TaskResourceV2", (r.headers, t)
    assert t["name"] == "Create" and t["associatedResource"]["resourceCategory"] == "os-volumes", t
    t = srv.wait_task(t["uri"])
    assert t["taskState"] == "Completed" and t["taskErrors"] == [], t
    v = srv.request("GET", t["associatedResource"]["resourceUri"])
    assert v.status == 200, v
    assert v.headers["etag"] == v.json()["eTag"]
    return v.json()


def refused(srv, body, status, code, token=None):
    r = srv.request("POST", "/rest/os-volumes", body, token=token)
    assert r.status == status and r.json()["errorCode"] == code, (body, r)
    return r.json()


def delete(srv, vol):
    r = srv.request("DELETE", vol["uri"])
    assert r.status == 202, r
    t = r.json()
    assert t["name"] == "Delete" and t["associatedResource"]["resourceUri"] is None, t
    t = srv.wait_task(t["uri"])
    assert t["taskState"] == "Completed", t
    return t


def golden(srv, name="Base", mib=1):
    return gi_test.upload_ok(srv, gi_test.Body("base.img", data=gi_test.pattern(mib)),
                             "?name=" + urllib.parse.quote(name))


def os_dirs(srv):
    d = os.path.join(srv.data_dir, "volumes", "os")
    return sorted(n for n in os.listdir(d) if not n.startswith("."))


def targets(srv):
    r = srv.request("GET", "/rest/iscsi/targets")
    assert r.status == 200, r
    return r.json()


def target_names(srv):
    return sorted(m["targetName"] for m in targets(srv)["members"])


def user(srv, name, role):
    r = srv.request("POST", "/rest/users", {"userName": name, "password": "password-" + name,
                                            "permissions": [{"roleName": role}]})
    assert r.status == 201, r
    return srv.login(name, "password-" + name)


# -- create ---------------------------------------------------------------------------------------------
def test_create_empty_and_clone(srv):
    e = create(srv, {"name": "Empty one", "size": "10G", "initiatorNames": [INIT],
                     "description": "scratch"})
    assert e["type"] == "OSVolume" and e["category"] == "os-volumes", e
    assert e["uri"] == "/rest/os-volumes/" + e["id"] and e["oeVolumeId"] == e["id"], e
    assert e["size"] == 10 << 30 and e["state"] == "OK" and e["status"] == "OK", e
    assert e["goldenVolumeUri"] is None and e["description"] == "scratch", e
    assert e["deploymentClusterUri"] is None and e["statelessServerUri"] is None, e
    assert e["dependentArtifacts"] == [] and isinstance(e["allocatedBytes"], int), e
    i = e["iscsi"]
    assert i["targetName"] == e["oeVolumeIQN"], e
    assert re.fullmatch(r"iqn\.2024-11\.org\.streamer:vol\.empty-one\.[0-9a-f]{8}", i["targetName"]), i
    assert i["targetName"].endswith(e["id"][:8]), i
    assert i["portals"] == ["127.0.0.1:%d" % srv.iscsi_port] and e["oeVolumeIp"] == "127.0.0.1", e
    assert i["lun"] == 0 and i["initiatorNames"] == [INIT] and i["chap"] is False, i
    assert "chapName" not in i and "secrets" not in e and "log" not in e, e
    # clones: the golden image's size by default, larger on request, by uri, id or name
    g = golden(srv)
    c = create(srv, {"name": "Clone", "initiatorNames": [INIT], "goldenImageUri": g["uri"]})
    assert c["size"] == g["size"] == 1 << 20 and c["goldenVolumeUri"] == g["uri"], (c, g)
    c2 = create(srv, {"name": "Clone 2", "initiatorNames": INIT2, "goldenImageURI": g["id"],
                      "size": "1G"})
    assert c2["size"] == 1 << 30 and c2["iscsi"]["initiatorNames"] == [INIT2], c2
    c3 = create(srv, {"name": "Clone 3", "initiatorNames": [INIT], "goldenImageUri": "Base",
                      "size": 0})
    assert c3["size"] == g["size"] and c3["goldenVolumeUri"] == g["uri"], c3
    # sizes: bytes rounded up to 512, units of 1024
    for size, want in ((1000, 1024), ("512M", 512 << 20), ("1 GiB", 1 << 30), ("2t", 2 << 40),
                       ("4096", 4096), (1536.0, 1536)):
        v = create(srv, {"name": "size %s" % size, "size": size, "initiatorNames": [INIT]})
        assert v["size"] == want, (size, v["size"])
    # every volume is a directory of the volume store and an exported target
    vols = srv.request("GET", "/rest/os-volumes").json()["members"]
    assert sorted(os_dirs(srv)) == sorted(v["id"] for v in vols), (os_dirs(srv), vols)
    t = targets(srv)
    assert t["enabled"] is True and t["portals"] == ["127.0.0.1:%d" % srv.iscsi_port], t
    assert sorted(m["targetName"] for m in t["members"]) == sorted(v["oeVolumeIQN"] for v in vols)
    one = [m for m in t["members"] if m["targetName"] == c["oeVolumeIQN"]][0]
    assert one["osVolumeUri"] == c["uri"] and one["alias"] == "Clone" and one["size"] == c["size"], one
    assert one["initiatorNames"] == [INIT] and one["chap"] is False and "sessions" in one, one
    r = srv.request("GET", "/rest/iscsi/targets/" + c["oeVolumeIQN"])
    assert r.status == 200 and r.json()["targetName"] == c["oeVolumeIQN"], r
    assert srv.request("GET", "/rest/iscsi/targets/iqn.2000-01.org.nope:x").status == 404
    # storage and archive (by id and by name)
    r = srv.request("GET", c["uri"] + "/storage")
    assert r.status == 200 and r.json() == {"name": "Clone", "snapshots": []}, r
    for x in (c["id"], urllib.parse.quote("Clone")):
        r = srv.request("GET", "/rest/os-volumes/archive/" + x)
        assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r
        assert "clone of golden image \"Base\"" in r.body and c["oeVolumeIQN"] in r.body, r.body
    assert srv.request("GET", "/rest/os-volumes/archive/nope").status == 404
    assert srv.request("GET", "/rest/os-volumes/nope").status == 404
    assert srv.request("GET", "/rest/os-volumes/nope/storage").status == 404
    assert srv.request("PATCH", c["uri"]).status == 405


# -- validation -----------------------------------------------------------------------------------------
def test_validation_leaves_nothing(srv):
    g = golden(srv, mib=2)
    ok = {"name": "V", "size": "1G", "initiatorNames": [INIT]}

    def bad(status, code, **change):
        body = dict(ok)
        for k, v in change.items():
            if v is None:
                body.pop(k, None)
            else:
                body[k] = v
        return refused(srv, body, status, code)

    r = srv.request("POST", "/rest/os-volumes", raw="{\"name\": ", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["errorCode"] == "INVALID_JSON", r
    assert refused(srv, [1, 2], 400, "INVALID_BODY")
    bad(400, "UNKNOWN_FIELD", sizeGiB=3)
    bad(400, "INVALID_TYPE", type="GoldenImage")
    bad(400, "INVALID_NAME", name=None)
    bad(400, "INVALID_NAME", name="a/b")
    bad(400, "INVALID_NAME", name=" lead")
    bad(400, "INVALID_FIELD", description=5)
    bad(400, "INVALID_SIZE", size=None)            # an empty volume needs a size
    bad(400, "INVALID_SIZE", size=0)
    for s in ("abc", -1, "10X", "1.5G", "65T", 1 << 47, "G", "", True, [1]):
        bad(400, "INVALID_SIZE", size=s)
    m = bad(400, "INVALID_SIZE", size="1M", goldenImageUri=g["uri"])  # smaller than the image
    assert "never smaller" in m["message"], m
    bad(400, "INVALID_INITIATOR", initiatorNames=None)
    bad(400, "INVALID_INITIATOR", initiatorNames=[])
    bad(400, "INVALID_INITIATOR", initiatorNames="nope")
    for n in ("iqn.2004-13.com.example", "iqn.2004-10", "iqn.2004-10.", "iqn.04-10.com.x",
              "iqn.2004-10.com..x", "iqn.2004-10.com.example:", "iqn.2004-10.com.ex ample",
              "iqn.2004-10.com.example:a_b", "eui.0123", "eui.0123456789ABCDEG", "naa.1234",
              "iqn.2004-10.com.x:" + "a" * 210, 5):
        bad(400, "INVALID_INITIATOR", initiatorNames=[n])
    bad(400, "INVALID_INITIATOR", initiatorNames=[INIT, INIT.upper()])  # duplicates
    m = bad(400, "INVALID_INITIATOR", initiatorNames=["*"])
    assert "allowAnyInitiator" in m["message"], m
    bad(400, "INVALID_INITIATOR", initiatorNames=["*", INIT], allowAnyInitiator=True)
    bad(400, "INVALID_FIELD", allowAnyInitiator="maybe")
    bad(400, "INVALID_CHAP", chap=True, chapSecret="short")
    bad(400, "INVALID_CHAP", chap=True, chapSecret="x" * 256)
    bad(400, "INVALID_CHAP", chap=True, chapName="has space")
    bad(400, "INVALID_CHAP", chap=False, chapSecret="long enough secret")
    bad(400, "INVALID_CHAP", chap=False, mutualChap=True)
    bad(400, "INVALID_CHAP", chapSecret="same secret 123", mutualChapSecret="same secret 123")
    bad(400, "INVALID_FIELD", chap="perhaps")
    m = bad(400, "GOLDEN_IMAGE_NOT_FOUND", goldenImageUri="/rest/golden-images/nope")
    assert "nope" in m["message"], m
    bad(400, "GOLDEN_IMAGE_NOT_FOUND", goldenImageUri="No such image")
    bad(400, "GOLDEN_IMAGE_NOT_FOUND", goldenImageUri="/rest/plan-scripts/" + g["id"])
    # nothing was created by any of these
    assert srv.request("GET", "/rest/os-volumes").json()["total"] == 0
    assert os_dirs(srv) == [] and target_names(srv) == []
    assert all(t["name"] != "Create" for t in srv.request("GET", "/rest/tasks").json()["members"])
    # names are unique; the accepted spellings are normalized
    v = create(srv, dict(ok, initiatorNames=["IQN.2004-10.COM.Example:Host-1", "eui.02004567a425678d",
                                             "naa.52004567BA64678D", "naa.6" + "0" * 31]))
    assert v["iscsi"]["initiatorNames"] == ["iqn.2004-10.com.example:host-1", "eui.02004567A425678D",
                                            "naa.52004567BA64678D", "naa.6" + "0" * 31], v
    m = bad(409, "NAME_CONFLICT")
    assert '"V"' in m["message"], m
    assert len(os_dirs(srv)) == 1 and len(target_names(srv)) == 1
    any_init = create(srv, dict(ok, name="Anyone", initiatorNames=["*"], allowAnyInitiator="true"))
    assert any_init["iscsi"]["initiatorNames"] == ["*"], any_init


def sqlite_set(srv, coll, id, path, value):
    """Change a stored document behind streamerd's back (it must be stopped
    for the change to be seen: the store is loaded at start)."""
    db = sqlite3.connect(os.path.join(srv.data_dir, "streamer.db"), timeout=10)
    try:
        cur = db.execute("UPDATE docs SET body = json_set(body, ?, ?) WHERE coll = ? AND id = ?",
                         (path, value, coll, id))
        db.commit()
        return cur.rowcount == 1
    finally:
        db.close()


# -- roles ------------------------------------------------------------------------------------------------------
def test_roles(srv):
    body = {"name": "R", "size": "1M", "initiatorNames": [INIT], "chap": True}
    ro = user(srv, "viewer", "Read only")
    sa = user(srv, "servers", "Server administrator")
    dep = user(srv, "deployer", "Deployment administrator")
    for tok in (ro, sa):
        assert refused(srv, body, 403, "INSUFFICIENT_PRIVILEGES", token=tok)
    v = create(srv, body, token=dep)
    assert v["name"] == "R"
    for tok in (ro, sa, dep):
        assert srv.request("GET", v["uri"], token=tok).status == 200
        assert srv.request("GET", "/rest/os-volumes", token=tok).status == 200
        assert srv.request("GET", "/rest/iscsi/targets", token=tok).status == 200
        r = srv.request("GET", v["uri"] + "/iscsi-credentials", token=tok)
        assert r.status == 403 and "chapSecret" not in r.body, r
    for tok in (ro, sa):
        assert srv.request("PUT", v["uri"], {"description": "x"}, token=tok).status == 403
        assert srv.request("DELETE", v["uri"], token=tok).status == 403
    r = srv.request("PUT", v["uri"], {"description": "by the deployer"}, token=dep)
    assert r.status == 200 and r.json()["description"] == "by the deployer", r
    assert srv.request("GET", v["uri"] + "/iscsi-credentials").status == 200  # administrator
    r = srv.request("DELETE", v["uri"], token=dep)
    assert r.status == 202 and srv.wait_task(r.json()["uri"])["taskState"] == "Completed", r
    assert srv.request("GET", "/rest/os-volumes", auth=False).status == 401


# -- collections -------------------------------------------------------------------------------------------
def test_list_filter_sort_page(srv):
    for n in ("b-vol", "a-vol", "c-vol"):
        create(srv, {"name": n, "size": "%dM" % (len(n) + ord(n[0]) - 96), "initiatorNames": [INIT],
                     "chap": n == "a-vol"})
    r = srv.request("GET", "/rest/os-volumes")
    c = r.json()
    assert c["type"] == "OSVolumeCollection" and c["category"] == "os-volumes" and c["total"] == 3, c
    assert [m["name"] for m in c["members"]] == ["b-vol", "a-vol", "c-vol"], c  # creation order
    c = srv.request("GET", "/rest/os-volumes?sort=name:asc&start=1&count=1").json()
    assert [m["name"] for m in c["members"]] == ["b-vol"] and c["nextPageUri"], c
    c = srv.request("GET", "/rest/os-volumes?filter=" + urllib.parse.quote("name='c-vol'")).json()
    assert [m["name"] for m in c["members"]] == ["c-vol"], c
    c = srv.request("GET", "/rest/os-volumes?filter=" + urllib.parse.quote("size>8000000")).json()
    assert sorted(m["name"] for m in c["members"]) == ["c-vol"], c
    c = srv.request("GET", "/rest/os-volumes?query=" + urllib.parse.quote("name matches 'a%'")).json()
    assert [m["name"] for m in c["members"]] == ["a-vol"], c
    # a filter cannot probe a secret: it sees the public document only
    secret = srv.request("GET", c["members"][0]["uri"] + "/iscsi-credentials").json()["chapSecret"]
    for f in ("chapSecret='%s'" % secret, "secrets.chapSecret='%s'" % secret):
        r = srv.request("GET", "/rest/os-volumes?filter=" + urllib.parse.quote(f))
        assert r.status in (200, 400), r
        if r.status == 200:  # (the uri echoes the filter itself)
            assert r.json()["total"] == 0 and secret not in json.dumps(r.json()["members"]), r


# -- CHAP --------------------------------------------------------------------------------------------------------
def test_chap_secrets_stay_secret(srv):
    v = create(srv, {"name": "Secret", "size": "1M", "initiatorNames": [INIT], "chap": True})
    i = v["iscsi"]
    assert i["chap"] is True and i["mutualChap"] is False and i["chapName"], i
    cred = srv.request("GET", v["uri"] + "/iscsi-credentials")
    assert cred.status == 200, cred
    cred = cred.json()
    assert set(cred) == {"chapName", "chapSecret"} and cred["chapName"] == i["chapName"], cred
    assert 12 <= len(cred["chapSecret"]) <= 16, cred  # RFC 7143 minimum; Windows' maximum
    # user-chosen secrets, mutual CHAP
    m = create(srv, {"name": "Mutual", "size": "1M", "initiatorNames": [INIT], "chapName": "web01",
                     "chapSecret": "my chosen secret 1", "mutualChapSecret": "target secret 22"})
    assert m["iscsi"]["chap"] is True and m["iscsi"]["mutualChap"] is True, m
    mc = srv.request("GET", m["uri"] + "/iscsi-credentials").json()
    assert mc == {"chapName": "web01", "chapSecret": "my chosen secret 1",
                  "mutualChapName": m["oeVolumeIQN"], "mutualChapSecret": "target secret 22"}, mc
    g = create(srv, {"name": "Mutual gen", "size": "1M", "initiatorNames": [INIT], "chap": True,
                     "mutualChap": True})
    gc = srv.request("GET", g["uri"] + "/iscsi-credentials").json()
    assert gc["chapSecret"] != gc["mutualChapSecret"] and len(gc["mutualChapSecret"]) >= 12, gc
    plain = create(srv, {"name": "Plain", "size": "1M", "initiatorNames": [INIT]})
    r = srv.request("GET", plain["uri"] + "/iscsi-credentials")
    assert r.status == 409 and r.json()["errorCode"] == "CHAP_NOT_ENABLED", r
    # turn CHAP off and on again: a new secret
    r = srv.request("PUT", v["uri"], {"chap": False})
    assert r.status == 200 and r.json()["iscsi"]["chap"] is False and "chapName" not in r.json()["iscsi"], r
    assert srv.request("GET", v["uri"] + "/iscsi-credentials").status == 409
    r = srv.request("PUT", v["uri"], {"chap": True})
    assert r.status == 200 and r.json()["iscsi"]["chap"] is True, r
    new = srv.request("GET", v["uri"] + "/iscsi-credentials").json()
    assert new["chapSecret"] != cred["chapSecret"], new
    r = srv.request("PUT", v["uri"], {"chapSecret": "too short"})
    assert r.status == 400 and r.json()["errorCode"] == "INVALID_CHAP" and "too short" not in r.body, r
    r = srv.request("PUT", v["uri"], {"chapSecret": "a brand new secret"})
    assert r.status == 200, r
    assert srv.request("GET", v["uri"] + "/iscsi-credentials").json()["chapSecret"] == "a brand new secret"
    # targets know CHAP is on, never the secret
    t = [x for x in targets(srv)["members"] if x["targetName"] == v["oeVolumeIQN"]][0]
    assert t["chap"] is True, t
    secrets = [cred["chapSecret"], new["chapSecret"], "a brand new secret", "my chosen secret 1",
               "target secret 22", gc["chapSecret"], gc["mutualChapSecret"]]
    seen = [srv.request("GET", "/rest/os-volumes").body, srv.request("GET", "/rest/tasks").body,
            srv.request("GET", "/rest/iscsi/targets").body]
    for x in (v, m, g, plain):
        seen += [srv.request("GET", x["uri"]).body, srv.request("GET", x["uri"] + "/storage").body,
                 srv.request("GET", "/rest/os-volumes/archive/" + x["id"]).body]
    for s in secrets:
        for body in seen:
            assert s not in body, (s, body[:500])
        assert s not in srv.read_log(), s


# -- update ---------------------------------------------------------------------------------------------------
def test_update(srv):
    v = create(srv, {"name": "Web", "size": "1G", "initiatorNames": [INIT]})
    create(srv, {"name": "Other", "size": "1G", "initiatorNames": [INIT]})
    r = srv.request("PUT", v["uri"], {"name": "Web 2"}, headers={"If-Match": "1/1"})
    assert r.status == 412 and r.json()["errorCode"] == "ETAG_MISMATCH", r
    r = srv.request("PUT", v["uri"], {"name": "Web 2", "description": "d", "initiatorNames": [INIT, INIT2]},
                    headers={"If-Match": '"%s"' % v["eTag"]})
    assert r.status == 200, r
    u = r.json()
    assert u["name"] == "Web 2" and u["description"] == "d" and r.headers["etag"] == u["eTag"], u
    assert u["iscsi"]["initiatorNames"] == [INIT, INIT2], u
    assert u["oeVolumeIQN"] == v["oeVolumeIQN"], u  # the IQN stays: initiators keep working
    t = [x for x in targets(srv)["members"] if x["targetName"] == v["oeVolumeIQN"]][0]
    assert t["initiatorNames"] == [INIT, INIT2] and t["alias"] == "Web 2", t
    # the whole document sent back changes nothing
    r = srv.request("PUT", v["uri"], u)
    assert r.status == 200 and r.json()["name"] == "Web 2" and r.json()["iscsi"] == u["iscsi"], r
    for body, status, code in (({"name": "Other"}, 409, "NAME_CONFLICT"),
                               ({"name": "bad/name"}, 400, "INVALID_NAME"),
                               ({"size": "2G"}, 400, "OS_VOLUME_FIELD_READ_ONLY"),
                               ({"goldenImageUri": "/rest/golden-images/x"}, 400, "OS_VOLUME_FIELD_READ_ONLY"),
                               ({"initiatorNames": ["bad"]}, 400, "INVALID_INITIATOR"),
                               ({"initiatorNames": ["*"]}, 400, "INVALID_INITIATOR"),
                               ({"id": "other"}, 400, "ID_MISMATCH"),
                               ({"colour": "red"}, 400, "UNKNOWN_FIELD"),
                               ("text", 400, "INVALID_BODY")):
        r = srv.request("PUT", v["uri"], body)
        assert r.status == status and r.json()["errorCode"] == code, (body, r)
    assert srv.request("PUT", "/rest/os-volumes/nope", {"name": "x"}).status == 404
    cur = srv.request("GET", v["uri"]).json()
    assert cur["name"] == "Web 2" and cur["size"] == 1 << 30 and cur["iscsi"] == u["iscsi"], cur
    r = srv.request("PUT", v["uri"], {"initiatorNames": ["*"], "allowAnyInitiator": True})
    assert r.status == 200 and r.json()["iscsi"]["initiatorNames"] == ["*"], r
    log = srv.request("GET", "/rest/os-volumes/archive/" + v["id"]).body
    assert "updated: name description initiatorNames" in log, log


# -- delete --------------------------------------------------------------------------------------------------
def test_delete(srv):
    v = create(srv, {"name": "Doomed", "size": "1G", "initiatorNames": [INIT]})
    assert v["id"] in os_dirs(srv) and v["oeVolumeIQN"] in target_names(srv)
    r = srv.request("DELETE", v["uri"], headers={"If-Match": "1/1"})
    assert r.status == 412, r
    delete(srv, v)
    assert srv.request("GET", v["uri"]).status == 404
    assert os_dirs(srv) == [] and target_names(srv) == []
    assert srv.request("DELETE", v["uri"]).status == 404
    # the name is free again
    create(srv, {"name": "Doomed", "size": "1G", "initiatorNames": [INIT]})


def test_golden_image_delete_refused_while_cloned(srv):
    g = golden(srv, "Parent")
    a = create(srv, {"name": "Child A", "initiatorNames": [INIT], "goldenImageUri": g["uri"]})
    create(srv, {"name": "Child B", "initiatorNames": [INIT], "goldenImageUri": g["uri"], "size": "2M"})
    r = srv.request("DELETE", g["uri"])
    assert r.status == 409 and r.json()["errorCode"] == "GOLDEN_VOLUME_IN_USE", r
    msg = r.json()["message"]
    assert '"Child A"' in msg and '"Child B"' in msg and '"Parent"' in msg, msg
    delete(srv, a)
    b = srv.request("GET", "/rest/os-volumes?filter=" + urllib.parse.quote("name='Child B'")).json()["members"][0]
    delete(srv, b)
    r = srv.request("DELETE", g["uri"])
    assert r.status == 202 and srv.wait_task(r.json()["uri"])["taskState"] == "Completed", r


# -- restart ----------------------------------------------------------------------------------------------------
def test_restart_reexports_and_recovers():
    with harness.Server() as srv:
        srv.login()
        g = golden(srv)
        keep = create(srv, {"name": "Keep", "initiatorNames": [INIT], "goldenImageUri": g["uri"],
                            "chap": True})
        cred = srv.request("GET", keep["uri"] + "/iscsi-credentials").json()
        lost = create(srv, {"name": "Lost", "size": "1G", "initiatorNames": [INIT]})
        half = create(srv, {"name": "Half created", "size": "1G", "initiatorNames": [INIT]})
        gone = create(srv, {"name": "Half deleted", "size": "1G", "initiatorNames": [INIT]})
        srv.stop()
        # a restart re-exports everything, same target names
        srv.start()
        srv.login()
        assert target_names(srv) == sorted(v["oeVolumeIQN"] for v in (keep, lost, half, gone))
        k = srv.request("GET", keep["uri"]).json()
        assert k["status"] == "OK" and k["eTag"] == keep["eTag"], k  # nothing rewritten
        assert srv.request("GET", keep["uri"] + "/iscsi-credentials").json() == cred
        srv.stop()
        # files missing; a create and a delete interrupted by a crash
        shutil.rmtree(os.path.join(srv.data_dir, "volumes", "os", lost["id"]))
        assert sqlite_set(srv, "os-volumes", half["id"], "$.state", "Creating")
        assert sqlite_set(srv, "os-volumes", gone["id"], "$.state", "Deleting")
        srv.start()
        srv.login()
        lo = srv.request("GET", lost["uri"]).json()
        assert lo["status"] == "Critical" and "missing" in lo["statusMessage"], lo
        assert lost["id"] in lo["statusMessage"], lo
        assert srv.request("GET", half["uri"]).status == 404
        assert srv.request("GET", gone["uri"]).status == 404
        assert os_dirs(srv) == [keep["id"]], os_dirs(srv)
        assert target_names(srv) == [keep["oeVolumeIQN"]]
        log = srv.read_log()
        assert "Lost" in log and "missing" in log and "was being created" in log, log[-3000:]
        assert cred["chapSecret"] not in log
        archive = srv.request("GET", "/rest/os-volumes/archive/Lost").body
        assert "Critical" in archive, archive
        # a Critical volume can still be changed and deleted
        assert srv.request("PUT", lost["uri"], {"description": "broken"}).status == 200
        delete(srv, lost)
        assert [m["name"] for m in srv.request("GET", "/rest/os-volumes").json()["members"]] == ["Keep"]


def test_iscsi_disabled():
    with harness.Server(iscsi_port=0) as srv:
        srv.login()
        assert "iSCSI disabled" in srv.read_log()
        v = create(srv, {"name": "Offline", "size": "1M", "initiatorNames": [INIT]})
        assert v["status"] == "Warning" and "disabled" in v["statusMessage"], v
        assert v["iscsi"]["portals"] == [] and v["oeVolumeIp"] == "", v
        t = targets(srv)
        assert t["enabled"] is False and t["members"] == [] and t["portals"] == [], t
        delete(srv, v)


def test_iscsi_listen_flags():
    def run(*args):
        return subprocess.run([harness.STREAMERD] + list(args), capture_output=True, text=True, timeout=30)

    for args in (["--iscsi-listen", "none", "--iscsi-listen", "127.0.0.1:3260"],
                 ["--iscsi-listen", "1.2.3"], ["--iscsi-listen", "127.0.0.1:99999"],
                 ["--iscsi-listen", "[::1"]):
        r = run(*args)
        assert r.returncode == 2 and "iscsi-listen" in r.stderr, (args, r)
    # an address without a port is the iSCSI port: it parses (the start then stops at the
    # data directory another streamerd holds, before anything listens)
    with harness.Server() as other:
        for portal in ("127.0.0.1", "[::1]", "localhost"):
            r = run("--data-dir", other.data_dir, "--listen", "127.0.0.1:1", "--insecure-http",
                    "--iscsi-listen", portal)
            assert r.returncode == 1 and "in use by another streamerd" in r.stderr, (portal, r)
    # the config file: "none" (without the harness's flag)
    class ConfServer(harness.Server):
        def args(self):
            a = super().args()
            i = a.index("--iscsi-listen")
            return a[:i] + a[i + 2:]

    srv = ConfServer(iscsi_port=0)
    try:
        conf = os.path.join(srv.tmp, "streamerd.conf")
        srv.extra_args = ["--config", conf]
        with open(conf, "w") as f:
            f.write("iscsi-listen = none\n")
        srv.start()
        assert "iSCSI disabled" in srv.read_log(), srv.read_log()
        assert srv.stop() == 0
    finally:
        srv.cleanup()
    r = run("--help")
    assert "--iscsi-listen ADDR[:PORT]" in r.stdout and "none" in r.stdout, r.stdout


# -- CLI -----------------------------------------------------------------------------------------------------
def test_cli_volume_and_target(srv):
    env = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token}

    def run(*args):
        return srv.cli(*args, env=env, input="")

    g = golden(srv, "CLI base")
    r = run("volume", "create", "--name", "cli-vol", "--golden-image", "CLI base", "--size", "64M",
            "--initiator", INIT, "--initiator", INIT2, "--chap")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    v = srv.request("GET", "/rest/os-volumes?filter=" + urllib.parse.quote("name='cli-vol'")).json()["members"][0]
    cred = srv.request("GET", v["uri"] + "/iscsi-credentials").json()
    assert v["oeVolumeIQN"] in out and "127.0.0.1:%d" % srv.iscsi_port in out and "LUN:         0" in out, out
    assert cred["chapSecret"] in out and cred["chapName"] in out, out  # shown once
    assert v["goldenVolumeUri"] == g["uri"] and v["size"] == 64 << 20, v
    r = run("volume", "list")
    assert r.returncode == 0 and "cli-vol" in r.stdout and "CLI base" in r.stdout and "64.0 MiB" in r.stdout, r.stdout
    r = run("volume", "show", "cli-vol")
    assert r.returncode == 0 and v["oeVolumeIQN"] in r.stdout and INIT2 in r.stdout, r.stdout
    assert cred["chapSecret"] not in r.stdout and "CLI base" in r.stdout, r.stdout
    r = run("--json", "volume", "show", v["id"])
    assert json.loads(r.stdout)["id"] == v["id"]
    r = run("volume", "credentials", "cli-vol")
    assert r.returncode == 0 and cred["chapSecret"] in r.stdout, r
    r = run("volume", "update", "cli-vol", "--name", "cli-vol-2", "--initiator", INIT, "--no-chap")
    assert r.returncode == 0 and "cli-vol-2" in r.stdout, r
    u = srv.request("GET", v["uri"]).json()
    assert u["iscsi"]["initiatorNames"] == [INIT] and u["iscsi"]["chap"] is False, u
    r = run("volume", "credentials", "cli-vol-2")
    assert r.returncode == 1 and "CHAP" in r.stderr, r
    # the target commands
    r = run("target", "list")
    assert r.returncode == 0 and v["oeVolumeIQN"] in r.stdout and "cli-vol-2" in r.stdout, r.stdout
    assert "127.0.0.1:%d" % srv.iscsi_port in r.stdout, r.stdout
    r = run("--json", "target", "list")
    assert json.loads(r.stdout)["members"][0]["osVolumeUri"] == v["uri"], r.stdout
    r = run("target", "sessions")
    assert r.returncode == 0 and "No iSCSI sessions" in r.stdout, r
    r = run("target", "sessions", "cli-vol-2", "--interval", "0.2")
    assert r.returncode == 0, r
    r = run("target", "sessions", "no-such-volume")
    assert r.returncode == 1, r
    # usage errors exit 2, server refusals 1
    for args in (["volume", "create", "--size", "1G", "--initiator", INIT],
                 ["volume", "create", "--name", "x", "--initiator", INIT],
                 ["volume", "create", "--name", "x", "--size", "1G"],
                 ["target", "sessions", "--interval", "-1"]):
        r = run(*args)
        assert r.returncode == 2, (args, r)
    r = run("volume", "create", "--name", "x", "--size", "1G", "--initiator", "not-an-iqn")
    assert r.returncode == 1 and "initiator" in r.stderr, r
    r = run("volume", "create", "--name", "y", "--size", "1M", "--initiator", INIT, "--no-wait")
    assert r.returncode == 0 and "task" in r.stdout, r
    # a deployment administrator creates with --chap: the secret needs an administrator
    dep = user(srv, "dep", "Deployment administrator")
    r = srv.cli("volume", "create", "--name", "dep-vol", "--size", "1M", "--initiator", INIT, "--chap",
                env={"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": dep}, input="")
    assert r.returncode == 0 and "volume credentials" in r.stderr, r
    r = run("volume", "delete", "cli-vol-2")
    assert r.returncode == 0 and "Deleted" in r.stdout, r
    assert srv.request("GET", v["uri"]).status == 404


# -- real initiators --------------------------------------------------------------------------------------------
def test_libiscsi_tools(srv):
    """iscsi-ls, iscsi-inq and iscsi-readcapacity16 from Debian's libiscsi-bin
    against created volumes: discovery shows an initiator only its targets,
    the ACL and CHAP are enforced (also after a PUT), the LUN has the
    volume's size, a deleted volume is gone."""
    assert shutil.which("iscsi-ls"), "apt-get install libiscsi-bin"
    me = "iqn.2024-11.org.streamer.test:initiator"
    stranger = "iqn.2024-11.org.streamer.test:stranger"
    v = create(srv, {"name": "Tools", "size": "64M", "initiatorNames": [me]})
    c = create(srv, {"name": "Tools chap", "size": "8M", "initiatorNames": [me], "chap": True})
    cred = srv.request("GET", c["uri"] + "/iscsi-credentials").json()
    portal = "127.0.0.1:%d" % srv.iscsi_port

    def tool(*args):
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60)

    def lun(vol, initiator=me, auth=""):
        return "iscsi://%s%s/%s/0" % (auth, portal, vol["oeVolumeIQN"])

    r = tool("iscsi-ls", "-i", me, "iscsi://%s" % portal)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert v["oeVolumeIQN"] in r.stdout and c["oeVolumeIQN"] in r.stdout, r.stdout
    r = tool("iscsi-ls", "-i", stranger, "iscsi://%s" % portal)
    assert v["oeVolumeIQN"] not in r.stdout and c["oeVolumeIQN"] not in r.stdout, r.stdout
    r = tool("iscsi-inq", "-i", me, lun(v))
    assert r.returncode == 0 and "DIRECT_ACCESS" in r.stdout, (r.stdout, r.stderr)
    r = tool("iscsi-readcapacity16", "-s", "-i", me, lun(v))
    assert r.returncode == 0 and r.stdout.split() == [str(64 << 20)], (r.stdout, r.stderr)
    r = tool("iscsi-inq", "-i", stranger, lun(v))
    assert r.returncode != 0, r
    # CHAP: required, and the credentials endpoint's secret works
    r = tool("iscsi-inq", "-i", me, lun(c))
    assert r.returncode != 0, r
    r = tool("iscsi-inq", "-i", me, lun(c, auth="%s%%%s@" % (cred["chapName"], cred["chapSecret"])))
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = tool("iscsi-inq", "-i", me, lun(c, auth="%s%%%s@" % (cred["chapName"], "wrong secret 1234")))
    assert r.returncode != 0, r
    # a PUT changes the ACL at once
    r = srv.request("PUT", v["uri"], {"initiatorNames": [stranger]})
    assert r.status == 200, r
    assert tool("iscsi-inq", "-i", me, lun(v)).returncode != 0
    assert tool("iscsi-inq", "-i", stranger, lun(v)).returncode == 0
    # a live session (iscsi-perf reads until stopped) shows in the API and the CLI ...
    perf = subprocess.Popen(["iscsi-perf", "-i", stranger, "-x", "0", "-t", "120", lun(v)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while True:
            t = [x for x in targets(srv)["members"] if x["targetName"] == v["oeVolumeIQN"]][0]
            if t["sessions"] and t["sessions"][0]["commands"] > 0:
                break
            assert perf.poll() is None and time.time() < deadline, (t, perf.poll())
            time.sleep(0.05)
        s = t["sessions"][0]
        assert s["initiatorName"] == stranger and s["connections"][0]["local"] == portal, s
        assert t["stats"]["commands"] > 0 and t["stats"]["readBytes"] > 0, t
        r = srv.cli("target", "sessions", "Tools", env={"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token})
        assert r.returncode == 0 and stranger in r.stdout and s["connections"][0]["peer"] in r.stdout, r
        # ... and DELETE ends it: the initiator is logged out and cannot come back
        delete(srv, v)
        out, err = perf.communicate(timeout=60)
        assert re.search(r"Target (not found|removed)", err), (out, err)
    finally:
        if perf.poll() is None:
            perf.kill()
            perf.wait()
    r = tool("iscsi-inq", "-i", stranger, lun(v))
    assert r.returncode != 0, r
    assert target_names(srv) == [c["oeVolumeIQN"]]
