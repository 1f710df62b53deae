"""test_deploy.py — server hardware, server profiles and the deploy pipeline, without VMs.

HPE's Developer bundle as published (its golden image, plan scripts, build
plans, and a deployment plan made from its example one) deployed through
POST /rest/server-profiles: the OS volume's file personalized (read back
through the browse endpoints), the deployment log as the volume's archive
with the password masked, the iSCSI target live for the machine's initiator
with its CHAP credentials only (libiscsi's iscsi-ls / iscsi-inq), redeploy
(new volume, the old one removed, values carried), delete (volume, target
and the machine's link gone). Also: attribute violations (all at once,
nothing created), NIC attributes by sub-parameter, system attributes,
VolumeSize for plans without a golden image, a failure injected at each
pipeline step (streamerd --fault-injection), 200 parallel deploys, retried
requests, and a daemon killed during a deploy whose plan sleeps in a host
command, then restarted: no orphan volume or target.

Helpers (developer_setup, hardware, deploy, ...) are meant for other tests too.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import zipfile

import harness
import test_golden_images as tgi
import test_validate as tv

DEPLOY_BP = tv.DEPLOY
GOOD = [{"name": "ExampleString1", "value": "Hello from a deployment"},
        {"name": "ExampleNumber1", "value": 7},
        {"name": "ExamplePassword", "value": "pa55word"},
        {"name": "ExampleFQDN", "value": "host.example.com"},
        {"name": "DeploymentTesting", "value": "#Attempt_OS_Deployment"}]
MAC = "52:54:00:12:34:56"


# -- helpers --------------------------------------------------------------------------------------
def developer_setup(srv):
    """The Developer bundle's golden image and build plans, and a deployment
    plan made from the bundle's example UEFI one. Returns (gi, bp, dp)."""
    gi, plans = tv.import_developer(srv)
    bp = plans[DEPLOY_BP]
    with zipfile.ZipFile(tgi.DEV_BUNDLE) as b:
        dps = [json.loads(b.read(n)) for n in b.namelist() if n.endswith("_deploymentplan.json")]
    d = [x for x in dps if x["oeBuildPlanURI"] == DEPLOY_BP and not x["hpProvided"]][0]
    d.update({"uri": None, "id": None, "oeBuildPlanURI": bp["uri"], "goldenImageURI": gi["uri"],
              "name": "Developer UEFI deploy"})
    r = srv.request("POST", "/rest/deployment-plans", d)
    assert r.status == 201, r
    return gi, bp, r.json()


def hardware(srv, name="node1", macs=(MAC,), **extra):
    body = {"name": name, "macAddresses": list(macs)}
    body.update(extra)
    r = srv.request("POST", "/rest/server-hardware", body)
    assert r.status == 201, r
    hw = r.json()
    assert r.headers["location"] == hw["uri"], r.headers
    return hw


def post_profile(srv, name, hw, dp, attrs=(), token=None):
    return srv.request("POST", "/rest/server-profiles",
                       {"name": name, "serverHardwareUri": hw["uri"],
                        "osDeploymentSettings": {"osDeploymentPlanUri": dp["uri"],
                                                 "osCustomAttributes": list(attrs)}},
                       token=token)


def deploy(srv, name, hw, dp, attrs=(), ok=True, timeout=120):
    """POST a profile, wait for its task; returns (task, profile or None)."""
    r = post_profile(srv, name, hw, dp, attrs)
    assert r.status == 202, r
    t = r.json()
    assert t["name"] == "Deploy" and r.headers["location"] == t["uri"], t
    assert t["associatedResource"]["resourceCategory"] == "server-profiles", t
    t = srv.wait_task(t["uri"], timeout=timeout)
    if ok:
        assert t["taskState"] == "Completed" and t["taskErrors"] == [], t
        p = srv.request("GET", t["associatedResource"]["resourceUri"])
        assert p.status == 200, p
        return t, p.json()
    assert t["taskState"] == "Error", t
    return t, None


