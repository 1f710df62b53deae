"""test_cli_deploy.py — the CLI's machines and deployments: streamer hardware,
streamer deploy (its local check of --attr values against HPE's Developer
bundle deployment plan, as the server checks them), streamer profile.

The local check: unknown names, system attributes, wrong types and broken
constraints are all listed at once, exit 2, and nothing reaches the server
(the server's log shows no POST /rest/server-profiles). `--check` prints the
visible attributes with their effective values (passwords masked).
"""
import json
import re
import zipfile

import harness
import test_golden_images as tgi
import test_validate as tv

DP_FILE = "646daa3c-22b9-4e51-b2ca-a4349262693b_deploymentplan.json"
GOOD = ["--attr", "ExampleString1=Hello from node1", "--attr", "ExampleNumber1=7",
        "--attr", "ExamplePassword=pa55word", "--attr", "ExampleFQDN=node1.example.com",
        "--attr", "DeploymentTesting=#Attempt_OS_Deployment"]


def import_developer_plan(srv):
    """The Developer bundle's golden image, plan scripts and build plans (as
    test_validate does) and its example UEFI deployment plan. Returns (golden
    image, deployment plan)."""
    gi, plans = tv.import_developer(srv)
    with zipfile.ZipFile(tgi.DEV_BUNDLE) as b:
        d = json.loads(b.read(DP_FILE))
    body = {"type": "OEDeploymentPlan", "name": d["name"], "description": d["description"],
            "hpProvided": False, "oeBuildPlanURI": plans[d["oeBuildPlanURI"]]["uri"],
            "goldenImageURI": gi["uri"], "customAttributes": d["customAttributes"]}
    r = srv.request("POST", "/rest/deployment-plans", body)
    assert r.status == 201, r
    return gi, r.json()


def cli(srv, *args, input=None):
    return srv.cli("--server", srv.url, *args, input=input)


def login(srv):
    p = cli(srv, "login", "--user", "administrator", "--password-file", "-", input=srv.admin_password() + "\n")
    assert p.returncode == 0, p


def test_cli_deploy_local_check(srv):
    gi, dp = import_developer_plan(srv)
    login(srv)
    p = cli(srv, "deploy", "web1", "--hardware", "node1", "--plan", dp["name"],
            "--attr", "ExampleNumber1=abc", "--attr", "Nope=1", "--attr", "_Initiator1.ip=10.0.0.5",
            "--attr", "ExamplePassword=muchtoolongsecret", "--attr", "ExampleFQDN=bad fqdn",
            "--attr", "ExampleIPv4Address=300.1.1.1", "--attr", "ExampleOption=Option9")
    assert p.returncode == 2, p
    err = p.stderr
    assert "7 custom attribute problem(s)" in err and "nothing was sent" in err, err
    for want in ('"Nope" is not declared', '"_Initiator1.ip" is a system attribute',
                 '"ExampleNumber1": value "abc"', '"ExamplePassword"', '"ExampleFQDN"',
                 '"ExampleIPv4Address"', '"ExampleOption"'):
        assert want in err, (want, err)
    assert "muchtoolongsecret" not in p.stdout
    assert "POST /rest/server-profiles" not in srv.read_log()
    # --check with good values: the visible attributes and their values, passwords masked
    p = cli(srv, "deploy", "web1", "--plan", dp["name"], "--check", *GOOD)
    assert p.returncode == 0, p
    out = p.stdout
    assert 'golden image HPE Developer' in out, out
    rows = {l.split()[0]: l.split()[1:] for l in out.splitlines()[2:] if l.startswith("  ") and len(l.split()) > 1}
    assert rows["ExampleNumber1"] == ["number", "7"], rows
    assert rows["ExampleNumber2"] == ["number", "9999"], rows  # the plan's own value
    assert rows["ExamplePassword"] == ["password", "********"], rows
    assert rows["DeploymentTesting"] == ["string", "#Attempt_OS_Deployment"], rows
    assert "pa55word" not in out and "valid for deployment plan" in out, out
    p = cli(srv, "--json", "deploy", "web1", "--plan", dp["name"], "--check", *GOOD)
    assert p.returncode == 0, p
    merged = {a["name"]: a for a in json.loads(p.stdout)}
    assert merged["ExampleString1"]["value"] == "Hello from node1", merged
    # usage errors
    for args in (["deploy", "web1", "--plan", dp["name"]],                     # no --hardware
                 ["deploy", "web1", "--hardware", "node1"],                     # no --plan
                 ["deploy", "web1", "--hardware", "node1", "--plan", dp["name"], "--attr", "novalue"],
                 ["hardware", "add", "node1", "--mac", "52:54:00:12:34:5"],
                 ["hardware", "add", "node1", "--mac", "52:54:00-12:34:56"],
                 ["hardware", "add", "node1"],
                 ["hardware", "add", "node1", "--mac", "52:54:00:12:34:56", "--ip", "10.0.0.5"]):
        p = cli(srv, *args)
        assert p.returncode == 2, (args, p)
    p = cli(srv, "deploy", "web1", "--hardware", "node1", "--plan", "no such plan")
    assert p.returncode == 1 and "no deployment plan" in p.stderr, p


