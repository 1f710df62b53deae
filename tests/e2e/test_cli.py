"""test_cli.py — the `streamer` command-line client against a real streamerd.

Functions taking `srv` get a fresh HTTP server with the administrator logged
in (srv.token); most commands run with STREAMER_SERVER/STREAMER_TOKEN set so
that they do not depend on the login cache, which test_login_* covers. The
task-wait tests use a small stub task server defined here, because no
endpoint of streamerd creates tasks yet.
"""
import http.server
import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import tempfile
import threading

import harness


# -- helpers ----------------------------------------------------------------
def run(srv, *args, env=None, input="", token=True):
    """Run the CLI against srv; input="" keeps it from prompting on a TTY."""
    e = {"STREAMER_SERVER": srv.url}
    if token:
        e["STREAMER_TOKEN"] = srv.token
    if env:
        e.update(env)
    return srv.cli(*args, env=e, input=input)


def show(r):
    return "exit %d\n--- stdout\n%s\n--- stderr\n%s" % (r.returncode, r.stdout, r.stderr)


def ok(r):
    assert r.returncode == 0, show(r)
    return r


def fails(r, code, pattern=None):
    assert r.returncode == code, "expected exit %d\n%s" % (code, show(r))
    if pattern:
        assert re.search(pattern, r.stderr), "stderr does not match %r\n%s" % (pattern, show(r))
    return r


def js(srv, *args):
    r = ok(run(srv, "--json", *args))
    return json.loads(r.stdout)


