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
VolumeSize for plans without a golden image, the second iSCSI NIC's address
(ipv4Address2 / netmask2 as _Initiator2.ip / .netmask, written by a plan into
a vfat image and read back over iSCSI with mtools), a failure injected at each
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
import struct
import subprocess
import tempfile
import time
import urllib.parse
import zipfile

import harness
import iscsi_client
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
    # a GET document sent back whole (password masked, server fields included): nothing redeploys
    r = srv.request("PUT", p3["uri"], p3, headers={"If-Match": p3["eTag"]})
    assert r.status == 202 and r.json()["name"] == "Update", r
    assert srv.wait_task(r.json()["uri"])["taskState"] == "Completed"
    r = srv.request("PUT", p3["uri"], p3, headers={"If-Match": "\"0/0\""})
    assert r.status == 412, r
    p3 = srv.request("GET", p2["uri"]).json()
    assert p3["osDeploymentSettings"]["osVolumeUri"] == vol2_uri, p3
    assert "ExamplePassword: pa55word" in file_of(srv, vol2_uri, "/EFI/BOOT/message.txt")

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
    assert "Attempt or Intentionally Fail" in t["data"]["log"] and "********" in t["data"]["log"], t
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


def test_hardware_second_nic_address(srv):
    """ipv4Address2 / netmask2: the second NIC's address (_Initiator2.ip and
    .netmask for plan scripts), validated like the first, only with a second
    MAC; a refused request changes nothing."""
    hw = hardware(srv, "mp", macs=[MAC, "52:54:00:00:00:02"], ipv4Address="10.1.0.9",
                  netmask="255.255.0.0", ipv4Address2="10.2.0.9", netmask2="255.255.255.0")
    assert (hw["ipv4Address2"], hw["netmask2"]) == ("10.2.0.9", "255.255.255.0"), hw
    assert srv.request("GET", hw["uri"]).json()["ipv4Address2"] == "10.2.0.9"
    one = hardware(srv, "one", macs=["52:54:00:00:00:03"])
    assert one["ipv4Address2"] is None and one["netmask2"] is None, one

    def refused(body, msg, method="POST", uri="/rest/server-hardware"):
        before = srv.request("GET", "/rest/server-hardware").json()["members"]
        r = srv.request(method, uri, body)
        err = r.json()
        assert r.status == 400 and err["errorCode"] == "INVALID_FIELD", (body, r)
        assert msg in err["message"], (msg, err)
        assert err["recommendedActions"] is not None, err
        assert srv.request("GET", "/rest/server-hardware").json()["members"] == before
        return err

    m2 = ["52:54:00:00:00:04", "52:54:00:00:00:05"]
    err = refused({"name": "b", "macAddresses": ["52:54:00:00:00:04"], "ipv4Address2": "10.2.0.1",
                   "netmask2": "255.255.255.0"}, '"ipv4Address2" is the address of the second NIC')
    assert "second MAC" in err["message"] and "macAddresses" in err["recommendedActions"][0], err
    refused({"name": "b", "macAddresses": ["52:54:00:00:00:04"], "netmask2": "255.255.255.0"},
            '"netmask2" is the address of the second NIC')
    refused({"name": "b", "macAddresses": m2, "ipv4Address2": "10.2.0.300"},
            '"ipv4Address2" "10.2.0.300" is not an IPv4 address')
    refused({"name": "b", "macAddresses": m2, "ipv4Address2": "10.2.0.1", "netmask2": "255.0.255.0"},
            '"netmask2" "255.0.255.0" is not an IPv4 netmask')
    refused({"name": "b", "macAddresses": m2, "ipv4Address2": "10.2.0.1 "}, "is not an IPv4 address")
    refused({"name": "b", "macAddresses": m2, "ipv4Address": "10.2.0.1", "ipv4Address2": "10.2.0.1"},
            "two NICs cannot share an address")
    r = srv.request("POST", "/rest/server-hardware", {"name": "b", "macAddresses": m2, "ipv4Address2": 10})
    assert r.status == 400 and '"ipv4Address2" must be a string' in r.json()["message"], r
    # PUT: checked on the resulting document
    refused({"ipv4Address2": "10.3.0.1"}, "lists no second MAC", "PUT", one["uri"])
    refused({"macAddresses": [MAC]}, "lists no second MAC", "PUT", hw["uri"])
    refused({"ipv4Address": "10.2.0.9"}, "two NICs cannot share an address", "PUT", hw["uri"])
    refused({"netmask2": "0.0.0.0"}, "is not an IPv4 netmask", "PUT", hw["uri"])
    r = srv.request("PUT", one["uri"], {"macAddresses": ["52:54:00:00:00:03", "52:54:00:00:00:06"],
                                        "ipv4Address2": "10.3.0.1", "netmask2": "255.255.255.128"},
                    headers={"If-Match": one["eTag"]})
    assert r.status == 200, r
    h = r.json()
    assert (h["ipv4Address2"], h["netmask2"], h["ipv4Address"]) == ("10.3.0.1", "255.255.255.128", None), h
    # other fields leave the addresses alone; "" removes them, then one MAC is enough again
    r = srv.request("PUT", one["uri"], {"description": "two NICs"})
    assert r.status == 200 and r.json()["ipv4Address2"] == "10.3.0.1", r
    r = srv.request("PUT", one["uri"], {"ipv4Address2": "", "netmask2": ""})
    assert r.status == 200 and r.json()["ipv4Address2"] is None and r.json()["netmask2"] is None, r
    r = srv.request("PUT", one["uri"], {"macAddresses": ["52:54:00:00:00:03"]})
    assert r.status == 200 and r.json()["macAddresses"] == ["52:54:00:00:00:03"], r
    # filterable like the other fields
    r = srv.request("GET", "/rest/server-hardware?filter=" + urllib.parse.quote("\"ipv4Address2='10.2.0.9'\""))
    assert r.status == 200 and [m["name"] for m in r.json()["members"]] == ["mp"], r


