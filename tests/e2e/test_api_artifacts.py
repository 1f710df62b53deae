"""test_api_artifacts.py — end-to-end functional tests of the artifact REST API:
plan scripts, OS build plans, OS deployment plans (HPE wire shapes of
/work/shared/docs/i3s-api.md §1-5 and the leniency list of §8).

Every test takes `srv`: a fresh streamerd with the administrator logged in.
"""
import http.client
import json
import re
import urllib.parse

import harness

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

PS_COLL = "/rest/plan-scripts"
BP_COLL = "/rest/build-plans"
DP_COLL = "/rest/deployment-plans"

SECRET = "Secr3t!x9"        # build plan password value
SECRET2 = "An0ther!pw"      # deployment plan password value
ALLOWED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!"

NIC_CONSTRAINTS = {"ipv4static": True, "ipv4dhcp": True, "ipv4disable": False,
                   "parameters": ["dns1", "dns2", "gateway", "ipaddress", "mac", "netmask", "vlanid"]}


# ---- helpers ----------------------------------------------------------------
def expect(r, status):
    """Assert the status and return the parsed JSON body (None when empty)."""
    assert r.status == status, "expected %d, got %r" % (status, r)
    return r.json()


def expect_error(r, status, code=None, mentions=()):
    """Assert an HPE error reply: status, and the OneView error JSON shape."""
    assert r.status == status, "expected %d, got %r" % (status, r)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    b = r.json()
    assert isinstance(b, dict), r
    assert isinstance(b.get("errorCode"), str) and b["errorCode"], b
    assert isinstance(b.get("message"), str) and b["message"], b
    assert isinstance(b.get("recommendedActions"), list), b
    assert isinstance(b.get("nestedErrors"), list), b
    assert "details" in b and "errorSource" in b and "data" in b, b
    if code:
        assert b["errorCode"] == code, b
    for m in mentions:
        assert m in b["message"], (m, b)
    return b


def raw(srv, method, path, body=None, headers=None):
    """A request with exactly the given headers (no X-API-Version, no auth added)."""
    c = srv.connection()
    try:
        data = body.encode() if isinstance(body, str) else body
        c.request(method, path, body=data, headers=headers or {})
        r = c.getresponse()
        return harness.Response(r.status, {k.lower(): v for k, v in r.getheaders()},
                                r.read().decode("utf-8", "replace"))
    finally:
        c.close()


def q(s):
    return urllib.parse.quote(s, safe="")


def mk_ps(srv, name, content="echo hello", plan_type="deploy", **extra):
    body = {"type": "PlanScript", "name": name, "description": "test script",
            "planType": plan_type, "content": content, "hpProvided": False}
    body.update(extra)
    return expect(srv.request("POST", PS_COLL, body), 201)


def step(i, ps):
    return {"serialNumber": str(i), "planScriptUri": ps["uri"], "planScriptName": ps["name"],
            "parameters": None}


def mk_bp(srv, name, scripts=(), attrs=None, bp_type="deploy", **extra):
    body = {"type": "OeBuildPlanV5", "name": name, "description": "test build plan",
            "oeBuildPlanType": bp_type, "hpProvided": False,
            "buildStep": [step(i + 1, ps) for i, ps in enumerate(scripts)],
            "customAttributes": attrs or []}
    body.update(extra)
    return expect(srv.request("POST", BP_COLL, body), 201)


def mk_dp(srv, name, bp, attrs=None, **extra):
    body = {"type": "OEDeploymentPlanV5", "name": name, "description": "test deployment plan",
            "hpProvided": False, "oeBuildPlanURI": bp["uri"], "customAttributes": attrs or []}
    body.update(extra)
    return expect(srv.request("POST", DP_COLL, body), 201)


def get(srv, uri):
    return expect(srv.request("GET", uri), 200)


def by_name(attrs):
    return {a["name"]: a for a in attrs}


def members(srv, path):
    b = expect(srv.request("GET", path), 200)
    assert isinstance(b["members"], list), b
    return b


def names(coll):
    return [m["name"] for m in coll["members"]]


def decl(name, typ, value, constraints, description=""):
    return {"name": name, "type": typ, "value": value,
            "constraints": json.dumps(constraints, separators=(",", ":")),
            "description": description}


ACCEPT_CONTENT = "\n".join([
    "# acceptance plan script",
    'echo "host @HostName@"',
    'echo "domain @DomainName:example.com@"',
    'echo "ip @ManagementNIC.ipaddress@"',
    'echo "fqdn @ServerFQDN@" "pw @Password@" "count @Count:20@" "mode @Mode@" "label @Label@"',
    'echo "again @HostName:ignored-later-default@"',
    'for x in "${arr[@]}"; do echo "$@"; done',
    "ssh root@server.example.com",
    "echo \\@NotAToken@",
    "echo @_Initiator1.ip@",
])

ACCEPT_DERIVED = [
    {"name": "HostName", "value": "ignored-later-default"},
    {"name": "DomainName", "value": "example.com"},
    {"name": "ManagementNIC.ipaddress", "value": ""},
    {"name": "ServerFQDN", "value": ""},
    {"name": "Password", "value": ""},
    {"name": "Count", "value": "20"},
    {"name": "Mode", "value": ""},
    {"name": "Label", "value": ""},
]


def accept_decls():
    return [
        decl("HostName", "hostname", "node1", {"helpText": "short host name"}, "Host name"),
        decl("ServerFQDN", "fqdn", "node1.example.com", {"helpText": ""}),
        decl("Password", "password", SECRET, {"minlen": "8", "maxlen": "12", "allowedchars": ALLOWED}),
        decl("Count", "number", "20", {"minimum": "10", "maximum": "100", "increment": "10", "unit": "GB"}),
        decl("Mode", "option", "enabled", {"options": ["enabled", "disabled"]}),
        {"name": "ManagementNIC", "type": "nic", "value": None,
         "constraints": json.dumps(NIC_CONSTRAINTS), "description": "Management NIC"},
        decl("Label", "string", "Abc1", {"regex": "[A-Z][a-z]*[0-9]*", "helpText": "A label"}),
    ]


def assert_no_secret(r, *secrets):
    for s in secrets or (SECRET, SECRET2):
        assert s not in r.body, "password value leaked in %r" % r