def test_cli_hardware_deploy_profiles(srv):
    gi, dp = import_developer_plan(srv)
    login(srv)
    p = cli(srv, "hardware", "add", "node1", "--mac", "52-54-00-AA-BB-01", "--mac", "52:54:00:aa:bb:02",
            "--ip", "10.0.0.51", "--netmask", "255.255.255.0")
    assert p.returncode == 0 and 'Registered server hardware "node1"' in p.stdout, p
    assert "52:54:00:aa:bb:01, 52:54:00:aa:bb:02" in p.stdout, p.stdout
    p = cli(srv, "hardware", "add", "node2", "--mac", "52:54:00:aa:bb:02")  # a MAC belongs to one machine
    assert p.returncode == 1, p
    p = cli(srv, "hardware", "list")
    assert p.returncode == 0 and "node1" in p.stdout and "52:54:00:aa:bb:01,52:54:00:aa:bb:02" in p.stdout, p
    p = cli(srv, "hardware", "show", "node1")
    assert p.returncode == 0 and "(none)" in p.stdout and "/boot/ipxe?mac=52:54:00:aa:bb:01" in p.stdout, p
    assert "10.0.0.51" in p.stdout, p.stdout
    st, _, body = __import__("test_boot").get(srv.port, "/boot/ipxe?mac=52:54:00:aa:bb:02")
    assert st == 200 and body.endswith("\nexit\n"), body
    assert "-> exit-no-profile" in srv.read_log()

    p = cli(srv, "deploy", "web1", "--hardware", "node1", "--plan", dp["name"], *GOOD)
    assert p.returncode == 0, (p, srv.read_log()[-3000:])
    assert 'Deployed server profile "web1"' in p.stdout and "state Normal" in p.stdout, p.stdout
    assert "Primary" in p.stdout and "/boot/ipxe?mac=52:54:00:aa:bb:01" in p.stdout, p.stdout
    assert "pa55word" not in p.stdout + p.stderr
    p = cli(srv, "profile", "list")
    assert p.returncode == 0 and re.search(r"web1\s+Normal\s+\S+\s+node1\s+User - Developer", p.stdout), p.stdout
    p = cli(srv, "profile", "show", "web1")
    assert p.returncode == 0, p
    assert "node1 (/rest/server-hardware/" in p.stdout and "Hello from node1" in p.stdout, p.stdout
    assert "pa55word" not in p.stdout and "Primary" in p.stdout, p.stdout
    p = cli(srv, "hardware", "show", "node1")
    assert p.returncode == 0 and "web1 (Normal, /rest/server-profiles/" in p.stdout, p.stdout
    st, _, body = __import__("test_boot").get(srv.port, "/boot/ipxe?mac=52-54-00-AA-BB-02")
    assert st == 200 and "\nsanboot iscsi:127.0.0.1::%d:0:" % srv.iscsi_port in body, body
    # deploy of an existing profile redeploys it (a new OS volume; the old one goes)
    vols = srv.request("GET", "/rest/os-volumes").json()["members"]
    assert len(vols) == 1, vols
    p = cli(srv, "deploy", "web1", "--plan", dp["name"], "--attr", "ExampleString1=Hello again")
    assert p.returncode == 0, (p, srv.read_log()[-3000:])
    assert 'Redeployed server profile "web1"' in p.stdout and "state Normal" in p.stdout, p.stdout
    vols2 = srv.request("GET", "/rest/os-volumes").json()["members"]
    assert len(vols2) == 1 and vols2[0]["uri"] != vols[0]["uri"], (vols, vols2)
    p = cli(srv, "profile", "show", "web1")
    assert p.returncode == 0 and "Hello again" in p.stdout and "Hello from node1" not in p.stdout, p.stdout
    # deploy does not move a profile to another machine (nothing changes); profile move does
    assert cli(srv, "hardware", "add", "node9", "--mac", "52:54:00:aa:bb:09").returncode == 0
    p = cli(srv, "deploy", "web1", "--hardware", "node9", "--plan", dp["name"])
    assert p.returncode == 2 and "streamer profile move" in p.stderr, p
    assert srv.request("GET", "/rest/os-volumes").json()["members"] == vols2
    p = cli(srv, "profile", "move", "web1")
    assert p.returncode == 2 and "--hardware" in p.stderr, p
    p = cli(srv, "profile", "move", "web1", "--hardware", "node9")
    assert p.returncode == 0 and 'Moved server profile "web1" to "node9"' in p.stdout, (p, srv.read_log()[-2000:])
    assert "host.node9." in p.stdout and "Primary" in p.stdout, p.stdout
    vols3 = srv.request("GET", "/rest/os-volumes").json()["members"]
    assert [v["uri"] for v in vols3] == [v["uri"] for v in vols2], vols3  # the same volume
    assert vols3[0]["dependentArtifacts"][0]["serverIqn"].startswith("iqn.2024-11.org.streamer:host.node9."), vols3
    st, _, body = __import__("test_boot").get(srv.port, "/boot/ipxe?mac=52:54:00:aa:bb:09")
    assert st == 200 and "sanboot" in body, body
    p = cli(srv, "profile", "move", "web1", "--hardware", "node1")
    assert p.returncode == 0 and 'to "node1"' in p.stdout, p
    p = cli(srv, "profile", "move", "web1", "--hardware", "node1")
    assert p.returncode == 0 and "already" in p.stdout, p
    assert cli(srv, "hardware", "delete", "node9").returncode == 0
    # a machine in use cannot be forgotten; a second profile on it is refused
    assert cli(srv, "hardware", "delete", "node1").returncode == 1
    p = cli(srv, "deploy", "web2", "--hardware", "node1", "--plan", dp["name"], *GOOD)
    assert p.returncode == 1, p
    p = cli(srv, "profile", "delete", "web1")
    assert p.returncode == 0 and 'Deleted server profile "web1"' in p.stdout, p
    assert srv.request("GET", "/rest/os-volumes").json()["members"] == []
    st, _, body = __import__("test_boot").get(srv.port, "/boot/ipxe?mac=52:54:00:aa:bb:01")
    assert body.endswith("\nexit\n"), body
    p = cli(srv, "profile", "show", "web1")
    assert p.returncode == 1 and "streamer profile list" in p.stderr, p
    # the plan's own default makes the deployment fail: exit 1, no OS volume left
    p = cli(srv, "deploy", "web3", "--hardware", "node1", "--plan", dp["name"], "--attr", "ExampleString1=x")
    assert p.returncode == 1, p
    assert srv.request("GET", "/rest/os-volumes").json()["members"] == []
    cli(srv, "profile", "delete", "web3")
    p = cli(srv, "hardware", "delete", "node1")
    assert p.returncode == 0, p
    p = cli(srv, "hardware", "show", "node1")
    assert p.returncode == 1 and "streamer hardware list" in p.stderr, p