# -- small plans for the pipeline's failure cases and load -----------------------------------------
def small_setup(srv, content="echo deployed @Hostname@\n", name="Small", golden=True, bp_attrs=()):
    """A 1 MiB golden image of zeros and a one-step plan. Returns the deployment plan."""
    r = srv.request("POST", "/rest/plan-scripts", {"name": name + " script", "planType": "deploy",
                                                   "content": content, "description": ""})
    assert r.status == 201, r
    ps = r.json()
    r = srv.request("POST", "/rest/build-plans", {
        "name": name + " plan", "oeBuildPlanType": "deploy",
        "buildStep": [{"serialNumber": "1", "planScriptUri": ps["uri"]}],
        "customAttributes": [{"name": "Hostname", "type": "hostname", "value": "node"}] + list(bp_attrs)})
    assert r.status == 201, r
    bp = r.json()
    body = {"name": name, "oeBuildPlanURI": bp["uri"], "customAttributes": []}
    if golden:
        gi = tgi.upload_ok(srv, tgi.Body("zero.img", data=b"\0" * (1 << 20)),
                           "?name=" + urllib.parse.quote(name + " image"))
        body["goldenImageURI"] = gi["uri"]
    r = srv.request("POST", "/rest/deployment-plans", body)
    assert r.status == 201, r
    return r.json()


def restart(srv, env=None):
    srv.stop()
    srv.env = env
    srv.start()
    srv.login()


def mac(i):
    return "52:54:00:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)


def test_fault_at_each_step():
    with harness.Server(extra_args=["--fault-injection"]) as srv:
        srv.login()
        dp = small_setup(srv)
        hw = hardware(srv)
        # a first deploy failing at each step leaves nothing
        for step in ("clone", "plan", "export", "record"):
            restart(srv, {"STREAMER_FAULT": "deploy:" + step})
            t, _ = deploy(srv, "f-" + step, hw, dp, [{"name": "Hostname", "value": "n1"}], ok=False)
            (e,) = t["taskErrors"]
            assert 'failed at step "%s"' % step in e["message"], (step, e)
            assert "INJECTED_FAULT" in (e["errorCode"], e["message"]) or "injected fault" in e["message"], e
            consistent(srv, 0)
            assert srv.request("GET", hw["uri"]).json()["serverProfileUri"] is None
        # a deployed profile; a redeploy failing at each step leaves it as it was
        restart(srv, None)
        _, p = deploy(srv, "web", hw, dp, [{"name": "Hostname", "value": "n1"}])
        vol = p["osDeploymentSettings"]["osVolumeUri"]
        for step in ("clone", "plan", "export", "record"):
            restart(srv, {"STREAMER_FAULT": "deploy:" + step})
            t, p2 = redeploy(srv, p, {"osDeploymentSettings": {"osCustomAttributes": [
                {"name": "Hostname", "value": "n2"}]}}, ok=False)
            assert 'failed at step "%s"' % step in t["taskErrors"][0]["message"], t
            assert p2["state"] == "Normal" and p2["osDeploymentSettings"]["osVolumeUri"] == vol, p2
            assert p2["osDeploymentSettings"]["osCustomAttributes"] == p["osDeploymentSettings"]["osCustomAttributes"]
            consistent(srv, 1)
        # the old volume cannot be removed after a redeploy: the next start removes it
        restart(srv, {"STREAMER_FAULT": "deploy:remove-old"})
        t, p3 = redeploy(srv, p, {"osDeploymentSettings": {"osCustomAttributes": [
            {"name": "Hostname", "value": "n3"}]}})
        assert p3["osDeploymentSettings"]["osVolumeUri"] != vol, p3
        assert srv.request("GET", vol).status == 200  # still there, owned by no deployment
        restart(srv, None)
        assert srv.request("GET", vol).status == 404
        consistent(srv, 1)
        # a delete that fails keeps the profile and its volume
        restart(srv, {"STREAMER_FAULT": "deploy:delete"})
        r = srv.request("DELETE", p3["uri"])
        assert r.status == 202, r
        t = srv.wait_task(r.json()["uri"])
        assert t["taskState"] == "Error" and 'step "delete"' in t["taskErrors"][0]["message"], t
        p4 = srv.request("GET", p3["uri"]).json()
        assert p4["state"] == "Normal" and p4["status"] == "Warning", p4
        consistent(srv, 1)
        # without --fault-injection the variable does nothing
        srv.stop()
        srv.extra_args = []
        srv.env = {"STREAMER_FAULT": "deploy:delete"}
        srv.start()
        srv.login()
        delete_profile(srv, p4)
        consistent(srv, 0)