# ---- 1. acceptance flow ---------------------------------------------------------
def test_acceptance_flow(srv):
    # log in again (srv already has a session): a second session works too
    tok = srv.login()
    assert tok and isinstance(tok, str)

    ps = mk_ps(srv, "Acceptance script", ACCEPT_CONTENT)
    # derived attributes: a JSON-encoded string, order of first appearance,
    # first default given wins, system (_...) and non-tokens left out
    assert isinstance(ps["customAttributes"], str), ps
    assert json.loads(ps["customAttributes"]) == ACCEPT_DERIVED, ps["customAttributes"]
    assert get(srv, ps["uri"])["customAttributes"] == ps["customAttributes"]

    # the exact string of the Ruby SDK integration spec
    rb = mk_ps(srv, "RB spec script", 'esxcli system hostname set --domain "@DomainName@"')
    assert rb["customAttributes"] == '[{"name":"DomainName","value":""}]', rb["customAttributes"]

    bp = mk_bp(srv, "Acceptance build plan", [ps], accept_decls())
    r = srv.request("GET", bp["uri"])
    got = expect(r, 200)
    assert_no_secret(r)
    attrs = got["customAttributes"]
    assert isinstance(attrs, list) and [a["name"] for a in attrs] == [
        "HostName", "ServerFQDN", "Password", "Count", "Mode", "ManagementNIC", "Label"], attrs
    want = {d["name"]: d for d in accept_decls()}
    for a in attrs:
        assert set(a) >= {"name", "value", "type", "constraints", "description"}, a
        assert not ({"id", "visible", "editable"} & set(a)), "build plan attrs carry no UI fields: %r" % a
        assert isinstance(a["constraints"], str), a
        assert json.loads(a["constraints"]) == json.loads(want[a["name"]]["constraints"]), a
        assert a["type"] == want[a["name"]]["type"], a
        if a["name"] == "Password":
            assert a["value"] in ("", None) and a["value"] != SECRET, a
        elif a["name"] == "ManagementNIC":
            assert a["value"] in (None, ""), a
        else:
            assert a["value"] == want[a["name"]]["value"], a
    assert by_name(attrs)["HostName"]["description"] == "Host name"

    dp_attrs = [
        {"name": "HostName", "value": "node7", "visible": False},
        {"name": "Count", "value": "30"},
        {"name": "Mode", "value": "disabled", "editable": False},
        {"name": "Password", "value": SECRET2, "visible": False},
    ]
    r = srv.request("POST", DP_COLL, {"type": "OEDeploymentPlanV5", "name": "Acceptance deployment plan",
                                      "oeBuildPlanURI": bp["uri"], "customAttributes": dp_attrs,
                                      "hpProvided": False, "description": ""})
    dp = expect(r, 201)
    assert_no_secret(r)
    r = srv.request("GET", dp["uri"])
    got = expect(r, 200)
    assert_no_secret(r)
    merged = got["customAttributes"]
    assert isinstance(merged, list)
    m = by_name(merged)
    for a in merged:
        assert UUID.match(a.get("id") or ""), a
        assert isinstance(a["visible"], bool) and isinstance(a["editable"], bool), a
        assert isinstance(a["constraints"], str), a
        json.loads(a["constraints"])
    assert len({a["id"] for a in merged}) == len(merged), "attribute ids must be distinct"
    # every build plan attribute is there, with its type and constraints
    for name, d in want.items():
        assert name in m, (name, merged)
        assert m[name]["type"] == d["type"], m[name]
        assert json.loads(m[name]["constraints"]) == json.loads(d["constraints"]), m[name]
    # the NIC sub-token of the plan script is folded into the NIC declaration
    assert "ManagementNIC.ipaddress" not in m, merged
    assert m["ManagementNIC"]["value"] in (None, "")
    # overrides and inherited values
    assert (m["HostName"]["value"], m["HostName"]["visible"], m["HostName"]["editable"]) == ("node7", False, True)
    assert m["Count"]["value"] == "30" and m["Count"]["visible"] is True
    assert (m["Mode"]["value"], m["Mode"]["editable"]) == ("disabled", False)
    assert m["ServerFQDN"]["value"] == "node1.example.com"
    assert m["Label"]["value"] == "Abc1"
    assert m["Password"]["value"] in ("", None) and m["Password"]["visible"] is False
    # a plan script default the build plan does not declare still shows up
    assert m["DomainName"]["value"] == "example.com", m["DomainName"]

    # PUT with a changed value keeps the attribute ids and visibility
    ids = {a["name"]: a["id"] for a in merged}
    body = dict(got)
    body["customAttributes"] = [dict(a) for a in merged]
    for a in body["customAttributes"]:
        if a["name"] == "Count":
            a["value"] = "40"
    r = srv.request("PUT", dp["uri"], body)
    upd = expect(r, 200)
    assert_no_secret(r)
    m2 = by_name(upd["customAttributes"])
    assert m2["Count"]["value"] == "40"
    assert m2["HostName"]["visible"] is False and m2["HostName"]["value"] == "node7"
    assert {a["name"]: a["id"] for a in upd["customAttributes"]} == ids

    # password values never appear in lists either (nor can a filter probe them)
    for path in (BP_COLL, DP_COLL, BP_COLL + "?start=0&count=-1", DP_COLL + "?sort=name:asc"):
        r = srv.request("GET", path)
        expect(r, 200)
        assert_no_secret(r)
    # (positive control: the same filters do see ordinary attribute values)
    assert expect(srv.request("GET", BP_COLL + "?filter=" + q("customAttributes.value='node1'")), 200)["total"] == 1
    assert expect(srv.request("GET", DP_COLL + "?filter=" + q("customAttributes.value matches 'node_'")), 200)["total"] == 1
    for coll, secret in ((BP_COLL, SECRET), (DP_COLL, SECRET2)):
        r = srv.request("GET", coll + "?filter=" + q("customAttributes.value='%s'" % secret))
        assert expect(r, 200)["total"] == 0, r
        r = srv.request("GET", coll + "?filter=" + q("customAttributes.value matches 'Secr%'"))
        assert expect(r, 200)["total"] == 0, r
        r = srv.request("GET", coll + "?filter=" + q("customAttributes.value matches 'An0%'"))
        assert expect(r, 200)["total"] == 0, r

    # ... nor in usedby views: a read-only build plan with a password uses the script
    ro = mk_bp(srv, "Read-only build plan", [ps], [decl("Password", "password", SECRET, {"maxlen": "12"})],
               readOnly=True)
    assert ro["readOnly"] is True
    r = srv.request("GET", ps["uri"] + "/usedby/readonly")
    used = expect(r, 200)
    assert_no_secret(r)
    assert isinstance(used, list) and [u["name"] for u in used] == ["Read-only build plan"], used
    r = srv.request("GET", bp["uri"] + "/usedby")
    used = expect(r, 200)
    assert_no_secret(r)
    assert [u["name"] for u in used] == ["Acceptance deployment plan"], used
    r = srv.request("GET", dp["uri"] + "/osdp")
    osdp = expect(r, 200)
    assert_no_secret(r)
    params = by_name(osdp["additionalParameters"])
    assert "HostName" not in params and "Password" not in params, "hidden attributes are not offered"
    assert params["Count"]["value"] == "40" and params["Count"]["caType"] == "number"


def test_attribute_constraints(srv):
    ps = mk_ps(srv, "Constraint script", ACCEPT_CONTENT)
    bp = mk_bp(srv, "Constraint build plan", [ps], accept_decls())

    def bad_bp(attr, why):
        d = [a for a in accept_decls() if a["name"] != attr["name"]] + [attr]
        r = srv.request("POST", BP_COLL, {"name": "Bad BP " + why, "oeBuildPlanType": "deploy",
                                          "buildStep": [step(1, ps)], "customAttributes": d})
        expect_error(r, 400)
        assert attr["name"] in r.body, r

    bad_bp(decl("Password", "password", "short", {"minlen": "8", "maxlen": "12"}), "minlen")
    bad_bp(decl("Password", "password", "waytoolongpassword", {"minlen": "8", "maxlen": "12"}), "maxlen")
    bad_bp(decl("Password", "password", "abc def gh", {"allowedchars": "abcdefgh"}), "allowedchars")
    bad_bp(decl("Count", "number", "5", {"minimum": "10", "maximum": "100"}), "minimum")
    bad_bp(decl("Count", "number", "110", {"minimum": "10", "maximum": "100"}), "maximum")
    bad_bp(decl("Count", "number", "25", {"minimum": "10", "maximum": "100", "increment": "10"}), "increment")
    bad_bp(decl("Count", "number", "ten", {}), "nan")
    bad_bp(decl("Mode", "option", "maybe", {"options": ["enabled", "disabled"]}), "option")
    bad_bp(decl("HostName", "hostname", "node1.example.com", {}), "hostname")
    bad_bp(decl("ServerFQDN", "fqdn", "nodot", {}), "fqdn")
    bad_bp(decl("Label", "string", "lowercase", {"regex": "[A-Z][a-z]*[0-9]*"}), "regex")
    bad_bp(decl("Label", "integer", "1", {}), "type")
    bad_bp(decl("Bad Name", "string", "x", {}), "name")

    # deployment plan values are checked against the build plan's constraints
    for attr in ({"name": "Count", "value": "35"}, {"name": "Mode", "value": "on"},
                 {"name": "Password", "value": "x"}, {"name": "HostName", "value": "a.b"}):
        r = srv.request("POST", DP_COLL, {"name": "Bad DP", "oeBuildPlanURI": bp["uri"],
                                          "customAttributes": [attr]})
        expect_error(r, 400)
        assert attr["name"] in r.body, r
    # an attribute the build plan does not know
    r = srv.request("POST", DP_COLL, {"name": "Bad DP", "oeBuildPlanURI": bp["uri"],
                                      "customAttributes": [{"name": "Unknown", "value": "1"}]})
    expect_error(r, 400, mentions=("Unknown",))
    assert members(srv, DP_COLL)["total"] == 0
    # valid boundary values pass
    ok = mk_dp(srv, "Good DP", bp, [{"name": "Count", "value": "100"}, {"name": "Mode", "value": "disabled"},
                                    {"name": "Password", "value": "12345678"}])
    assert by_name(ok["customAttributes"])["Count"]["value"] == "100"