def redeploy(srv, profile, body, ok=True):
    r = srv.request("PUT", profile["uri"], body)
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"], timeout=120)
    assert (t["taskState"] == "Completed") == ok, t
    return t, srv.request("GET", profile["uri"]).json()


def delete_profile(srv, profile):
    r = srv.request("DELETE", profile["uri"])
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"])
    assert t["taskState"] == "Completed", t
    assert srv.request("GET", profile["uri"]).status == 404
    return t


def file_of(srv, vol_uri, path, device="/dev/sda1"):
    r = srv.request("GET", "%s/files/content?device=%s&path=%s" % (vol_uri, device, path))
    assert r.status == 200, r
    return r.body


def volumes(srv):
    return srv.request("GET", "/rest/os-volumes").json()["members"]


def target_names(srv):
    return sorted(m["targetName"] for m in srv.request("GET", "/rest/iscsi/targets").json()["members"])


def os_dirs(srv):
    d = os.path.join(srv.data_dir, "volumes", "os")
    return sorted(n for n in os.listdir(d) if not n.startswith(".")) if os.path.isdir(d) else []


def consistent(srv, profiles_expected):
    """Every OS volume belongs to a profile that points to it, every target to
    a volume, no stray volume directory, every machine's link right."""
    vols = volumes(srv)
    profiles = srv.request("GET", "/rest/server-profiles").json()["members"]
    assert len(profiles) == profiles_expected, profiles
    by_uri = {p["uri"]: p for p in profiles}
    for v in vols:
        p = by_uri.get(v.get("serverProfileUri"))
        assert p and p["osDeploymentSettings"]["osVolumeUri"] == v["uri"], (v, p)
        assert p["state"] == "Normal", p
    assert len(vols) == len(profiles), (vols, profiles)
    assert target_names(srv) == sorted(v["oeVolumeIQN"] for v in vols)
    assert os_dirs(srv) == sorted(v["id"] for v in vols)
    for h in srv.request("GET", "/rest/server-hardware").json()["members"]:
        sp = h["serverProfileUri"]
        assert sp is None or sp in by_uri, h
    for p in profiles:
        h = srv.request("GET", p["serverHardwareUri"]).json()
        assert h["serverProfileUri"] == p["uri"], (h, p)