def test_parallel_deploys_and_retries(srv):
    n = 200
    dp = small_setup(srv)
    hws = [hardware(srv, "n%03d" % i, macs=[mac(i + 1)]) for i in range(n)]

    def one(i):
        r = post_profile(srv, "p%03d" % i, hws[i], dp, [{"name": "Hostname", "value": "node-%d" % i}])
        assert r.status == 202, r
        return r.json()["uri"]

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        tasks = list(ex.map(one, range(n)))
    # a retried request: the same profile again is refused, nothing changes
    r = post_profile(srv, "p000", hws[0], dp, [{"name": "Hostname", "value": "node-0"}])
    assert r.status == 409 and r.json()["errorCode"] in ("NAME_CONFLICT", "HARDWARE_IN_USE"), r
    r = post_profile(srv, "p000-again", hws[0], dp, [{"name": "Hostname", "value": "node-0"}])
    assert r.status == 409 and r.json()["errorCode"] == "HARDWARE_IN_USE", r
    for u in tasks:
        t = srv.wait_task(u, timeout=300)
        assert t["taskState"] == "Completed", t
    consistent(srv, n)
    vols = volumes(srv)
    assert len({v["oeVolumeIQN"] for v in vols}) == n
    profiles = srv.request("GET", "/rest/server-profiles").json()["members"]
    # the archive of one: its own hostname
    p = [x for x in profiles if x["name"] == "p123"][0]
    vid = p["osDeploymentSettings"]["osVolumeUri"].rsplit("/", 1)[1]
    assert "deployed node-123" in srv.request("GET", "/rest/os-volumes/archive/" + vid).body
    # deleting them all in parallel, with a busy retry of each
    def gone(p):
        r = srv.request("DELETE", p["uri"])
        assert r.status == 202, r
        again = srv.request("DELETE", p["uri"])
        assert again.status in (409, 404), again
        return r.json()["uri"]

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        tasks = list(ex.map(gone, profiles))
    for u in tasks:
        assert srv.wait_task(u, timeout=300)["taskState"] == "Completed"
    consistent(srv, 0)