# ---- 2. HPE shapes ----------------------------------------------------------------
def check_common(doc, coll, r=None):
    assert doc["uri"] == "/rest/%s/%s" % (coll, doc["id"]), doc
    assert UUID.match(doc["id"]), doc
    assert isinstance(doc["eTag"], str) and doc["eTag"], doc
    assert ISO_MS.match(doc["created"]) and ISO_MS.match(doc["modified"]), doc
    assert doc["modified"] >= doc["created"], doc
    assert isinstance(doc["dependentArtifacts"], list), doc
    if r is not None:
        assert r.headers.get("etag") == doc["eTag"], (r.headers, doc["eTag"])


def test_hpe_shapes(srv):
    r = srv.request("POST", PS_COLL, {"type": "PlanScript", "name": "Shape PS", "description": "x",
                                      "planType": "deploy", "content": "echo @A@", "hpProvided": False})
    ps = expect(r, 201)
    assert r.headers.get("location") == ps["uri"], r.headers
    check_common(ps, "plan-scripts", r)
    assert ps["type"] == "PlanScript" and ps["planType"] == "deploy" and ps["hpProvided"] is False
    assert ps["name"] == "Shape PS" and ps["description"] == "x" and ps["content"] == "echo @A@"
    assert ps["dependentArtifacts"] == []
    r = srv.request("GET", ps["uri"])
    check_common(expect(r, 200), "plan-scripts", r)
    # planType is echoed as given
    cap = mk_ps(srv, "Shape capture", "echo", "Capture")
    assert cap["planType"] == "Capture"

    r = srv.request("POST", BP_COLL, {"name": "Shape BP", "oeBuildPlanType": "Deploy",
                                      "buildStep": [{"serialNumber": "1", "planScriptUri": ps["uri"]},
                                                    {"serialNumber": 2, "planScriptUri": cap["uri"]}],
                                      "customAttributes": [decl("A", "string", "a", {})]})
    bp = expect(r, 201)
    assert r.headers.get("location") == bp["uri"]
    check_common(bp, "build-plans", r)
    assert bp["type"] in ("OeBuildPlan", "OeBuildPlanV5"), bp["type"]
    assert bp["buildPlanid"] == bp["id"], bp
    assert bp["oeBuildPlanType"] == "Deploy"
    assert [(s["serialNumber"], s["planScriptUri"], s["planScriptName"]) for s in bp["buildStep"]] == [
        ("1", ps["uri"], "Shape PS"), ("2", cap["uri"], "Shape capture")], bp["buildStep"]
    assert bp["customAttributes"][0]["constraints"] == "{}"
    # constraints given as an object are stored as a JSON string
    bp2 = mk_bp(srv, "Shape BP2", [ps], [{"name": "A", "type": "number", "value": "1",
                                          "constraints": {"minimum": "0", "maximum": "9"}}])
    c = bp2["customAttributes"][0]["constraints"]
    assert isinstance(c, str) and json.loads(c) == {"minimum": "0", "maximum": "9"}, c
    # null constraints -> "{}"
    bp3 = mk_bp(srv, "Shape BP3", [], [{"name": "B", "type": "string", "value": "", "constraints": None}])
    assert bp3["customAttributes"][0]["constraints"] == "{}"
    assert bp3["customAttributes"][0]["description"] == "", "an omitted description is \"\" as in HPE exports"
    assert bp3["buildStep"] == []

    r = srv.request("POST", DP_COLL, {"name": "Shape DP", "oeBuildPlanURI": bp["uri"], "goldenImageURI": ""})
    dp = expect(r, 201)
    assert r.headers.get("location") == dp["uri"]
    check_common(dp, "deployment-plans", r)
    assert dp["type"] in ("OEDeploymentPlan", "OEDeploymentPlanV5"), dp["type"]
    assert dp["oeBuildPlanURI"] == bp["uri"]
    assert dp["goldenImageURI"] in ("", None)

    # dependentArtifacts are maintained both ways
    ps_now = get(srv, ps["uri"])
    assert ps_now["dependentArtifacts"] == [{"name": "Shape BP", "uri": bp["uri"]},
                                            {"name": "Shape BP2", "uri": bp2["uri"]}], ps_now
    assert get(srv, cap["uri"])["dependentArtifacts"] == [{"name": "Shape BP", "uri": bp["uri"]}]
    assert get(srv, bp["uri"])["dependentArtifacts"] == [{"name": "Shape DP", "uri": dp["uri"]}]
    assert get(srv, bp2["uri"])["dependentArtifacts"] == []
    # ... and follow renames and removals
    b = get(srv, bp2["uri"])
    b["name"] = "Shape BP2 renamed"
    expect(srv.request("PUT", bp2["uri"], b), 200)
    assert [d["name"] for d in get(srv, ps["uri"])["dependentArtifacts"]] == ["Shape BP", "Shape BP2 renamed"]
    b = get(srv, bp["uri"])
    b["buildStep"] = [step(1, ps)]     # drop the capture script
    r = srv.request("PUT", bp["uri"], b)
    bpu = expect(r, 200)
    assert r.headers.get("etag") == bpu["eTag"] != bp["eTag"]
    assert bpu["created"] == bp["created"], "created never changes"
    assert bpu["dependentArtifacts"] == [{"name": "Shape DP", "uri": dp["uri"]}], "kept across PUT"
    assert get(srv, cap["uri"])["dependentArtifacts"] == []
    d = get(srv, dp["uri"])
    d["oeBuildPlanURI"] = bp2["uri"]
    # values are carried over by name: "a" is no number for bp2's attribute A
    expect_error(srv.request("PUT", dp["uri"], d), 400, mentions=('"A"',))
    assert get(srv, dp["uri"])["oeBuildPlanURI"] == bp["uri"]
    d["customAttributes"] = []
    expect(srv.request("PUT", dp["uri"], d), 200)
    assert get(srv, bp["uri"])["dependentArtifacts"] == []
    assert get(srv, bp2["uri"])["dependentArtifacts"] == [{"name": "Shape DP", "uri": dp["uri"]}]

    # planScriptName follows a plan script rename
    p = get(srv, ps["uri"])
    p["name"] = "Shape PS renamed"
    r = srv.request("PUT", ps["uri"], p)
    psu = expect(r, 200)
    assert psu["name"] == "Shape PS renamed" and r.headers.get("etag") == psu["eTag"]
    for u in (bp["uri"], bp2["uri"]):
        assert [s["planScriptName"] for s in get(srv, u)["buildStep"]] == ["Shape PS renamed"]

    # 204 with an empty body on delete, then 404 with an error body
    r = srv.request("DELETE", dp["uri"])
    assert r.status == 204 and r.body == "", r
    expect_error(srv.request("GET", dp["uri"]), 404)
    expect_error(srv.request("DELETE", dp["uri"]), 404)
    expect_error(srv.request("PUT", dp["uri"], d), 404)
    assert get(srv, bp2["uri"])["dependentArtifacts"] == []
    for u in (bp["uri"], bp2["uri"], bp3["uri"], ps["uri"], cap["uri"]):
        r = srv.request("DELETE", u)
        assert r.status == 204 and r.body == "", r
    assert members(srv, PS_COLL)["total"] == 0 and members(srv, BP_COLL)["total"] == 0
    # the id in the body of a PUT must match the URI
    a = mk_ps(srv, "A1")
    b = mk_ps(srv, "B1")
    expect_error(srv.request("PUT", a["uri"], dict(a, id=b["id"], name="A1 renamed")), 400)
    assert get(srv, a["uri"])["name"] == "A1" and get(srv, b["uri"])["name"] == "B1"