def test_cli_hardware_second_nic(srv):
    """--ip2 / --netmask2 (the second iSCSI NIC, _Initiator2.ip / .netmask) on
    hardware add and hardware update; local usage errors exit 2 and send
    nothing; the server's refusals exit 1 and change nothing."""
    login(srv)
    for args in (["--mac", "52:54:00:aa:cc:01", "--ip2", "10.2.0.9", "--netmask2", "255.255.255.0"],
                 ["--mac", "52:54:00:aa:cc:01", "--mac", "52:54:00:aa:cc:02", "--ip2", "10.2.0.9"],
                 ["--mac", "52:54:00:aa:cc:01", "--mac", "52:54:00:aa:cc:02", "--netmask2", "255.0.0.0"]):
        p = cli(srv, "hardware", "add", "mp", *args)
        assert p.returncode == 2, (args, p)
    p = cli(srv, "hardware", "add", "mp", "--mac", "52:54:00:aa:cc:01", "--ip2", "10.2.0.9", "--netmask2", "255.0.0.0")
    assert "give its MAC as a second --mac" in p.stderr, p
    assert "POST /rest/server-hardware" not in srv.read_log()
    p = cli(srv, "hardware", "add", "mp", "--mac", "52:54:00:aa:cc:01", "--mac", "52:54:00:aa:cc:02",
            "--ip2", "10.2.0.300", "--netmask2", "255.255.255.0")
    assert p.returncode == 1 and '"ipv4Address2" "10.2.0.300" is not an IPv4 address' in p.stderr, p
    assert srv.request("GET", "/rest/server-hardware").json()["members"] == []
    p = cli(srv, "--json", "hardware", "add", "mp", "--mac", "52:54:00:aa:cc:01", "--mac", "52:54:00:aa:cc:02",
            "--ip", "10.1.0.9", "--netmask", "255.255.0.0", "--ip2", "10.2.0.9", "--netmask2", "255.255.255.0")
    assert p.returncode == 0, p
    hw = json.loads(p.stdout)
    assert (hw["ipv4Address"], hw["ipv4Address2"], hw["netmask2"]) == ("10.1.0.9", "10.2.0.9", "255.255.255.0"), hw
    p = cli(srv, "hardware", "show", "mp")
    assert p.returncode == 0, p
    assert re.search(r"ipv4Address2:\s+10\.2\.0\.9\n", p.stdout) and re.search(r"netmask2:\s+255\.255\.255\.0\n",
                                                                              p.stdout), p.stdout
    # update: the fields given, with the machine's eTag
    p = cli(srv, "hardware", "update", "mp", "--ip2", "10.2.0.10", "--netmask2", "255.255.0.0")
    assert p.returncode == 0 and 'Updated server hardware "mp"' in p.stdout, p
    h = srv.request("GET", hw["uri"]).json()
    assert (h["ipv4Address2"], h["netmask2"], h["ipv4Address"]) == ("10.2.0.10", "255.255.0.0", "10.1.0.9"), h
    assert h["macAddresses"] == hw["macAddresses"] and h["initiatorName"] == hw["initiatorName"], h
    for args in ([], ["--ip2", "10.2.0.11"], ["--mac", "52:54:00:aa:cc"]):
        assert cli(srv, "hardware", "update", "mp", *args).returncode == 2, args
    p = cli(srv, "hardware", "update", "mp", "--mac", "52:54:00:aa:cc:01")  # the second NIC's address stays
    assert p.returncode == 1 and "lists no second MAC" in p.stderr, p
    assert srv.request("GET", hw["uri"]).json() == h
    p = cli(srv, "hardware", "update", "mp", "--mac", "52:54:00:aa:cc:01", "--ip2", "", "--netmask2", "")
    assert p.returncode == 0, p
    h = srv.request("GET", hw["uri"]).json()
    assert h["macAddresses"] == ["52:54:00:aa:cc:01"] and h["ipv4Address2"] is None and h["netmask2"] is None, h
    p = cli(srv, "hardware", "update", "nosuch", "--description", "x")
    assert p.returncode == 1, p