def wait_for(cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_kill_during_deploy_and_redeploy():
    with harness.Server() as srv:
        srv.login()
        dp = small_setup(srv)
        slow = small_setup(srv, content="!sleep 60\necho slow @Hostname@\n", name="Slow")
        hw = hardware(srv)
        # 1. a first deploy killed while its plan sleeps: nothing left
        r = post_profile(srv, "web", hw, slow, [{"name": "Hostname", "value": "n1"}])
        assert r.status == 202, r
        task = r.json()["uri"]
        wait_for(lambda: os_dirs(srv) and "slow" not in srv.request("GET", task).body
                 and srv.request("GET", task).json()["taskState"] == "Running")
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.proc = None
        srv.start()
        srv.login()
        t = srv.request("GET", task).json()
        assert t["taskState"] == "Error" and "interrupted" in json.dumps(t).lower(), t
        consistent(srv, 0)
        assert srv.request("GET", hw["uri"]).json()["serverProfileUri"] is None
        deploy_dir = os.path.join(srv.data_dir, "volumes", "deploy")
        assert not os.path.isdir(deploy_dir) or os.listdir(deploy_dir) == []
        # 2. a redeploy killed mid-plan: the profile back on its volume, the new one gone
        _, p = deploy(srv, "web", hw, dp, [{"name": "Hostname", "value": "n1"}])
        vol = p["osDeploymentSettings"]["osVolumeUri"]
        r = srv.request("PUT", p["uri"], {"osDeploymentSettings": {"osDeploymentPlanUri": slow["uri"]}})
        assert r.status == 202, r
        task = r.json()["uri"]
        wait_for(lambda: len(os_dirs(srv)) == 2)
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.proc = None
        srv.start()
        srv.login()
        assert srv.request("GET", task).json()["taskState"] == "Error"
        p2 = srv.request("GET", p["uri"]).json()
        assert p2["state"] == "Normal" and p2["osDeploymentSettings"]["osVolumeUri"] == vol, p2
        assert p2["osDeploymentSettings"]["osDeploymentPlanUri"] == dp["uri"], p2
        consistent(srv, 1)
        assert not os.path.isdir(deploy_dir) or os.listdir(deploy_dir) == []
        # the machine still boots the old volume: its target is live
        vol_doc = srv.request("GET", vol).json()
        assert vol_doc["oeVolumeIQN"] in target_names(srv)
        delete_profile(srv, p2)
        consistent(srv, 0)


def test_empty_volume_nic_and_system_attributes(srv):
    content = ("echo ip=@MgmtNIC.ipaddress@ mode=@MgmtNIC.constraint@ dhcp=@MgmtNIC.dhcp@ "
               "mac=@_Initiator1.mac@ hwip=@_Initiator1.ip@ mac2=@_Initiator2.mac@ size=@VolumeSize@\n")
    # the build plan declares the NIC and VolumeSize
    nic = {"name": "MgmtNIC", "type": "nic", "value": None,
           "constraints": json.dumps({"ipv4static": True, "ipv4dhcp": True, "ipv4disable": False,
                                      "parameters": ["ipaddress", "netmask", "gateway", "dns1", "mac"]})}
    vs = {"name": "VolumeSize", "type": "number", "value": "",
          "constraints": json.dumps({"minimum": "1", "maximum": "51200"})}
    dp = small_setup(srv, content=content, name="Empty", golden=False, bp_attrs=[nic, vs])
    hw = hardware(srv, "n1", macs=[MAC, "52:54:00:00:00:02"], ipv4Address="10.1.0.9", netmask="255.255.0.0")
    # no VolumeSize; a bad static address; disabled not allowed: all at once
    r = post_profile(srv, "e", hw, dp, [{"name": "MgmtNIC.constraint", "value": "disabled"}])
    assert r.status == 400 and len(r.json()["nestedErrors"]) == 2, r
    r = post_profile(srv, "e", hw, dp, [{"name": "VolumeSize", "value": "16"},
                                        {"name": "MgmtNIC.constraint", "value": "static"},
                                        {"name": "MgmtNIC.ipaddress", "value": "10.0.0.256"}])
    assert r.status == 400 and r.json()["errorCode"] == "INVALID_ATTRIBUTES", r
    t, p = deploy(srv, "e", hw, dp, [{"name": "VolumeSize", "value": "16"},
                                     {"name": "MgmtNIC.ipaddress", "value": "10.0.0.7"},
                                     {"name": "MgmtNIC.netmask", "value": "255.255.255.0"}])
    vol = srv.request("GET", p["osDeploymentSettings"]["osVolumeUri"]).json()
    assert vol["size"] == 16 << 20 and vol["goldenVolumeUri"] is None, vol
    log = srv.request("GET", "/rest/os-volumes/archive/" + vol["id"]).body
    assert "ip=10.0.0.7 mode=static dhcp=false mac=%s hwip=10.1.0.9 mac2=52:54:00:00:00:02" % MAC in log, log
    # redeploy in DHCP mode: the address is empty for the script
    t, p = redeploy(srv, p, {"osDeploymentSettings": {"osCustomAttributes": [
        {"name": "MgmtNIC.constraint", "value": "dhcp"}]}})
    vol = srv.request("GET", p["osDeploymentSettings"]["osVolumeUri"]).json()
    log = srv.request("GET", "/rest/os-volumes/archive/" + vol["id"]).body
    assert "ip= mode=dhcp dhcp=true" in log, log
    consistent(srv, 1)


NICS_SCRIPT = """mount /dev/sda1 /
write /nics.txt "ip1=@_Initiator1.ip@ mask1=@_Initiator1.netmask@ ip2=@_Initiator2.ip@ mask2=@_Initiator2.netmask@ mac2=@_Initiator2.mac@ stamp=@Stamp:one@"
write /iscsi.sh "esxcfg-vmknic -a -i @_Initiator2.ip@ -n @_Initiator2.netmask@ iSCSI-PG2"
"""
ESP = (1 << 20, 8 << 20)  # the vfat partition of vfat_disk: offset, size


def vfat_disk(tmp):
    """A 9 MiB MBR disk whose partition 1 is vfat made by mkfs.vfat."""
    img, esp = os.path.join(tmp, "nics.img"), os.path.join(tmp, "esp.img")
    with open(img, "wb") as f:
        f.truncate(ESP[0] + ESP[1])
    subprocess.run(["sfdisk", "-q", img], check=True, input=b"label: dos\nstart=2048, type=c\n")
    subprocess.run(["mkfs.vfat", "-C", esp, str(ESP[1] // 1024)], check=True, capture_output=True)
    with open(esp, "rb") as f, open(img, "r+b") as g:
        g.seek(ESP[0])
        g.write(f.read())
    return img


def volume_file(srv, hw, vol, path, tmp):
    """A file of the deployed volume's vfat partition: the partition read over
    iSCSI as the machine (its initiator name and CHAP), the file read by mtools."""
    cred = credentials(srv, vol)
    c = iscsi_client.Conn("127.0.0.1", srv.iscsi_port)
    try:
        c.login(hw["initiatorName"], vol["oeVolumeIQN"], chap=(cred["chapName"], cred["chapSecret"]))
        part = b""
        for off in range(ESP[0], ESP[0] + ESP[1], 1 << 18):
            st, data, sense, _ = c.command(struct.pack(">BBIBHB", 0x28, 0, off // 512, 0, 512, 0),
                                           read_len=1 << 18)
            assert st == 0, sense
            part += data
    finally:
        c.close()
    fat = os.path.join(tmp, "part-%s.img" % vol["id"])
    with open(fat, "wb") as f:
        f.write(part)
    return subprocess.run(["mtype", "-i", fat, "::" + path], capture_output=True, check=True).stdout


def test_deploy_second_nic_address(srv):
    """A plan script writing _Initiator1/_Initiator2 addresses into the deployed
    image (as HPE's ESXi iSCSI multipath scripts do): the machine's
    ipv4Address2 / netmask2 are in the volume, read back over iSCSI with mtools.
    The addresses may change while the profile uses the machine: the deployed
    volume stays as it is, the next deployment gets the new values."""
    assert shutil.which("mtype") and shutil.which("mkfs.vfat"), "apt-get install mtools dosfstools"
    tmp = tempfile.mkdtemp(prefix="streamer-nic2-", dir=srv.tmp)
    gi = tgi.upload_ok(srv, tgi.Body("nics.img", path=vfat_disk(tmp)), "?name=NICs%20image")
    r = srv.request("POST", "/rest/plan-scripts", {"name": "NICs script", "planType": "deploy",
                                                   "content": NICS_SCRIPT, "description": ""})
    assert r.status == 201, r
    r = srv.request("POST", "/rest/build-plans", {
        "name": "NICs plan", "oeBuildPlanType": "deploy",
        "buildStep": [{"serialNumber": "1", "planScriptUri": r.json()["uri"]}],
        "customAttributes": [{"name": "Stamp", "type": "string", "value": "one"}]})
    assert r.status == 201, r
    r = srv.request("POST", "/rest/deployment-plans", {"name": "NICs", "oeBuildPlanURI": r.json()["uri"],
                                                       "goldenImageURI": gi["uri"], "customAttributes": []})
    assert r.status == 201, r
    dp = r.json()
    hw = hardware(srv, "mp1", macs=[MAC, "52:54:00:00:00:02"], ipv4Address="10.1.0.9", netmask="255.255.0.0",
                  ipv4Address2="10.2.0.9", netmask2="255.255.255.0")
    _, p = deploy(srv, "mp1", hw, dp)
    vol = srv.request("GET", p["osDeploymentSettings"]["osVolumeUri"]).json()
    want = b"ip1=10.1.0.9 mask1=255.255.0.0 ip2=10.2.0.9 mask2=255.255.255.0 mac2=52:54:00:00:00:02 stamp=one"
    assert volume_file(srv, hw, vol, "/nics.txt", tmp) == want
    assert volume_file(srv, hw, vol, "/iscsi.sh", tmp) == b"esxcfg-vmknic -a -i 10.2.0.9 -n 255.255.255.0 iSCSI-PG2"

    # in use: the addresses change, the CHAP secret still cannot; the volume is not touched
    r = srv.request("PUT", hw["uri"], {"ipv4Address2": "10.2.0.10", "netmask2": "255.255.0.0"},
                    headers={"If-Match": srv.request("GET", hw["uri"]).json()["eTag"]})
    assert r.status == 200 and r.json()["ipv4Address2"] == "10.2.0.10", r
    assert r.json()["serverProfileUri"] == p["uri"], r
    r = srv.request("PUT", hw["uri"], {"ipv4Address2": "10.2.0.11", "chapSecret": "another-secret1"})
    assert r.status == 409 and r.json()["errorCode"] == "HARDWARE_IN_USE", r
    assert srv.request("GET", hw["uri"]).json()["ipv4Address2"] == "10.2.0.10"  # nothing half-written
    assert srv.request("GET", vol["uri"]).json() == vol
    assert srv.request("GET", p["uri"]).json()["osDeploymentSettings"]["osVolumeUri"] == vol["uri"]
    assert volume_file(srv, hw, vol, "/nics.txt", tmp) == want

    # the next deployment personalizes with the new addresses
    _, p2 = redeploy(srv, p, {"osDeploymentSettings": {"osCustomAttributes": [{"name": "Stamp", "value": "two"}]}})
    vol2 = srv.request("GET", p2["osDeploymentSettings"]["osVolumeUri"]).json()
    assert vol2["uri"] != vol["uri"], vol2
    assert volume_file(srv, hw, vol2, "/nics.txt", tmp) == \
        b"ip1=10.1.0.9 mask1=255.255.0.0 ip2=10.2.0.10 mask2=255.255.0.0 mac2=52:54:00:00:00:02 stamp=two"
    # a machine without a second address: empty values, as before
    hw3 = hardware(srv, "single", macs=["52:54:00:00:00:03"], ipv4Address="10.1.0.3", netmask="255.255.255.0")
    _, p3 = deploy(srv, "single", hw3, dp)
    vol3 = srv.request("GET", p3["osDeploymentSettings"]["osVolumeUri"]).json()
    assert volume_file(srv, hw3, vol3, "/nics.txt", tmp) == \
        b"ip1=10.1.0.3 mask1=255.255.255.0 ip2= mask2= mac2= stamp=one"
    consistent(srv, 2)


def test_boot_connections_per_portal_and_advertise():
    """One boot connection per portal; a wildcard portal is advertised as each
    --iscsi-advertise address (or the host's own address), never 0.0.0.0."""
    wild = harness.free_port()
    with harness.Server(extra_args=["--iscsi-listen", "0.0.0.0:%d" % wild, "--iscsi-advertise", "127.0.0.1",
                                    "--iscsi-advertise", "127.0.0.2"]) as srv:
        srv.login()
        dp = small_setup(srv)
        hw = hardware(srv)
        _, p = deploy(srv, "multi", hw, dp, [{"name": "Hostname", "value": "n1"}])
        conns = p["bootConnections"]
        got = [(c["id"], c["priority"], c["targetIp"], c["targetPort"]) for c in conns]
        assert got == [(1, "Primary", "127.0.0.1", srv.iscsi_port), (2, "Secondary", "127.0.0.1", wild),
                       (3, "Secondary", "127.0.0.2", wild)], got
        assert len({c["targetName"] for c in conns}) == 1, conns
        # every advertised path logs in
        vol = srv.request("GET", p["osDeploymentSettings"]["osVolumeUri"]).json()
        cred = credentials(srv, vol)
        for c in conns:
            r = tool("iscsi-inq", "-i", hw["initiatorName"], "iscsi://%s%%%s@%s:%d/%s/0" % (
                cred["chapName"], cred["chapSecret"], c["targetIp"], c["targetPort"], c["targetName"]))
            assert r.returncode == 0, (c, r.stderr)
    with harness.Server(extra_args=["--iscsi-listen", "0.0.0.0:%d" % harness.free_port()]) as srv:
        srv.login()
        dp = small_setup(srv)
        _, p = deploy(srv, "auto", hardware(srv), dp, [{"name": "Hostname", "value": "n1"}])
        ips = [c["targetIp"] for c in p["bootConnections"]]
        assert len(ips) == 2 and "0.0.0.0" not in ips and all(ips), ips
    # a bad address stops streamerd at start
    s = harness.Server(extra_args=["--iscsi-advertise", "not-an-address"])
    try:
        s.start(wait=False)
        assert s.proc.wait(10) == 2, s.read_log()
        assert "iscsi-advertise" in s.read_log()
    finally:
        s.proc = None
        s.cleanup()
    # without an iSCSI target there is nothing to boot from
    with harness.Server(iscsi_port=0) as srv:
        srv.login()
        dp = small_setup(srv)
        r = post_profile(srv, "x", hardware(srv), dp)
        assert r.status == 409 and r.json()["errorCode"] == "ISCSI_DISABLED", r


def test_move_profile_to_another_machine(srv):
    """A profile moves to a spare machine with its OS volume (the stateless
    server's point): the volume's target admits only the new machine's
    initiator and CHAP, boot answers follow, the old machine is freed; refused
    (nothing changed) while the old machine is still logged in, to a machine
    in use, or together with a redeploy. The volume's dependentArtifacts name
    the profile and the machine's initiator, HPE's {name, serverIqn, uri}."""
    import iscsi_client
    import test_boot
    dp = small_setup(srv)
    hw1 = hardware(srv, "rack1-a", macs=[mac(1)])
    hw2 = hardware(srv, "rack1-spare", macs=[mac(2)])
    hw3 = hardware(srv, "rack1-c", macs=[mac(3)])
    t, p = deploy(srv, "db1", hw1, dp, [{"name": "Hostname", "value": "db1"}])
    _, other = deploy(srv, "db2", hw3, dp, [{"name": "Hostname", "value": "db2"}])
    vuri = p["osDeploymentSettings"]["osVolumeUri"]
    vol = srv.request("GET", vuri).json()
    assert vol["dependentArtifacts"] == [{"name": "db1", "serverIqn": hw1["initiatorName"],
                                          "uri": p["uri"]}], vol
    listed = [v for v in volumes(srv) if v["uri"] == vuri][0]
    assert listed["dependentArtifacts"] == vol["dependentArtifacts"], listed
    # a rename shows in the volume's dependentArtifacts
    r = srv.request("PUT", p["uri"], {"name": "db1-prod"})
    assert r.status == 202 and srv.wait_task(r.json()["uri"])["taskState"] == "Completed", r
    vol = srv.request("GET", vuri).json()
    assert vol["dependentArtifacts"][0]["name"] == "db1-prod", vol
    c1 = credentials(srv, vol)
    target = vol["oeVolumeIQN"]

    def snapshot():
        return (srv.request("GET", p["uri"]).json(), srv.request("GET", vuri).json(),
                [srv.request("GET", h["uri"]).json() for h in (hw1, hw2, hw3)],
                credentials(srv, vol))

    def same(a, b):
        strip = lambda d: {k: v for k, v in d.items() if k not in ("allocatedBytes",)}  # noqa: E731
        return strip(a[0]) == strip(b[0]) and strip(a[1]) == strip(b[1]) and a[2] == b[2] and a[3] == b[3]

    def refused(body, status, code):
        s0 = snapshot()
        r = srv.request("PUT", p["uri"], body)
        assert r.status == status and r.json()["errorCode"] == code, r
        assert same(s0, snapshot()), "a refused move changed something"
        return r.json()

    # the old machine still logged in: refused, its session keeps working
    c = iscsi_client.Conn("127.0.0.1", srv.iscsi_port)
    try:
        c.login(hw1["initiatorName"], target, chap=(c1["chapName"], c1["chapSecret"]))
        err = refused({"serverHardwareUri": hw2["uri"]}, 409, "OS_VOLUME_LOGGED_IN")
        assert hw1["initiatorName"] in err["message"], err
        st = c.command(bytes(6))[0]  # TEST UNIT READY: still served
        assert st == 0, st
    finally:
        c.close()
    # other refusals, nothing changed
    refused({"serverHardwareUri": hw3["uri"]}, 409, "HARDWARE_IN_USE")
    refused({"serverHardwareUri": "/rest/server-hardware/nope"}, 400, "HARDWARE_NOT_FOUND")
    refused({"serverHardwareUri": hw2["uri"],
             "osDeploymentSettings": {"osCustomAttributes": [{"name": "Hostname", "value": "x"}]}},
            400, "PROFILE_MOVE_WITH_REDEPLOY")
    refused({"serverHardwareUri": hw2["uri"], "name": other["name"]}, 409, "NAME_CONFLICT")

    # the move (the session of the old machine is gone once it logged out)
    def sessions():
        ts = srv.request("GET", "/rest/iscsi/targets").json()["members"]
        return [s for m in ts if m["targetName"] == target for s in m["sessions"]]
    deadline = time.time() + 20
    while sessions() and time.time() < deadline:
        time.sleep(0.1)
    r = srv.request("PUT", p["uri"], {"serverHardwareUri": hw2["uri"]})
    assert r.status == 202 and r.json()["name"] == "Update", r
    t = srv.wait_task(r.json()["uri"])
    assert t["taskState"] == "Completed", t
    assert t["progressUpdates"][-1]["statusUpdate"] == \
        'Server profile "db1-prod" moved to server hardware "rack1-spare"', t
    p2 = srv.request("GET", p["uri"]).json()
    assert p2["serverHardwareUri"] == hw2["uri"] and p2["state"] == "Normal", p2
    assert p2["osDeploymentSettings"]["osVolumeUri"] == vuri, p2  # the same volume, not redeployed
    (bc,) = p2["bootConnections"]
    assert bc["initiatorName"] == hw2["initiatorName"] and bc["chapName"] == "rack1-spare", bc
    assert bc["targetName"] == target, bc
    vol2 = srv.request("GET", vuri).json()
    assert vol2["iscsi"]["initiatorNames"] == [hw2["initiatorName"]], vol2
    assert vol2["iscsi"]["chapName"] == "rack1-spare", vol2
    assert vol2["dependentArtifacts"] == [{"name": "db1-prod", "serverIqn": hw2["initiatorName"],
                                           "uri": p["uri"]}], vol2
    c2 = credentials(srv, vol2)
    assert c2["chapName"] == "rack1-spare" and c2["chapSecret"] != c1["chapSecret"], c2
    assert "deployed db1" in srv.request("GET", "/rest/os-volumes/archive/" + vol2["id"]).body
    # the target: the new machine gets in, the old one no longer
    lun = "iscsi://%%s127.0.0.1:%d/%s/0" % (srv.iscsi_port, target)
    r = tool("iscsi-inq", "-i", hw2["initiatorName"], lun % ("%s%%%s@" % (c2["chapName"], c2["chapSecret"])))
    assert r.returncode == 0 and "DIRECT_ACCESS" in r.stdout, (r.stdout, r.stderr)
    r = tool("iscsi-inq", "-i", hw1["initiatorName"], lun % ("%s%%%s@" % (c1["chapName"], c1["chapSecret"])))
    assert r.returncode != 0, r.stdout
    # the machines' links and the boot answers follow
    h1, h2 = (srv.request("GET", h["uri"]).json() for h in (hw1, hw2))
    assert h1["serverProfileUri"] is None and h1["state"] == "Unused", h1
    assert h2["serverProfileUri"] == p["uri"] and h2["state"] == "ProfileApplied", h2
    st, _, body = test_boot.get(srv.port, "/boot/ipxe?mac=" + mac(2))
    assert st == 200 and target in body and "sanboot" in body, body
    st, _, body = test_boot.get(srv.port, "/boot/ipxe?mac=" + mac(1))
    assert st == 200 and target not in body and "exit" in body, body
    consistent(srv, 2)
    # and back, with a rename in the same request; the freed machine can go
    r = srv.request("PUT", p["uri"], {"serverHardwareUri": hw1["uri"], "name": "db1"})
    assert r.status == 202 and srv.wait_task(r.json()["uri"])["taskState"] == "Completed", r
    vol3 = srv.request("GET", vuri).json()
    assert vol3["dependentArtifacts"] == [{"name": "db1", "serverIqn": hw1["initiatorName"],
                                           "uri": p["uri"]}], vol3
    assert srv.request("DELETE", hw2["uri"]).status == 204
    # kept across a restart; a volume stored without them (made before they were kept) gets
    # them at the next start
    restart(srv)
    assert srv.request("GET", vuri).json()["dependentArtifacts"] == vol3["dependentArtifacts"]
    srv.stop()
    import sqlite3
    db = sqlite3.connect(os.path.join(srv.data_dir, "streamer.db"), timeout=10)
    try:
        cur = db.execute("UPDATE docs SET body = json_set(body, '$.dependentArtifacts', json('[]')) "
                         "WHERE coll = 'os-volumes' AND id = ?", (vol3["id"],))
        db.commit()
        assert cur.rowcount == 1
    finally:
        db.close()
    srv.start()
    srv.login()
    assert srv.request("GET", vuri).json()["dependentArtifacts"] == vol3["dependentArtifacts"]
    r = tool("iscsi-inq", "-i", hw1["initiatorName"], lun % ("%s%%%s@" % (c1["chapName"], c1["chapSecret"])))
    assert r.returncode == 0, (r.stdout, r.stderr)
    consistent(srv, 2)