# ---- 3. collections ---------------------------------------------------------------------
def test_collection_paging(srv):
    for i in range(25):
        mk_ps(srv, "Page script %02d" % i)
    c = members(srv, PS_COLL)
    assert (c["start"], c["count"], c["total"], c["nextPageUri"], c["prevPageUri"]) == (0, 25, 25, None, None), c
    assert c["uri"].startswith(PS_COLL)
    assert all(m["eTag"] and m["id"] and m["uri"] for m in c["members"])
    c = members(srv, PS_COLL + "?start=0&count=-1")
    assert c["count"] == 25 and c["total"] == 25 and c["nextPageUri"] is None

    c = members(srv, PS_COLL + "?start=0&count=10")
    assert (c["start"], c["count"], c["total"], c["prevPageUri"]) == (0, 10, 25, None), c
    assert c["nextPageUri"] and "start=10" in c["nextPageUri"] and "count=10" in c["nextPageUri"], c
    seen, pages, uri = [], 0, PS_COLL + "?start=0&count=10"
    while uri:
        c = members(srv, uri)
        pages += 1
        seen += names(c)
        assert c["total"] == 25
        if c["start"] > 0:
            assert c["prevPageUri"] and "start=%d" % max(0, c["start"] - 10) in c["prevPageUri"], c
        assert c["nextPageUri"] != c["uri"]
        uri = c["nextPageUri"]
        assert pages < 10
    assert pages == 3 and c["count"] == 5 and c["start"] == 20
    assert sorted(seen) == ["Page script %02d" % i for i in range(25)] and len(set(seen)) == 25
    # prevPageUri of a middle page leads back
    mid = members(srv, PS_COLL + "?start=10&count=10")
    back = members(srv, mid["prevPageUri"])
    assert back["start"] == 0 and back["count"] == 10
    # beyond the end
    c = members(srv, PS_COLL + "?start=30&count=10")
    assert c["members"] == [] and c["total"] == 25 and c["nextPageUri"] is None
    c = members(srv, PS_COLL + "?start=24")
    assert c["count"] == 1
    c = members(srv, PS_COLL + "?count=0")
    assert c["count"] == 0 and c["total"] == 25
    # paging keeps the filter and the sort
    c = members(srv, PS_COLL + "?count=4&sort=name:desc&filter=" + q("name matches 'Page script 1%'"))
    assert c["total"] == 10 and names(c) == ["Page script %02d" % i for i in (19, 18, 17, 16)]
    c2 = members(srv, c["nextPageUri"])
    assert names(c2) == ["Page script %02d" % i for i in (15, 14, 13, 12)], c2
    assert names(members(srv, c2["nextPageUri"])) == ["Page script 11", "Page script 10"]
    # bad paging parameters
    for bad in ("start=-1", "start=x", "count=-2", "count=abc"):
        expect_error(srv.request("GET", PS_COLL + "?" + bad), 400)


def test_collection_filters(srv):
    for n in ("abc", "abbc", "axc", "ac", "My Script", "My Scripts", "Demo Plan Script"):
        mk_ps(srv, n)
    mk_ps(srv, "cap one", "echo", "capture")
    mk_ps(srv, "cap two", "echo", "Capture")
    mk_ps(srv, "gen", "echo", "general")
    cap_bp = mk_bp(srv, "capture plan", bp_type="capture")
    mk_bp(srv, "deploy plan", bp_type="deploy")

    def f(path, filt, raw_query=False):
        return sorted(names(members(srv, path + "?filter=" + (filt if raw_query else q(filt)))))

    # Python SDK: the double quotes are part of the value (%22name%3D%27...%27%22)
    assert f(PS_COLL, '"name=\'abc\'"') == ["abc"]
    assert f(PS_COLL, "%22name%3D%27Demo%20Plan%20Script%27%22", raw_query=True) == ["Demo Plan Script"]
    assert f(PS_COLL, "name='abc'") == ["abc"]
    assert f(PS_COLL, "name='ABC'") == ["abc"], "values compare case-insensitively"
    assert f(PS_COLL, "name matches 'ab%'") == ["abbc", "abc"]
    assert f(PS_COLL, "name matches 'a_c'") == ["abc", "axc"]
    assert f(PS_COLL, "name matches 'MY SCRIPT%'") == ["My Script", "My Scripts"]
    # Go SDK: url.Values.Encode() turns spaces into '+'
    assert f(PS_COLL, "name+matches+'My+Script'", raw_query=True) == ["My Script"]
    assert f(PS_COLL, "name+matches+%27Demo+Plan+Script%27", raw_query=True) == ["Demo Plan Script"]
    assert f(PS_COLL, '"name matches \'ab%\'"') == ["abbc", "abc"]
    assert f(PS_COLL, '"planType=capture"') == ["cap one", "cap two"]
    # unquoted values
    assert f(PS_COLL, "planType=capture") == ["cap one", "cap two"]
    assert f(PS_COLL, "planType=CAPTURE") == ["cap one", "cap two"]
    assert f(PS_COLL, "planType=general") == ["gen"]
    assert f(BP_COLL, "oeBuildPlanType=capture") == ["capture plan"]
    assert f(BP_COLL, "oeBuildPlanType='Capture'") == ["capture plan"]
    assert f(BP_COLL, "name='" + cap_bp["name"] + "'") == ["capture plan"]
    # several filters are ANDed; query is one more condition
    assert sorted(names(members(srv, PS_COLL + "?filter=planType=capture&filter=" + q("name='cap two'")))) == ["cap two"]
    assert sorted(names(members(srv, PS_COLL + "?query=" + q("planType='capture'")))) == ["cap one", "cap two"]
    assert sorted(names(members(srv, PS_COLL + "?query=" + q("planType='capture'") + "&filter=" + q("name matches '%two'")))) == ["cap two"]
    assert f(PS_COLL, "name='nothing'") == []
    c = members(srv, PS_COLL + "?filter=" + q("name matches 'ab%'"))
    assert c["total"] == 2 and c["count"] == 2
    assert members(srv, PS_COLL + "?filter=&count=-1")["total"] == 10, "an empty filter is ignored"

    # sort
    allnames = names(members(srv, PS_COLL + "?count=-1"))
    up = sorted(allnames, key=str.lower)
    assert names(members(srv, PS_COLL + "?sort=name:asc")) == up
    assert names(members(srv, PS_COLL + "?sort=name:ascending")) == up
    assert names(members(srv, PS_COLL + "?sort=name")) == up
    assert names(members(srv, PS_COLL + "?sort=name:desc")) == up[::-1]
    assert names(members(srv, PS_COLL + "?sort=name:descending")) == up[::-1]
    assert names(members(srv, PS_COLL + "?start=0&count=-1&sort=name%3Aasc")) == up
    assert names(members(srv, PS_COLL + "?sort=name:desc&filter=planType=capture")) == ["cap two", "cap one"]
    assert names(members(srv, PS_COLL + "?sort=name:DESC&filter=planType=capture")) == ["cap two", "cap one"]

    # non-ASCII names (HPE bundles use typographic quotes and dashes), UTF-8 percent-encoded
    uni = "HPE \u2013 ESXi \u201cquoted\u201d 2017"
    mk_ps(srv, uni)
    mk_ps(srv, "Caf\u00e9")
    assert f(PS_COLL, '"name=\'%s\'"' % uni) == [uni]
    assert f(PS_COLL, "name matches 'Caf_'") == ["Caf\u00e9"], "_ is one whole UTF-8 character"
    assert f(PS_COLL, "name='caf\u00e9'") == ["Caf\u00e9"]

    # malformed filters and sorts: 400 with an error body
    for bad in ("name='abc", "name matches", "name=", "(name='x'", "name ~ 'x'", "'"):
        expect_error(srv.request("GET", PS_COLL + "?filter=" + q(bad)), 400)
    expect_error(srv.request("GET", PS_COLL + "?query=" + q("name=(")), 400)
    expect_error(srv.request("GET", PS_COLL + "?sort=" + q("name:sideways")), 400)