def tool(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def credentials(srv, vol):
    r = srv.request("GET", vol["uri"] + "/iscsi-credentials")
    assert r.status == 200, r
    return r.json()


# -- the deploy pipeline on HPE's Developer bundle ----------------------------------------------------
def test_deploy_redeploy_delete(srv):
    assert shutil.which("iscsi-inq"), "apt-get install libiscsi-bin"
    gi, bp, dp = developer_setup(srv)
    hw = hardware(srv, "node1", macs=[MAC.upper(), "52-54-00-AB-CD-EF"], ipv4Address="10.0.0.5",
                  netmask="255.255.255.0")
    assert hw["macAddresses"] == [MAC, "52:54:00:ab:cd:ef"], hw
    assert "chapSecret" not in json.dumps(hw) and "secrets" not in hw, hw
    assert hw["initiatorName"].startswith("iqn.2024-11.org.streamer:host.node1."), hw
    assert hw["chapName"] == "node1" and hw["serverProfileUri"] is None, hw

    t, p = deploy(srv, "web1", hw, dp, GOOD)
    assert p["state"] == "Normal" and p["status"] == "OK" and p["taskUri"] == t["uri"], p
    ods = p["osDeploymentSettings"]
    assert ods["osDeploymentPlanUri"] == dp["uri"], ods
    pw = [a for a in ods["osCustomAttributes"] if a["name"] == "ExamplePassword"]
    assert pw == [{"name": "ExamplePassword", "value": ""}], ods  # masked
    assert "pa55word" not in srv.request("GET", p["uri"]).body
    assert "pa55word" not in srv.request("GET", "/rest/server-profiles").body
    (c,) = p["bootConnections"]
    assert c["priority"] == "Primary" and c["id"] == 1, c
    assert c["initiatorName"] == hw["initiatorName"] and c["chapName"] == "node1", c
    assert c["targetIp"] == "127.0.0.1" and c["targetPort"] == srv.iscsi_port, c
    assert c["targetLun"] == 0, c
    assert t["data"]["bootConnections"] == p["bootConnections"], t
    h = srv.request("GET", hw["uri"]).json()
    assert h["serverProfileUri"] == p["uri"], h

    # the OS volume: owned by the profile, bound to the machine, personalized
    vol = srv.request("GET", ods["osVolumeUri"]).json()
    assert vol["serverProfileUri"] == p["uri"] and vol["deploymentPlanUri"] == dp["uri"], vol
    assert vol["goldenVolumeUri"] == gi["uri"] and vol["state"] == "OK", vol
    assert vol["iscsi"]["initiatorNames"] == [hw["initiatorName"]], vol
    assert vol["iscsi"]["chap"] is True and vol["iscsi"]["chapName"] == "node1", vol
    assert vol["oeVolumeIQN"] == c["targetName"], (vol, c)
    msg = file_of(srv, vol["uri"], "/EFI/BOOT/message.txt")
    assert "has been personalized" in msg and "ExampleString1: Hello from a deployment" in msg, msg
    assert "ExampleNumber1: 7" in msg and "ExampleFQDN: host.example.com" in msg, msg
    gmsg = file_of(srv, gi["uri"], "/EFI/BOOT/message.txt")
    assert "personalized" not in gmsg, gmsg  # the golden image is untouched
    # the deployment log is the volume's archive, the password masked
    r = srv.request("GET", "/rest/os-volumes/archive/" + vol["id"])
    assert r.status == 200, r
    assert "Personalize message.txt content:" in r.body and "deployment log" in r.body, r.body
    assert "pa55word" not in r.body and "********" in r.body, r.body
    # OS volumes of a profile are managed through it
    r = srv.request("DELETE", vol["uri"])
    assert r.status == 409 and r.json()["errorCode"] == "OS_VOLUME_IN_USE", r
    r = srv.request("PUT", vol["uri"], {"initiatorNames": ["iqn.2024-01.com.example:other"]})
    assert r.status == 409 and r.json()["errorCode"] == "OS_VOLUME_IN_USE", r
    # the machine cannot go, nor change its initiator, while used
    r = srv.request("DELETE", hw["uri"])
    assert r.status == 409 and r.json()["errorCode"] == "HARDWARE_IN_USE", r
    r = srv.request("PUT", hw["uri"], {"chapSecret": "another-secret1"})
    assert r.status == 409 and r.json()["errorCode"] == "HARDWARE_IN_USE", r

    # the target: the machine's initiator with its CHAP credentials, nobody else
    cred = credentials(srv, vol)
    assert cred["chapName"] == "node1", cred
    portal = "127.0.0.1:%d" % srv.iscsi_port
    lun = "iscsi://%%s%s/%s/0" % (portal, c["targetName"])
    auth = "%s%%%s@" % (cred["chapName"], cred["chapSecret"])
    r = tool("iscsi-inq", "-i", hw["initiatorName"], lun % auth)
    assert r.returncode == 0 and "DIRECT_ACCESS" in r.stdout, (r.stdout, r.stderr)
    assert tool("iscsi-inq", "-i", hw["initiatorName"], lun % "").returncode != 0
    assert tool("iscsi-inq", "-i", "iqn.2024-01.com.example:stranger", lun % auth).returncode != 0
    r = tool("iscsi-ls", "-i", hw["initiatorName"], "iscsi://%s%s" % (auth, portal))
    assert c["targetName"] in r.stdout, (r.stdout, r.stderr)

    # redeploy: another value -> a new volume; the old one and its target gone; values carried
    t2, p2 = redeploy(srv, p, {"osDeploymentSettings": {"osCustomAttributes": [
        {"name": "ExampleString1", "value": "Second deployment"}]}})
    assert t2["name"] == "Redeploy", t2
    vol2_uri = p2["osDeploymentSettings"]["osVolumeUri"]
    assert vol2_uri != vol["uri"] and p2["state"] == "Normal", p2
    assert srv.request("GET", vol["uri"]).status == 404
    msg2 = file_of(srv, vol2_uri, "/EFI/BOOT/message.txt")
    assert "ExampleString1: Second deployment" in msg2 and "ExampleNumber1: 7" in msg2, msg2
    assert "ExamplePassword: pa55word" in msg2, msg2  # carried although GETs mask it
    assert c["targetName"] not in target_names(srv)
    consistent(srv, 1)
    # the same values again: no redeploy, a rename only
    r = srv.request("PUT", p2["uri"], {"name": "web1-renamed"})
    assert r.status == 202 and r.json()["name"] == "Update", r
    assert srv.wait_task(r.json()["uri"])["taskState"] == "Completed"
    p3 = srv.request("GET", p2["uri"]).json()
    assert p3["name"] == "web1-renamed" and p3["osDeploymentSettings"]["osVolumeUri"] == vol2_uri

    # delete: volume, target and link gone
    delete_profile(srv, p3)
    assert srv.request("GET", vol2_uri).status == 404
    assert volumes(srv) == [] and target_names(srv) == [] and os_dirs(srv) == []
    h = srv.request("GET", hw["uri"]).json()
    assert h["serverProfileUri"] is None, h
    r = srv.request("DELETE", hw["uri"])
    assert r.status == 204, r


def test_attribute_violations_create_nothing(srv):
    gi, bp, dp = developer_setup(srv)
    hw = hardware(srv)
    bad = [{"name": "ExampleNumber1", "value": "seven"},
           {"name": "ExamplePassword", "value": "much-too-long-password"},
           {"name": "ExampleFQDN", "value": "not a host"},
           {"name": "NoSuchAttribute", "value": "x"},
           {"name": "_Initiator1.ip", "value": "10.0.0.9"}]
    r = post_profile(srv, "bad", hw, dp, bad)
    assert r.status == 400, r
    err = r.json()
    assert err["errorCode"] == "INVALID_ATTRIBUTES", err
    names = " ".join(n["message"] for n in err["nestedErrors"])
    assert len(err["nestedErrors"]) == 5, err
    for word in ("ExampleNumber1", "ExamplePassword", "ExampleFQDN", "NoSuchAttribute", "_Initiator1.ip"):
        assert word in names, (word, err)
    assert "much-too-long-password" not in r.body
    assert srv.request("GET", "/rest/server-profiles").json()["members"] == []
    assert volumes(srv) == [] and os_dirs(srv) == []
    assert srv.request("GET", hw["uri"]).json()["serverProfileUri"] is None

    def refused(body, status, code):
        r = srv.request("POST", "/rest/server-profiles", body)
        assert r.status == status and r.json()["errorCode"] == code, (body, r)

    ods = {"osDeploymentPlanUri": dp["uri"], "osCustomAttributes": GOOD}
    refused({"name": "x", "serverHardwareUri": "/rest/server-hardware/nope", "osDeploymentSettings": ods},
            400, "HARDWARE_NOT_FOUND")
    refused({"name": "x", "serverHardwareUri": hw["uri"],
             "osDeploymentSettings": {"osDeploymentPlanUri": "/rest/deployment-plans/nope"}},
            400, "DEPLOYMENT_PLAN_NOT_FOUND")
    refused({"name": "x", "serverHardwareUri": hw["uri"]}, 400, "INVALID_DEPLOYMENT_PLAN")
    refused({"serverHardwareUri": hw["uri"], "osDeploymentSettings": ods}, 400, "INVALID_NAME")
    refused([], 400, "INVALID_BODY")
    # a plan that fails ("Fail_OS_Deployment", the bundle's default) leaves nothing
    t, _ = deploy(srv, "fails", hw, dp, GOOD[:4], ok=False)
    (e,) = t["taskErrors"]
    assert 'step "plan"' in e["message"] and "Fail_OS_Deployment" in e["message"], e
    assert "pa55word" not in json.dumps(t), t
    consistent(srv, 0)
    # roles: read-only users read, cannot deploy
    r = srv.request("POST", "/rest/users", {"userName": "ro", "password": "password-ro",
                                            "permissions": [{"roleName": "Read only"}]})
    assert r.status == 201, r
    tok = srv.login("ro", "password-ro")
    assert post_profile(srv, "x", hw, dp, GOOD, token=tok).status == 403
    assert srv.request("POST", "/rest/server-hardware", {"name": "n", "macAddresses": ["52:54:00:00:00:09"]},
                       token=tok).status == 403
    assert srv.request("GET", "/rest/server-hardware", token=tok).status == 200


def test_hardware_rules(srv):
    hw = hardware(srv, "rack1 node 7", macs=["52:54:00:00:00:01"], chapSecret="secret-secret")
    assert hw["chapName"] == "rack1-node-7", hw
    assert hw["initiatorName"].startswith("iqn.2024-11.org.streamer:host.rack1-node-7."), hw

    def refused(body, status, code, method="POST", uri="/rest/server-hardware"):
        r = srv.request(method, uri, body)
        assert r.status == status and r.json()["errorCode"] == code, (body, r)
        assert "secret-secret" not in r.body and "short" not in r.body.replace("shorter", "")

    refused({"name": "b", "macAddresses": ["52:54:00:00:00:01"]}, 409, "MAC_CONFLICT")
    refused({"name": "rack1 node 7", "macAddresses": ["52:54:00:00:00:02"]}, 409, "NAME_CONFLICT")
    refused({"name": "b", "macAddresses": []}, 400, "INVALID_MAC")
    refused({"name": "b", "macAddresses": ["52:54:00:00:00"]}, 400, "INVALID_MAC")
    refused({"name": "b", "macAddresses": ["01:00:5e:00:00:01"]}, 400, "INVALID_MAC")
    refused({"name": "b", "macAddresses": ["52:54:00:00:00:03"], "initiatorName": "bad name"}, 400,
            "INVALID_INITIATOR")
    refused({"name": "b", "macAddresses": ["52:54:00:00:00:03"], "chapSecret": "short"}, 400,
            "INVALID_CHAP")
    refused({"name": "b", "macAddresses": ["52:54:00:00:00:03"], "ipv4Address": "10.0.0.300"}, 400,
            "INVALID_FIELD")
    refused({"name": "b", "macAddresses": ["52:54:00:00:00:03"], "netmask": "255.0.255.0"}, 400,
            "INVALID_FIELD")
    refused({"name": "b", "macAddresses": ["52:54:00:00:00:03"], "colour": "red"}, 400,
            "UNKNOWN_FIELD")
    r = srv.request("PUT", hw["uri"], {"macAddresses": ["52:54:00:00:00:04", "52:54:00:00:00:05"],
                                       "initiatorName": "iqn.2024-01.com.example:n7"},
                    headers={"If-Match": hw["eTag"]})
    assert r.status == 200, r
    h = r.json()
    assert h["macAddresses"] == ["52:54:00:00:00:04", "52:54:00:00:00:05"], h
    assert h["initiatorName"] == "iqn.2024-01.com.example:n7", h
    r = srv.request("PUT", hw["uri"], {"name": "x"}, headers={"If-Match": hw["eTag"]})
    assert r.status == 412, r
    r = srv.request("GET", "/rest/server-hardware?filter=" + urllib.parse.quote("\"name='rack1 node 7'\""))
    assert r.status == 200 and r.json()["count"] == 1, r
    # the secret is not searchable
    r = srv.request("GET", "/rest/server-hardware?filter=" +
                    urllib.parse.quote("\"secrets.chapSecret='secret-secret'\""))
    assert r.status in (200, 400) and (r.status == 400 or r.json()["count"] == 0), r
    assert srv.request("DELETE", hw["uri"]).status == 204
    assert srv.request("GET", hw["uri"]).status == 404
    # the deployment group
    g = srv.request("GET", "/rest/deployment-groups").json()
    assert g["count"] == 1 and g["members"][0]["name"] == "default", g
    assert srv.request("GET", g["members"][0]["uri"]).status == 200
    assert srv.request("GET", "/rest/deployment-groups/nope").status == 404