def write(srv, name, text):
    path = os.path.join(srv.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def no_secret(srv, r, *secrets):
    for s in (srv.token,) + secrets:
        if s:
            assert s not in r.stdout and s not in r.stderr, "a secret was printed\n" + show(r)


def attr_map(attrs):
    return {a["name"]: a for a in attrs}


def standalone_cli(*args, env=None):
    """Run the CLI without any server and with an empty HOME."""
    home = tempfile.mkdtemp(prefix="streamer-cli-")
    try:
        e = dict(os.environ)
        e.update({"HOME": home, "STREAMER_SERVER": "http://127.0.0.1:%d" % harness.free_port()})
        for k in ("XDG_CONFIG_HOME", "STREAMER_TOKEN", "STREAMER_INSECURE"):
            e.pop(k, None)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if env:
            e.update(env)
        return subprocess.run([harness.STREAMER] + list(args), input="", capture_output=True,
                              text=True, env=e, timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- login, session cache, logout ---------------------------------------------
def test_login_session_file_and_logout(srv):
    password = srv.admin_password()
    pwfile = write(srv, "admin.pw", password + "\n")
    wrong = write(srv, "wrong.pw", "not-the-password\n")
    session = os.path.join(srv.tmp, "home", ".config", "streamer", "session.json")

    r = fails(srv.cli("login", "--server", srv.url, "--password-file", wrong, input=""), 1,
              r"error: .*invalid user name or password")
    assert not os.path.exists(session)

    r = ok(srv.cli("login", "--server", srv.url, "--user", "administrator",
                   "--password-file", pwfile, input=""))
    assert "Logged in to %s as administrator" % srv.url in r.stdout
    st = os.stat(session)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(session)).st_mode) == 0o700
    with open(session) as f:
        cached = json.load(f)
    assert cached["server"] == srv.url and cached["user"] == "administrator"
    token = cached["token"]
    assert token and token not in r.stdout + r.stderr and password not in r.stdout + r.stderr
    assert srv.request("GET", "/rest/plan-scripts", token=token).status == 200

    # Later commands use the cached server and token; global flags go anywhere.
    ok(srv.cli("plan-script", "list", input=""))
    out = json.loads(ok(srv.cli("plan-script", "list", "--json", input="")).stdout)
    assert out["members"] == []
    # STREAMER_TOKEN overrides the cache.
    fails(srv.cli("plan-script", "list", env={"STREAMER_TOKEN": "bogus"}, input=""), 3,
          r"streamer login")

    r = ok(srv.cli("logout", input=""))
    assert not os.path.exists(session)
    assert srv.request("GET", "/rest/plan-scripts", token=token).status == 401
    fails(srv.cli("plan-script", "list", "--server", srv.url, input=""), 3,
          r"not logged in.*\n.*streamer login")

    # STREAMER_PASSWORD and XDG_CONFIG_HOME; no password and no terminal: usage error.
    xdg = os.path.join(srv.tmp, "xdg")
    ok(srv.cli("login", env={"STREAMER_SERVER": srv.url, "STREAMER_PASSWORD": password,
                             "XDG_CONFIG_HOME": xdg}, input=""))
    st = os.stat(os.path.join(xdg, "streamer", "session.json"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    fails(srv.cli("login", "--server", srv.url, input=""), 2, r"no password")
    # --password-file - reads standard input.
    ok(srv.cli("login", "--server", srv.url, "--password-file", "-", input=password + "\n"))
    ok(srv.cli("plan-script", "list", input=""))


def test_login_over_tls_cacert_and_insecure():
    with harness.Server(tls=True) as s:
        pw = os.path.join(s.tmp, "pw")
        with open(pw, "w") as f:
            f.write(s.admin_password())
        cert = os.path.join(s.data_dir, "tls", "cert.pem")
        fails(s.cli("login", "--server", s.url, "--password-file", pw, input=""), 3,
              r"TLS.*\n.*--cacert")
        ok(s.cli("login", "--server", s.url, "--password-file", pw, "--cacert", cert, input=""))
        ok(s.cli("plan-script", "list", input=""))  # the cached session keeps --cacert
        home2 = os.path.join(s.tmp, "home2")
        ok(s.cli("login", "-k", "--server", s.url, "--password-file", pw, input="", home=home2))
        ok(s.cli("build-plan", "list", input="", home=home2))  # and --insecure
        # Plain HTTP to the TLS port: cannot talk to it, exit 3 with a hint.
        fails(s.cli("plan-script", "list", "--server", s.url.replace("https:", "http:"),
                    env={"STREAMER_TOKEN": "x"}, input=""), 3, r"HTTPS")


# -- plan scripts ---------------------------------------------------------------
SCRIPT = """# web setup
echo "@DomainName:example.com@" > /etc/domain
hostnamectl set-hostname "@HostName@"
for s in "${servers[@]}"; do echo "$@" root@localhost; done
echo "server @NtpServer:10.0.0.1@" >> /etc/ntp.conf
echo "@DomainName@ again"
"""


def test_plan_script_lifecycle(srv):
    f = write(srv, "web.gfs", SCRIPT)
    r = ok(run(srv, "plan-script", "create", "--name", "web setup", "--type", "deploy",
               "--file", f, "--description", "sets the host up"))
    assert 'Created plan script "web setup"' in r.stdout
    assert "DomainName, HostName, NtpServer" in r.stdout

    ps = js(srv, "plan-script", "show", "web setup")
    assert ps["content"] == SCRIPT and ps["planType"] == "deploy"
    assert json.loads(ps["customAttributes"]) == [
        {"name": "DomainName", "value": "example.com"},
        {"name": "HostName", "value": ""},
        {"name": "NtpServer", "value": "10.0.0.1"}]
    # id and uri name the same resource.
    assert js(srv, "plan-script", "show", ps["id"])["eTag"] == ps["eTag"]
    assert js(srv, "plan-script", "show", ps["uri"])["id"] == ps["id"]

    table = ok(run(srv, "plan-script", "list")).stdout.splitlines()
    assert re.match(r"NAME\s+TYPE\s+ATTRS\s+ID\s+MODIFIED", table[0]), table
    assert re.match(r"web setup\s+deploy\s+3\s+" + ps["id"], table[1]), table
    text = ok(run(srv, "plan-script", "show", "web setup")).stdout
    assert re.search(r"^description:\s+sets the host up$", text, re.M), text
    assert re.search(r"^\s+NtpServer\s+10\.0\.0\.1$", text, re.M), text
    assert '  hostnamectl set-hostname "@HostName@"' in text

    f2 = write(srv, "web2.gfs", SCRIPT + 'timedatectl set-timezone "@TimeZone:UTC@"\n')
    ok(run(srv, "plan-script", "update", "web setup", "--file", f2, "--description", "v2",
           "--type", "general"))
    ps2 = js(srv, "plan-script", "show", ps["id"])
    assert ps2["description"] == "v2" and ps2["planType"] == "general"
    assert ps2["eTag"] != ps["eTag"]
    assert {"name": "TimeZone", "value": "UTC"} in json.loads(ps2["customAttributes"])

    ok(run(srv, "plan-script", "update", ps["uri"], "--name", "web setup v2"))
    fails(run(srv, "plan-script", "show", "web setup"), 1, r'no plan script named.*"web setup"')
    assert js(srv, "plan-script", "show", "web setup v2")["id"] == ps["id"]

    # A duplicate name: the server's error, exit 1; --json prints the error document.
    r = fails(run(srv, "--json", "plan-script", "create", "--name", "web setup v2", "--type",
                  "deploy", "--file", f), 1, r"^error: ")
    assert json.loads(r.stdout)["errorCode"]

    r = ok(run(srv, "plan-script", "delete", "web setup v2"))
    assert 'Deleted plan script "web setup v2"' in r.stdout
    assert js(srv, "plan-script", "list")["members"] == []
    fails(run(srv, "plan-script", "delete", ps["id"]), 1, r"no plan script")
    no_secret(srv, r)


# -- build plans ------------------------------------------------------------------
ATTRS = [
    {"name": "DomainName", "type": "fqdn", "value": "example.com",
     "constraints": {"helpText": "DNS domain"}, "description": "the domain"},
    {"name": "Count", "type": "number", "value": 5,
     "constraints": {"minimum": "1", "maximum": "10"}},
    {"name": "Mode", "type": "option", "value": "fast",
     "constraints": {"options": ["fast", "slow"]}},
    {"name": "RootPassword", "type": "password", "value": "Secret-123",
     "constraints": {"minlen": "8"}},
]


def make_scripts(srv):
    a = write(srv, "a.gfs", 'echo "@HostName@" "@Mode:fast@"\n')
    b = write(srv, "b.gfs", 'echo "@DomainName@" "@Count:1@"\n')
    ok(run(srv, "plan-script", "create", "--name", "PS A", "--type", "deploy", "--file", a))
    ok(run(srv, "plan-script", "create", "--name", "PS B", "--type", "general", "--file", b))
    return js(srv, "plan-script", "show", "PS A"), js(srv, "plan-script", "show", "PS B")


def test_build_plan_steps_and_typed_attrs(srv):
    psa, psb = make_scripts(srv)
    attrs = write(srv, "attrs.json", json.dumps(ATTRS))
    r = ok(run(srv, "build-plan", "create", "--name", "BP web", "--type", "deploy",
               "--step", "PS A", "--step", psb["id"], "--attrs", attrs,
               "--description", "web servers"))
    assert 'Created build plan "BP web"' in r.stdout
    no_secret(srv, r, "Secret-123")

    bp = js(srv, "build-plan", "show", "BP web")
    assert [(s["serialNumber"], s["planScriptUri"], s["planScriptName"]) for s in bp["buildStep"]] == [
        ("1", psa["uri"], "PS A"), ("2", psb["uri"], "PS B")]
    got = attr_map(bp["customAttributes"])
    for want in ATTRS:
        a = got[want["name"]]
        assert a["type"] == want["type"]
        assert isinstance(a["constraints"], str)
        assert json.loads(a["constraints"]) == want["constraints"]
    assert got["Count"]["value"] == "5" and got["DomainName"]["value"] == "example.com"
    assert got["RootPassword"]["value"] != "Secret-123"  # never returned

    text = ok(run(srv, "build-plan", "show", bp["id"])).stdout
    assert re.search(r"^\s+1\s+PS A\s+" + re.escape(psa["uri"]), text, re.M), text
    assert re.search(r"^\s+Count\s+number\s+5\s+", text, re.M), text
    assert "Secret-123" not in text
    table = ok(run(srv, "build-plan", "list")).stdout
    assert re.search(r"^BP web\s+deploy\s+2\s+4\s+", table, re.M), table

    # A value outside its constraints: the server refuses, exit 1, with its reason.
    bad = write(srv, "bad.json", json.dumps([{"name": "Count", "type": "number", "value": "50",
                                              "constraints": {"maximum": "10"}}]))
    fails(run(srv, "build-plan", "create", "--name", "BP bad", "--type", "deploy",
              "--attrs", bad), 1, r"Count")
    fails(run(srv, "build-plan", "create", "--name", "BP bad", "--type", "sideways"), 2,
          r"--type must be deploy or capture")
    fails(run(srv, "build-plan", "create", "--name", "BP bad", "--type", "deploy",
              "--attrs", write(srv, "broken.json", "[{")), 2, r"broken\.json")
    fails(run(srv, "build-plan", "create", "--name", "BP bad", "--type", "deploy",
              "--step", "no such script"), 1, r"no plan script named")

    # Update: steps and attributes replaced, name changed; eTag is sent back.
    one = write(srv, "one.json", json.dumps(ATTRS[1:2]))
    ok(run(srv, "build-plan", "update", "BP web", "--step", "PS B", "--attrs", one,
           "--name", "BP web 2"))
    bp2 = js(srv, "build-plan", "show", "BP web 2")
    assert [s["planScriptName"] for s in bp2["buildStep"]] == ["PS B"]
    assert [a["name"] for a in bp2["customAttributes"]] == ["Count"]

    # --from-json: a copy of an exported plan under another name.
    doc = dict(bp)
    doc["name"] = "BP copy"
    ok(run(srv, "build-plan", "create", "--from-json", write(srv, "bp.json", json.dumps(doc))))
    copy = js(srv, "build-plan", "show", "BP copy")
    assert copy["id"] != bp["id"] and copy["buildStep"] == bp["buildStep"]
    # A hand-written document may name its plan scripts instead of giving uris.
    hand = {"name": "BP hand", "oeBuildPlanType": "capture",
            "buildStep": [{"planScriptName": "PS B"}]}
    ok(run(srv, "build-plan", "create", "--from-json", "-", input=json.dumps(hand)))
    assert js(srv, "build-plan", "show", "BP hand")["buildStep"][0]["planScriptUri"] == psb["uri"]

    # A plan script in use cannot be deleted; the plan can.
    fails(run(srv, "plan-script", "delete", "PS B"), 1, r"^error: .*used by")
    for name in ("BP web 2", "BP copy", "BP hand"):
        ok(run(srv, "build-plan", "delete", name))
    ok(run(srv, "plan-script", "delete", "PS B"))


# -- deployment plans ---------------------------------------------------------------
def test_deployment_plan_set_hide_show(srv):
    make_scripts(srv)
    attrs = write(srv, "attrs.json", json.dumps(ATTRS))
    ok(run(srv, "build-plan", "create", "--name", "BP", "--type", "deploy", "--step", "PS A",
           "--step", "PS B", "--attrs", attrs))
    bp = js(srv, "build-plan", "show", "BP")

    r = ok(run(srv, "deployment-plan", "create", "--name", "DP web", "--build-plan", "BP",
               "--set", "Count=7", "--hide", "Mode", "--set", "HostName=web01",
               "--set", "RootPassword=Other-pass-1"))
    no_secret(srv, r, "Other-pass-1")
    dp = js(srv, "deployment-plan", "show", "DP web")
    assert dp["oeBuildPlanURI"] == bp["uri"] and dp["goldenImageURI"] in ("", None)
    got = attr_map(dp["customAttributes"])
    assert got["Count"]["value"] == "7" and got["Count"]["visible"] is True
    assert got["Mode"]["value"] == "fast" and got["Mode"]["visible"] is False
    assert got["DomainName"]["value"] == "example.com"      # from the build plan
    assert got["HostName"]["value"] == "web01"              # declared by a plan script
    assert got["RootPassword"]["value"] != "Other-pass-1"   # masked
    assert all(a["editable"] is True and a["id"] for a in dp["customAttributes"])
    assert json.loads(got["Count"]["constraints"]) == {"minimum": "1", "maximum": "10"}

    ok(run(srv, "deployment-plan", "update", "DP web", "--set", "DomainName=corp.example.com",
           "--show", "Mode", "--hide", "Count"))
    dp2 = js(srv, "deployment-plan", "show", dp["id"])
    got = attr_map(dp2["customAttributes"])
    assert got["DomainName"]["value"] == "corp.example.com"
    assert got["Mode"]["visible"] is True and got["Count"]["visible"] is False
    assert got["Count"]["value"] == "7" and got["HostName"]["value"] == "web01"
    assert got["Count"]["id"] == attr_map(dp["customAttributes"])["Count"]["id"]

    text = ok(run(srv, "deployment-plan", "show", "DP web")).stdout
    assert re.search(r"^buildPlanName:\s+BP$", text, re.M), text
    assert re.search(r"^\s+Count\s+number\s+7\s+false\s+true", text, re.M), text
    table = ok(run(srv, "deployment-plan", "list")).stdout
    assert re.search(r"^DP web\s+BP\s+-\s+\d+\s+" + dp["id"], table, re.M), table

    fails(run(srv, "deployment-plan", "update", "DP web", "--set", "Count=70"), 1, r"maximum")
    fails(run(srv, "deployment-plan", "update", "DP web", "--set", "Nope=1"), 2,
          r'no custom attribute "Nope"')
    fails(run(srv, "deployment-plan", "create", "--name", "DP2", "--build-plan", "BP",
              "--set", "Count"), 2, r"NAME=VALUE")
    fails(run(srv, "deployment-plan", "create", "--name", "DP2", "--build-plan", "nope"), 1,
          r"no build plan named")
    fails(run(srv, "deployment-plan", "create", "--name", "DP2"), 2, r"--build-plan")
    assert js(srv, "deployment-plan", "show", "DP web")["eTag"] == dp2["eTag"]  # unchanged

    ok(run(srv, "deployment-plan", "delete", "DP web"))
    fails(run(srv, "deployment-plan", "show", "DP web"), 1, r"no deployment plan")


# -- offline attribute listing -----------------------------------------------------------
TOKEN = re.compile(r"(?<!\\)@([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)?)(?::([^@\n]*))?@")


def scan_attrs(text):
    """Independent reading of docs/attributes.md "Tokens": a token never starts
    at an escaped \\@; distinct names in order of first use, the first default
    given, '_' system attributes left out."""
    values, order = {}, []
    for m in TOKEN.finditer(text):
        name, default = m.group(1), m.group(2)
        if name.startswith("_"):
            continue
        if name not in values:
            values[name] = default or ""
            order.append(name)
        elif not values[name] and default:
            values[name] = default
    return [{"name": n, "value": values[n]} for n in order]


CORPUS = [
    "rhel/HPE_-_Linux_-_SAP_-_partition_disk_using_LVM_-_2019-04-12.txt",
    "rhel/HPE-RHEL7-EFI-configure-users-2019-03-21.txt",
    "esxi/HPE_-_ESXi_-_configure_management_1st_NIC_-_2017-03-16.txt",
    "esxi/HPE_-_ESXi_-_configure_ssh_-_2017-03-15.txt",
    "rhel/120-upload-bash-helpers.txt",
]

# Used when ../shared/research is not there (a clean clone): lines of the
# corpus scripts above, with the constructs the scanner must not take for tokens.
FALLBACK = """if [ "@SSH:enabled@" = "enabled" ]; then
esxcli network ip interface ipv4 set -i vmk0 -I @ManagementNIC.ipaddress@ -N @ManagementNIC.netmask@ -t static
esxcli network vswitch standard portgroup set -p "Management Network" -v @ManagementNIC.vlanid:0@
lvcreate -L @LvmVolumeSize:10@G -n @LvmVolumeName:lv_data@ @LvmVolumeGroupName:new_vol_group@
for u in "${users[@]}"; do useradd "$u"; done; exec "$@"
echo "@_Initiator1.ip@" root@@@OtherHostname@ @NewUsers@ \\@NotAToken@
"""


def test_plan_script_attrs_offline_matches_independent_scan():
    files = [os.path.join(harness.RESEARCH, "planscripts", f) for f in CORPUS]
    files = [f for f in files if os.path.exists(f)]
    tmp = None
    if not files:
        tmp = tempfile.mkdtemp(prefix="streamer-attrs-")
        files = [os.path.join(tmp, "fallback.txt")]
        with open(files[0], "w") as f:
            f.write(FALLBACK)
    try:
        checked = 0
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                want = scan_attrs(f.read())
            # No server runs and none is configured: the command must not need one.
            r = ok(standalone_cli("--json", "plan-script", "attrs", path))
            assert json.loads(r.stdout) == want, "%s\n%s" % (path, r.stdout)
            table = ok(standalone_cli("plan-script", "attrs", path)).stdout.splitlines()
            if want:
                assert re.match(r"NAME\s+DEFAULT$", table[0]), table
                rows = [re.split(r"\s{2,}", line.rstrip(), maxsplit=1) for line in table[1:]]
                assert [(row + [""])[:2] for row in rows] == [[a["name"], a["value"]] for a in want]
            checked += len(want)
        assert checked >= 9, checked
        fails(standalone_cli("plan-script", "attrs", "/nonexistent/script"), 2, r"nonexistent")
        fails(standalone_cli("plan-script", "attrs"), 2, r"missing argument")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# -- exit codes and messages ----------------------------------------------------------
def test_error_exit_codes(srv):
    # 1: the server (or the lookup) says no.
    fails(run(srv, "plan-script", "show", "missing"), 1, r'no plan script named or with id "missing"')
    fails(run(srv, "build-plan", "delete", "missing"), 1, r"no build plan")
    fails(run(srv, "deployment-plan", "show", "/rest/deployment-plans/0000"), 1, r"^error: ")
    fails(run(srv, "task", "show", "missing"), 1, r"no task")
    fails(run(srv, "user", "delete", "nobody"), 1, r'"nobody" does not exist')
    # 2: usage.
    fails(run(srv), 2, r"usage: streamer")
    fails(run(srv, "frobnicate"), 2, r'unknown command "frobnicate"')
    fails(run(srv, "plan-script"), 2, r"usage: streamer plan-script")
    fails(run(srv, "plan-script", "frobnicate"), 2, r"unknown subcommand")
    fails(run(srv, "plan-script", "create", "--type", "deploy", "--file", "x"), 2,
          r"--name is required")
    fails(run(srv, "plan-script", "create", "--name", "x", "--type", "weird", "--file", "x"), 2,
          r"deploy, capture or general")
    fails(run(srv, "plan-script", "create", "--name", "x", "--type", "deploy", "--file",
              "/nonexistent"), 2, r"cannot read")
    fails(run(srv, "plan-script", "list", "--bogus"), 2, r"unknown option --bogus")
    fails(run(srv, "plan-script", "show", "a", "b"), 2, r'unexpected argument "b"')
    fails(run(srv, "plan-script", "show"), 2, r"missing argument")
    fails(run(srv, "task", "wait", "x", "--timeout", "soon"), 2, r"--timeout")
    fails(run(srv, "--server"), 2, r"--server needs a value")
    fails(run(srv, "plan-script", "update", "x"), 2, r"nothing to update")
    # 3: unreachable, not logged in, session refused.
    dead = "http://127.0.0.1:%d" % harness.free_port()
    fails(run(srv, "plan-script", "list", "--server", dead), 3, r"cannot reach the server")
    fails(run(srv, "plan-script", "list", token=False), 3, r"not logged in.*\n.*streamer login")
    fails(run(srv, "plan-script", "list", env={"STREAMER_TOKEN": "forged"}), 3, r"streamer login")
    # Help is not an error.
    r = ok(run(srv, "plan-script", "create", "--help"))
    assert r.stdout.startswith("usage: streamer plan-script create")
    assert ok(run(srv, "help", "build-plan")).stdout.startswith("usage: streamer build-plan")
    assert re.match(r"streamer \d+\.\d+", ok(run(srv, "--version")).stdout)


def test_json_outputs_parse(srv):
    make_scripts(srv)
    ok(run(srv, "build-plan", "create", "--name", "BP", "--type", "deploy", "--step", "PS A"))
    ok(run(srv, "deployment-plan", "create", "--name", "DP", "--build-plan", "BP"))
    for group in ("plan-script", "build-plan", "deployment-plan", "task", "user"):
        doc = js(srv, group, "list")
        assert isinstance(doc["members"], list) and doc["count"] == len(doc["members"])
    for group, name in (("plan-script", "PS A"), ("build-plan", "BP"), ("deployment-plan", "DP")):
        doc = js(srv, group, "show", name)
        assert doc["name"] == name and doc["uri"].startswith("/rest/")
        # --json may also follow the subcommand.
        assert json.loads(ok(run(srv, group, "show", name, "--json")).stdout)["uri"] == doc["uri"]
    created = js(srv, "plan-script", "create", "--name", "PS J", "--type", "capture", "--file",
                 write(srv, "j.gfs", "echo\n"))
    assert created["planType"] == "capture" and created["uri"]
    gone = js(srv, "plan-script", "delete", "PS J")
    assert gone["deleted"] is True and gone["uri"] == created["uri"]


# -- users ------------------------------------------------------------------------------
def test_users_roles_and_passwd(srv):
    pw1 = write(srv, "alice1", "alice-pass-1\n")
    pw2 = write(srv, "alice2", "alice-pass-2\n")
    r = ok(run(srv, "user", "create", "--name", "alice", "--role", "deployment",
               "--password-file", pw1, "--full-name", "Alice Doe"))
    no_secret(srv, r, "alice-pass-1")
    table = ok(run(srv, "user", "list")).stdout
    assert re.search(r"^alice\s+Alice Doe\s+Deployment administrator\s+true", table, re.M), table
    users = {u["userName"]: u for u in js(srv, "user", "list")["members"]}
    assert users["alice"]["permissions"] == [{"roleName": "Deployment administrator"}]

    # alice logs in with her own home directory; she may write artifacts, not users.
    home = os.path.join(srv.tmp, "alice-home")
    ok(srv.cli("login", "--server", srv.url, "--user", "alice", "--password-file", pw1,
               input="", home=home))
    ok(srv.cli("plan-script", "create", "--name", "by alice", "--type", "general", "--file", pw1,
               input="", home=home))
    fails(srv.cli("user", "create", "--name", "eve", "--role", "readonly", "--password-file", pw1,
                  input="", home=home), 1, r"^error: ")
    # Her own password: the current one is needed; the session ends with the change.
    fails(srv.cli("user", "passwd", "--current-password-file", pw2, "--password-file", pw2,
                  input="", home=home), 1, r"currentPassword")
    r = ok(srv.cli("user", "passwd", "--current-password-file", pw1, "--password-file", pw2,
                   input="", home=home))
    no_secret(srv, r, "alice-pass-1", "alice-pass-2")
    fails(srv.cli("plan-script", "list", input="", home=home), 3, r"streamer login")
    fails(srv.cli("login", "--user", "alice", "--password-file", pw1, input="", home=home), 1)
    ok(srv.cli("login", "--user", "alice", "--password-file", pw2, input="", home=home))

    ok(run(srv, "user", "update", "alice", "--role", "readonly"))
    users = {u["userName"]: u for u in js(srv, "user", "list")["members"]}
    assert users["alice"]["permissions"] == [{"roleName": "Read only"}]
    fails(run(srv, "user", "create", "--name", "bob", "--role", "superhero",
              "--password-file", pw1), 1, r"^error: ")
    fails(run(srv, "user", "create", "--name", "bob", "--password-file", pw1), 2, r"--role")
    ok(run(srv, "user", "delete", "alice"))
    fails(run(srv, "user", "delete", "alice"), 1, r"does not exist")


# -- tasks -------------------------------------------------------------------------------
class StubTasks(http.server.BaseHTTPRequestHandler):
    """Serves /rest/tasks/<id> whose state advances one step per GET."""
    SCRIPTS = {
        "t-ok": [("New", 0, ""), ("Running", 30, "Cloning the golden image"),
                 ("Running", 80, "Personalizing"), ("Completed", 100, "Done")],
        "t-warn": [("Running", 50, "Almost"), ("Warning", 100, "Finished with a warning")],
        "t-fail": [("Running", 10, "Running plan script 2"), ("Error", 40, "Failed")],
        "t-slow": [("Running", 5, "Waiting forever")],
    }
    lock = threading.Lock()
    polls = {}
    headers_seen = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        with self.lock:
            self.headers_seen.append((self.headers.get("auth"), self.headers.get("X-API-Version")))
        tid = self.path.split("?")[0].rsplit("/", 1)[-1]
        if self.path.startswith("/rest/tasks?"):
            body = {"members": [self.task(t, 0) for t in sorted(self.SCRIPTS)], "count": 4,
                    "total": 4, "start": 0, "nextPageUri": None, "prevPageUri": None,
                    "uri": "/rest/tasks?start=0&count=-1"}
            return self.reply(200, body)
        if tid not in self.SCRIPTS:
            return self.reply(404, {"errorCode": "RESOURCE_NOT_FOUND", "message": "no task",
                                    "details": "", "recommendedActions": [], "nestedErrors": []})
        with self.lock:
            n = self.polls.get(tid, 0)
            self.polls[tid] = n + 1
        self.reply(200, self.task(tid, n))

    def task(self, tid, n):
        steps = self.SCRIPTS[tid]
        state, pct, status = steps[min(n, len(steps) - 1)]
        t = {"type": "TaskResourceV2", "category": "tasks", "uri": "/rest/tasks/" + tid,
             "name": "Deploy " + tid, "owner": "administrator", "taskState": state,
             "percentComplete": pct, "created": "2024-01-02T03:04:05.678Z",
             "progressUpdates": [{"statusUpdate": status, "timestamp": "2024-01-02T03:04:06.000Z"}],
             "taskErrors": [],
             "associatedResource": {"resourceName": "server-1", "resourceUri": "/rest/x/1"}}
        if state == "Error":
            t["taskErrors"] = [{"errorCode": "PLAN_SCRIPT_FAILED",
                                "message": "plan script \"PS B\" exited with status 3",
                                "details": "line 7: mount failed",
                                "recommendedActions": ["Check the golden image."]}]
        return t

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_task_wait_show_list_against_stub():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubTasks)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    env = {"STREAMER_SERVER": "http://127.0.0.1:%d" % httpd.server_address[1],
           "STREAMER_TOKEN": "stub-token-123"}
    try:
        r = ok(standalone_cli("task", "wait", "t-ok", env=env))
        assert 'Task "Deploy t-ok" Completed.' in r.stdout
        assert StubTasks.polls["t-ok"] >= 4
        assert "stub-token-123" not in r.stdout + r.stderr
        assert set(StubTasks.headers_seen) == {("stub-token-123", "2020")}

        ok(standalone_cli("task", "wait", "/rest/tasks/t-warn", env=env))
        r = fails(standalone_cli("task", "wait", "t-fail", env=env), 1, r'ended Error')
        assert "exited with status 3: line 7: mount failed" in r.stderr
        assert "Check the golden image." in r.stderr
        r = fails(standalone_cli("task", "wait", "t-slow", "--timeout", "0.5", env=env), 1,
                  r"still Running after 0.5 s")
        fails(standalone_cli("task", "wait", "t-missing", env=env), 1, r"no task")
        final = json.loads(ok(standalone_cli("--json", "task", "wait", "t-ok", env=env)).stdout)
        assert final["taskState"] == "Completed"

        text = ok(standalone_cli("task", "show", "t-fail", env=env)).stdout
        assert re.search(r"^taskState:\s+Error$", text, re.M), text
        assert "exited with status 3" in text
        table = ok(standalone_cli("task", "list", env=env)).stdout
        assert re.search(r"^Deploy t-slow\s+Running\s+5\s+server-1\s+administrator\s+"
                         r"2024-01-02 03:04:05\s+t-slow$", table, re.M), table

        # On a terminal, wait draws a progress bar on stderr.
        StubTasks.polls.pop("t-ok", None)
        out = run_with_tty_stderr([harness.STREAMER, "task", "wait", "t-ok"], env)
        assert re.search(r"\[#{9}\.{21}\]\s+30% Running: Cloning the golden image", out), out
        assert re.search(r"\[#{30}\] 100% Completed: Done", out), out
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_with_tty_stderr(argv, env):
    master, slave = pty.openpty()
    e = dict(os.environ)
    e.update(env)
    e["HOME"] = tempfile.mkdtemp(prefix="streamer-tty-")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                         env=e)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert p.wait(30) == 0
    finally:
        os.close(master)
        p.stdout.close()
        shutil.rmtree(e["HOME"], ignore_errors=True)
    return b"".join(chunks).decode("utf-8", "replace")


def test_task_commands_on_real_server(srv):
    doc = js(srv, "task", "list")
    assert doc["members"] == [] or "taskState" in doc["members"][0]
    fails(run(srv, "task", "show", "0b1e6c8e-0000-4000-8000-000000000000"), 1, r"no task")
    fails(run(srv, "task", "wait", "0b1e6c8e-0000-4000-8000-000000000000"), 1, r"no task")