# ---- 4. leniency (i3s-api.md §8) ----------------------------------------------------------
def test_leniency_types_and_booleans(srv):
    # type is optional, and any known variant is accepted
    ps = expect(srv.request("POST", PS_COLL, {"name": "No type", "planType": "deploy", "content": "echo @X@"}), 201)
    assert ps["type"] == "PlanScript"
    for t in ("OeBuildPlan", "OeBuildPlanV5", "oebuildplanv5", None):
        body = {"name": "BP type %s" % t, "oeBuildPlanType": "deploy", "buildStep": [step(1, ps)]}
        if t:
            body["type"] = t
        expect(srv.request("POST", BP_COLL, body), 201)
    bp = get(srv, BP_COLL + "?filter=" + q("name='BP type None'"))["members"][0]
    for t in ("OEDeploymentPlan", "OEDeploymentPlanV5", "OeDeploymentPlanV5", None):
        body = {"name": "DP type %s" % t, "oeBuildPlanURI": bp["uri"]}
        if t:
            body["type"] = t
        expect(srv.request("POST", DP_COLL, body), 201)
    expect_error(srv.request("POST", PS_COLL, {"type": "OeBuildPlan", "name": "wrong", "planType": "deploy",
                                               "content": ""}), 400)
    expect_error(srv.request("POST", BP_COLL, {"type": "PlanScript", "name": "wrong", "oeBuildPlanType": "deploy"}), 400)
    # string booleans
    p = expect(srv.request("POST", PS_COLL, {"name": "String bools", "planType": "deploy", "content": "",
                                             "hpProvided": "false", "readOnly": "false"}), 201)
    assert p["hpProvided"] is False and p["readOnly"] is False
    p = expect(srv.request("POST", PS_COLL, {"name": "String bools 2", "planType": "General", "content": "",
                                             "hpProvided": "FALSE"}), 201)
    assert p["hpProvided"] is False and p["planType"] == "General"
    d = mk_dp(srv, "String bool attrs", get(srv, BP_COLL + "?filter=" + q("name='BP type None'"))["members"][0],
              [{"name": "X", "value": "v", "visible": "false", "editable": "true"}])
    x = by_name(d["customAttributes"])["X"]
    assert x["visible"] is False and x["editable"] is True and x["value"] == "v", x
    expect_error(srv.request("POST", PS_COLL, {"name": "Bad bool", "planType": "deploy", "content": "",
                                               "hpProvided": "xyz"}), 400)
    # validation of the basics still happens
    expect_error(srv.request("POST", PS_COLL, {"name": "", "planType": "deploy", "content": ""}), 400)
    expect_error(srv.request("POST", PS_COLL, {"planType": "deploy", "content": ""}), 400)
    expect_error(srv.request("POST", PS_COLL, {"name": "Bad planType", "planType": "install", "content": ""}), 400)
    expect_error(srv.request("POST", PS_COLL, {"name": "x" * 256, "planType": "deploy", "content": ""}), 400)
    expect_error(srv.request("POST", PS_COLL, {"name": "Misspelt", "planType": "deploy", "contents": ""}), 400)
    expect_error(srv.request("POST", BP_COLL, {"name": "Bad BP type", "oeBuildPlanType": "general"}), 400)
    expect_error(srv.request("POST", PS_COLL, raw="{not json"), 400)
    expect_error(srv.request("POST", PS_COLL, raw="[1,2]", headers={"Content-Type": "application/json"}), 400)
    assert members(srv, PS_COLL)["total"] == 3


def test_leniency_headers_and_paths(srv):
    tok = srv.token
    # X-API-Version: missing, low, high, clamped; header name in any case
    for hdrs in ({"auth": tok}, {"auth": tok, "X-API-Version": "300"}, {"auth": tok, "X-API-Version": "600"},
                 {"auth": tok, "X-API-Version": "99999"}, {"auth": tok, "X-Api-Version": "800"},
                 {"Auth": tok, "x-api-version": "1200"}, {"AUTH": tok, "X-API-Version": "2020"}):
        c = expect(raw(srv, "GET", PS_COLL, headers=hdrs), 200)
        assert "members" in c, hdrs
    for i, v in enumerate(("300", "99999")):
        r = raw(srv, "POST", PS_COLL, json.dumps({"name": "Version %s" % v, "planType": "deploy", "content": ""}),
                {"auth": tok, "X-API-Version": v, "Content-Type": "application/json"})
        expect(r, 201)
    r = raw(srv, "POST", PS_COLL, json.dumps({"name": "No version", "planType": "deploy", "content": ""}),
            {"Auth": tok, "Content-Type": "application/json"})
    expect(r, 201)
    for v in ("200", "abc", "299", "-1", "3OO"):
        expect_error(raw(srv, "GET", PS_COLL, headers={"auth": tok, "X-API-Version": v}), 400)
        expect_error(raw(srv, "POST", PS_COLL, json.dumps({"name": "Bad version " + v, "planType": "deploy",
                                                          "content": ""}),
                         {"auth": tok, "X-API-Version": v, "Content-Type": "application/json"}), 400)
    assert sorted(names(members(srv, PS_COLL))) == ["No version", "Version 300", "Version 99999"]
    # /rest/version needs no header at all (Ruby SDK)
    v = expect(raw(srv, "GET", "/rest/version"), 200)
    assert v["currentVersion"] >= 300 and v["minimumVersion"] == 300, v

    # Content-Type variants: Go's charset, none at all (Ruby), text/plain, "none"
    for i, ct in enumerate(("application/json; charset=utf-8", None, "text/plain;charset=UTF-8", "none")):
        h = {"auth": tok, "X-API-Version": "600"}
        if ct:
            h["Content-Type"] = ct
        expect(raw(srv, "POST", PS_COLL, json.dumps({"name": "CT %d" % i, "planType": "deploy", "content": ""}), h), 201)
    expect_error(raw(srv, "POST", PS_COLL, json.dumps({"name": "CT xml", "planType": "deploy", "content": ""}),
                     {"auth": tok, "Content-Type": "application/xml"}), 415)

    # trailing slashes
    ps = mk_ps(srv, "Slash script", "echo @A@")
    assert "members" in get(srv, PS_COLL + "/")
    assert get(srv, ps["uri"] + "/")["id"] == ps["id"]
    body = get(srv, ps["uri"])
    body["description"] = "changed via slash"
    assert expect(srv.request("PUT", ps["uri"] + "/", body), 200)["description"] == "changed via slash"
    r = srv.request("POST", PS_COLL + "/", {"name": "Posted with slash", "planType": "deploy", "content": ""})
    created = expect(r, 201)
    assert r.headers["location"] == created["uri"]
    bp = mk_bp(srv, "Slash plan", [ps])
    dp = mk_dp(srv, "Slash dp", bp)
    assert expect(srv.request("GET", dp["uri"] + "/usedby/"), 200) == []
    assert expect(srv.request("GET", dp["uri"] + "/osdp/"), 200)["nativePlanUri"] == dp["uri"]
    assert isinstance(expect(srv.request("GET", ps["uri"] + "/usedby/readonly/"), 200), list)
    expect(srv.request("POST", "/rest/plan-scripts/differences/%s/" % ps["id"], raw=""), 200)
    assert srv.request("DELETE", dp["uri"] + "/").status == 204
    assert srv.request("DELETE", created["uri"] + "/").status == 204
    expect_error(srv.request("GET", created["uri"]), 404)
    # Python appends ?force=True to deletes
    assert srv.request("DELETE", bp["uri"] + "?force=True").status == 204
    expect_error(srv.request("GET", bp["uri"]), 404)


def test_leniency_bundle_bodies(srv):
    # bodies as found in exported bundles: server fields null, "etag" duplicate, ids
    ps_body = {"type": "PlanScript", "uri": None, "category": None, "eTag": None, "created": None,
               "modified": None, "id": "b748d031-d5fe-40af-8f93-9f659d057742",
               "name": "HPE - ESXi - umount - 2017-03-15", "description": "Cleanup and unmount file systems",
               "status": None, "state": None, "planType": "general",
               "content": "echo \"Remove ImageStreamer temp directory\"\nrm-rf /ImageStreamer\n\necho \"Unmount file systems\"\numount /\necho",
               "customAttributes": None, "hpProvided": False, "dependentArtifacts": None}
    r = srv.request("POST", PS_COLL, ps_body)
    ps = expect(r, 201)
    check_common(ps, "plan-scripts", r)
    assert ps["customAttributes"] == "[]" and ps["content"] == ps_body["content"]
    ps2 = mk_ps(srv, "Bundle deploy script", "echo @VolumeSize@", description=None, customAttributes=None)
    assert ps2["description"] == ""
    bp_body = {"type": "OeBuildPlan", "buildPlanid": "81811fac-4cbc-4dd2-9e51-1a4c6d7551ae",
               "oeBuildPlanType": "deploy", "name": "HPE - Foundation 1.0 - create empty OS Volume-2017-10-13",
               "hpProvided": False,
               "customAttributes": [{"constraints": "{\"minimum\":\"1\",\"maximum\":\"51200\",\"unit\":\"MiB\"}",
                                     "description": "Size of new OS Volume to be created.", "name": "VolumeSize",
                                     "value": "", "type": "number"}],
               "buildStep": [{"planScriptName": ps2["name"], "planScriptUri": ps2["uri"], "serialNumber": "1",
                              "parameters": None}],
               "description": "...", "dependentArtifacts": None, "eTag": None, "etag": None, "created": None,
               "modified": None, "category": None, "status": None, "uri": None, "state": None}
    r = srv.request("POST", BP_COLL, bp_body)
    bp = expect(r, 201)
    check_common(bp, "build-plans", r)
    assert bp["buildPlanid"] == bp["id"] and bp["buildStep"][0]["planScriptUri"] == ps2["uri"]
    # deployment plan: oeBuildPlanURI holds the build plan's NAME in bundles
    dp_body = {"type": "OEDeploymentPlan", "id": "3078a850-1870-4321-aa23-ea323a9e54a0", "hpProvided": False,
               "name": "HPE - Foundation 1.0 - create empty OS Volume-2017-10-13",
               "oeBuildPlanURI": bp["name"], "goldenImageURI": None, "importMetadata": False,
               "customAttributes": [{"constraints": "{\"minimum\":\"1\",\"maximum\":\"51200\",\"unit\":\"MiB\"}",
                                     "visible": True, "editable": True,
                                     "description": "Size of new OS Volume to be created.", "name": "VolumeSize",
                                     "value": "1024", "id": "c9de9ede-9477-43c5-8fd8-f69c2e23774e",
                                     "type": "number"}],
               "uri": None, "eTag": None, "created": None, "modified": None, "category": None,
               "status": None, "state": None, "description": None, "dependentArtifacts": None}
    r = srv.request("POST", DP_COLL, dp_body)
    dp = expect(r, 201)
    check_common(dp, "deployment-plans", r)
    assert dp["oeBuildPlanURI"] == bp["uri"], "a build plan name resolves to its URI"
    assert dp["goldenImageURI"] in ("", None)
    vs = by_name(dp["customAttributes"])["VolumeSize"]
    assert vs["value"] == "1024" and vs["type"] == "number", vs
    assert get(srv, bp["uri"])["dependentArtifacts"] == [{"name": dp["name"], "uri": dp["uri"]}]
    # unknown build plan names / URIs are refused
    dp_body["name"] = "other"
    dp_body["oeBuildPlanURI"] = "No such build plan"
    expect_error(srv.request("POST", DP_COLL, dp_body), 400)
    dp_body["oeBuildPlanURI"] = "/rest/build-plans/00000000-0000-4000-8000-000000000000"
    expect_error(srv.request("POST", DP_COLL, dp_body), 400)
    bp_body["name"] = "other"
    bp_body["buildStep"][0]["planScriptUri"] = "/rest/plan-scripts/00000000-0000-4000-8000-000000000000"
    expect_error(srv.request("POST", BP_COLL, bp_body), 400)
    # a GET body can be PUT back as it is (the JV/PY update pattern)
    for u in (ps["uri"], bp["uri"], dp["uri"]):
        doc = get(srv, u)
        again = expect(srv.request("PUT", u, doc), 200)
        assert again["name"] == doc["name"] and again["eTag"] != doc["eTag"]


# ---- 5. eTag, uniqueness, integrity, read-only, differences, usedby --------------------------
def test_etag_if_match(srv):
    ps = mk_ps(srv, "Etag script", "echo 1")
    e1 = ps["eTag"]
    body = dict(ps, content="echo 2")
    u = expect(srv.request("PUT", ps["uri"], body, headers={"If-Match": "*"}), 200)
    assert u["content"] == "echo 2" and u["eTag"] != e1
    e2 = u["eTag"]
    u = expect(srv.request("PUT", ps["uri"], dict(body, content="echo 3"), headers={"If-Match": e2}), 200)
    e3 = u["eTag"]
    assert e3 != e2
    # stale eTag: 412 and nothing changes
    r = srv.request("PUT", ps["uri"], dict(body, content="echo stale"), headers={"If-Match": e1})
    expect_error(r, 412)
    now = get(srv, ps["uri"])
    assert now["content"] == "echo 3" and now["eTag"] == e3
    expect_error(srv.request("DELETE", ps["uri"], headers={"If-Match": e2}), 412)
    assert get(srv, ps["uri"])["eTag"] == e3
    # the quoted RFC 7232 form of the current eTag works
    u = expect(srv.request("PUT", ps["uri"], dict(body, content="echo 4"), headers={"If-Match": '"%s"' % e3}), 200)
    # same for build plans and deployment plans
    bp = mk_bp(srv, "Etag plan", [ps])
    expect_error(srv.request("PUT", bp["uri"], dict(bp, description="x"), headers={"If-Match": "1/1"}), 412)
    assert get(srv, bp["uri"])["description"] == "test build plan"
    dp = mk_dp(srv, "Etag dp", bp)
    expect_error(srv.request("DELETE", dp["uri"], headers={"If-Match": dp["eTag"] + "0"}), 412)
    assert srv.request("DELETE", dp["uri"], headers={"If-Match": dp["eTag"]}).status == 204
    assert srv.request("DELETE", bp["uri"], headers={"If-Match": "*"}).status == 204
    # the plan script's eTag moved when build plans started and stopped using it
    assert get(srv, ps["uri"])["eTag"] != u["eTag"]
    expect_error(srv.request("DELETE", ps["uri"], headers={"If-Match": u["eTag"]}), 412)
    assert srv.request("DELETE", ps["uri"], headers={"If-Match": get(srv, ps["uri"])["eTag"]}).status == 204


def test_unique_names(srv):
    ps = mk_ps(srv, "Unique")
    other = mk_ps(srv, "Other")
    expect_error(srv.request("POST", PS_COLL, {"name": "Unique", "planType": "deploy", "content": "x"}), 409,
                 mentions=("Unique",))
    # rename onto an existing name: 409 and unchanged
    expect_error(srv.request("PUT", other["uri"], dict(other, name="Unique")), 409)
    assert get(srv, other["uri"])["name"] == "Other"
    # the same name in another collection is fine
    bp = mk_bp(srv, "Unique", [ps])
    expect_error(srv.request("POST", BP_COLL, {"name": "Unique", "oeBuildPlanType": "deploy"}), 409)
    bp2 = mk_bp(srv, "Unique 2")
    expect_error(srv.request("PUT", bp2["uri"], dict(bp2, name="Unique")), 409)
    assert get(srv, bp2["uri"])["name"] == "Unique 2"
    dp = mk_dp(srv, "Unique", bp)
    expect_error(srv.request("POST", DP_COLL, {"name": "Unique", "oeBuildPlanURI": bp["uri"]}), 409)
    dp2 = mk_dp(srv, "Unique 2", bp)
    expect_error(srv.request("PUT", dp2["uri"], dict(dp2, name="Unique")), 409)
    assert get(srv, dp2["uri"])["name"] == "Unique 2"
    # concurrent creates of one name: exactly one wins
    import threading
    statuses = []

    def create():
        statuses.append(srv.request("POST", PS_COLL, {"name": "Race", "planType": "deploy", "content": ""}).status)
    threads = [threading.Thread(target=create) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 11, statuses
    assert len(members(srv, PS_COLL + "?filter=" + q("name='Race'"))["members"]) == 1
    assert srv.request("DELETE", members(srv, PS_COLL + "?filter=" + q("name='Race'"))["members"][0]["uri"]).status == 204
    # renaming to its own name, and freeing a name by deleting, work
    expect(srv.request("PUT", dp["uri"], dict(dp, description="same name")), 200)
    assert srv.request("DELETE", dp["uri"]).status == 204
    expect(srv.request("PUT", dp2["uri"], dict(get(srv, dp2["uri"]), name="Unique")), 200)
    assert members(srv, DP_COLL)["total"] == 1 and members(srv, PS_COLL)["total"] == 2


def test_referential_integrity(srv):
    ps = mk_ps(srv, "Used script")
    bp = mk_bp(srv, "Using plan", [ps])
    dp = mk_dp(srv, "Using deployment", bp)
    expect_error(srv.request("DELETE", ps["uri"]), 409, mentions=("Using plan",))
    expect_error(srv.request("DELETE", bp["uri"]), 409, mentions=("Using deployment",))
    assert get(srv, ps["uri"])["name"] == "Used script"
    assert get(srv, bp["uri"])["name"] == "Using plan"
    assert srv.request("DELETE", dp["uri"]).status == 204
    assert srv.request("DELETE", bp["uri"]).status == 204
    assert get(srv, ps["uri"])["dependentArtifacts"] == []
    assert srv.request("DELETE", ps["uri"]).status == 204
    assert members(srv, PS_COLL)["total"] == 0
    # a build plan step pointing at a deleted script cannot be created
    r = srv.request("POST", BP_COLL, {"name": "Dangling", "oeBuildPlanType": "deploy",
                                      "buildStep": [{"serialNumber": "1", "planScriptUri": ps["uri"]}]})
    expect_error(r, 400)
    assert members(srv, BP_COLL)["total"] == 0


def test_read_only(srv):
    ro_docs = [
        mk_ps(srv, "HP script", "echo @A@", hpProvided=True),
        mk_ps(srv, "RO script", "echo @A@", readOnly=True),
        mk_ps(srv, "HP string script", "echo", hpProvided="true"),
    ]
    ps = mk_ps(srv, "Writable script")
    ro_docs.append(mk_bp(srv, "HP plan", [ps], hpProvided=True))
    ro_docs.append(mk_bp(srv, "RO plan", [ps], readOnly="true"))
    bp = mk_bp(srv, "Writable plan", [ps])
    ro_docs.append(mk_dp(srv, "HP dp", bp, hpProvided=True))
    ro_docs.append(mk_dp(srv, "RO dp", bp, readOnly=True))
    for d in ro_docs:
        assert d["hpProvided"] is True or d["readOnly"] is True, d
        before = get(srv, d["uri"])
        expect_error(srv.request("PUT", d["uri"], dict(before, description="changed")), 409)
        expect_error(srv.request("PUT", d["uri"], dict(before, hpProvided=False, readOnly=False)), 409)
        expect_error(srv.request("DELETE", d["uri"]), 409)
        expect_error(srv.request("DELETE", d["uri"], headers={"If-Match": "*"}), 409)
        after = get(srv, d["uri"])
        assert after == before, (before, after)


def test_differences(srv):
    ps = mk_ps(srv, "Diff script", "echo @A@ @B:1@ @C@ @N.mac@")
    url = "/rest/plan-scripts/differences/" + ps["id"]
    # Python / Java: a JSON string literal
    d = expect(srv.request("POST", url, "echo @A@ @B:2@ @D@ @N.mac@ @E:x@"), 200)
    assert d == {"caAdded": ["D", "E"], "caRemoved": ["C"], "contentChanged": True,
                 "defaultValueChanged": ["B"]}, d
    d = expect(srv.request("POST", url, "echo @A@ @B:1@ @C@ @N.mac@"), 200)
    assert d == {"caAdded": [], "caRemoved": [], "contentChanged": False, "defaultValueChanged": []}, d
    d = expect(srv.request("POST", url, "echo  @A@ @B:1@ @C@ @N.mac@"), 200)
    assert d == {"caAdded": [], "caRemoved": [], "contentChanged": True, "defaultValueChanged": []}, d
    d = expect(srv.request("POST", url, 'echo "x"'), 200)
    assert d["caRemoved"] == ["A", "B", "C", "N.mac"] and d["caAdded"] == [] and d["contentChanged"] is True, d
    # Ruby: no body and no Content-Type at all
    r = raw(srv, "POST", url, headers={"auth": srv.token, "X-API-Version": "300"})
    d = expect(r, 200)
    assert d == {"caAdded": [], "caRemoved": [], "contentChanged": False, "defaultValueChanged": []}, d
    r = raw(srv, "POST", url, "", {"auth": srv.token, "Content-Type": "text/plain"})
    assert expect(r, 200)["contentChanged"] is False
    # Java: JSON string with an explicit charset
    r = raw(srv, "POST", url, json.dumps("echo @Z@"), {"auth": srv.token, "Content-Type": "application/json; charset=UTF-8"})
    d = expect(r, 200)
    assert d["caAdded"] == ["Z"] and d["caRemoved"] == ["A", "B", "C", "N.mac"], d
    # nothing was changed by any of this
    assert get(srv, ps["uri"])["eTag"] == ps["eTag"]
    expect_error(srv.request("POST", "/rest/plan-scripts/differences/00000000-0000-4000-8000-000000000000", "x"), 404)
    expect_error(srv.request("POST", url, 42), 400)
    expect_error(srv.request("POST", url, raw="{bad"), 400)
    expect_error(srv.request("GET", url), 405)


def test_usedby_and_osdp(srv):
    ps = mk_ps(srv, "Usedby script", "echo @HostName@ @Hidden:x@")
    other = mk_ps(srv, "Unused script")
    assert expect(srv.request("GET", ps["uri"] + "/usedby/readonly"), 200) == []
    bp_rw = mk_bp(srv, "RW plan", [ps])
    bp_ro = mk_bp(srv, "RO plan", [ps], readOnly=True)
    bp_hp = mk_bp(srv, "HP plan", [ps, other], hpProvided=True)
    used = expect(srv.request("GET", ps["uri"] + "/usedby/readonly"), 200)
    assert isinstance(used, list) and sorted(u["name"] for u in used) == ["HP plan", "RO plan"], used
    assert all(u["uri"] in (bp_ro["uri"], bp_hp["uri"]) for u in used)
    assert [u["name"] for u in expect(srv.request("GET", other["uri"] + "/usedby/readonly"), 200)] == ["HP plan"]
    expect_error(srv.request("GET", "/rest/plan-scripts/00000000-0000-4000-8000-000000000000/usedby/readonly"), 404)

    dp = mk_dp(srv, "Usedby dp", bp_rw, [{"name": "Hidden", "value": "y", "visible": False},
                                          {"name": "HostName", "value": "h1", "editable": False}])
    u = expect(srv.request("GET", dp["uri"] + "/usedby"), 200)
    assert u == [], u
    assert [x["name"] for x in expect(srv.request("GET", bp_rw["uri"] + "/usedby"), 200)] == ["Usedby dp"]
    assert expect(srv.request("GET", bp_ro["uri"] + "/usedby"), 200) == []
    expect_error(srv.request("GET", "/rest/deployment-plans/00000000-0000-4000-8000-000000000000/usedby"), 404)

    o = expect(srv.request("GET", dp["uri"] + "/osdp"), 200)
    assert o["type"] == "Osdp" and o["deploymentType"] == "i3s" and o["nativePlanUri"] == dp["uri"], o
    assert o["name"] == "Usedby dp"
    params = o["additionalParameters"]
    assert [p["name"] for p in params] == ["HostName"], params
    p = params[0]
    assert p["value"] == "h1" and p["caEditable"] is False and UUID.match(p["caId"]), p
    assert p["caType"] == "string" and isinstance(p["caConstraints"], str), p
    assert p["caId"] == by_name(get(srv, dp["uri"])["customAttributes"])["HostName"]["id"]
    expect_error(srv.request("GET", "/rest/deployment-plans/00000000-0000-4000-8000-000000000000/osdp"), 404)
    expect_error(srv.request("POST", dp["uri"] + "/osdp", {}), 405)


# ---- secrets across updates -------------------------------------------------------------------
def stored_doc(srv, coll, rid):
    """The document as the server stored it (white-box: the SQLite file, read-only),
    for values the API never returns (passwords)."""
    import os
    import sqlite3
    path = os.path.join(srv.data_dir, "streamer.db")
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        row = con.execute("SELECT body FROM docs WHERE coll = ? AND id = ?", (coll, rid)).fetchone()
    finally:
        con.close()
    assert row, (coll, rid)
    return json.loads(row[0])


def stored_values(srv, coll, rid):
    return {a["name"]: a["value"] for a in stored_doc(srv, coll, rid)["customAttributes"]}


def test_masked_passwords_survive_round_trips(srv):
    ps = mk_ps(srv, "Roundtrip script", "echo @Password@ @Other@")
    bp = mk_bp(srv, "Roundtrip plan", [ps], [decl("Password", "password", SECRET, {"maxlen": "12"}),
                                              decl("Other", "string", "o", {})])
    dp = mk_dp(srv, "Roundtrip dp", bp, [{"name": "Password", "value": SECRET2}])
    assert stored_values(srv, "build-plans", bp["id"])["Password"] == SECRET
    assert stored_values(srv, "deployment-plans", dp["id"])["Password"] == SECRET2
    # GET then PUT the same body (Python / Java update pattern): the masked ""
    # must not wipe the stored password
    for uri, coll, rid, secret in ((bp["uri"], "build-plans", bp["id"], SECRET),
                                   (dp["uri"], "deployment-plans", dp["id"], SECRET2)):
        doc = get(srv, uri)
        assert by_name(doc["customAttributes"])["Password"]["value"] == ""
        r = srv.request("PUT", uri, dict(doc, description="round trip"))
        expect(r, 200)
        assert_no_secret(r)
        assert stored_values(srv, coll, rid)["Password"] == secret, coll
    # a new value replaces it
    doc = get(srv, bp["uri"])
    for a in doc["customAttributes"]:
        if a["name"] == "Password":
            a["value"] = "NewSecret1"
    expect(srv.request("PUT", bp["uri"], doc), 200)
    assert stored_values(srv, "build-plans", bp["id"])["Password"] == "NewSecret1"

    # retyping the attribute password -> string must not reveal the old secret
    doc = get(srv, bp["uri"])
    for a in doc["customAttributes"]:
        if a["name"] == "Password":
            a["type"] = "string"
            a["constraints"] = "{}"
    r = srv.request("PUT", bp["uri"], doc)
    expect(r, 200)
    assert "NewSecret1" not in r.body
    assert by_name(get(srv, bp["uri"])["customAttributes"])["Password"]["type"] == "string"
    d = get(srv, dp["uri"])
    r = srv.request("PUT", dp["uri"], d)           # the unchanged GET body
    expect(r, 200)
    assert_no_secret(r, SECRET, SECRET2, "NewSecret1")
    r = srv.request("GET", dp["uri"])
    assert_no_secret(r, SECRET, SECRET2, "NewSecret1")
    pw = by_name(r.json()["customAttributes"])["Password"]
    assert pw["type"] == "string" and pw["value"] == "", pw
    r = srv.request("GET", bp["uri"])
    assert_no_secret(r, SECRET, SECRET2, "NewSecret1")


def test_too_many_filters(srv):
    mk_ps(srv, "F")
    sixteen = "&".join(["filter=" + q("name='F'")] * 16)
    assert expect(srv.request("GET", PS_COLL + "?" + sixteen), 200)["total"] == 1
    # a 17th filter must not be dropped silently (it would widen the result)
    expect_error(srv.request("GET", PS_COLL + "?" + sixteen + "&filter=" + q("name='nothing'")), 400)
