"""test_negative.py — the negative suite: every bad request gets the right 4xx.

For each case the reply must carry the expected 4xx status, a body that is
HPE error JSON (errorCode, message, details, recommendedActions list,
nestedErrors list), no request may ever get a 5xx, and the store must be
unchanged: the full GET listings of plan scripts, build plans, deployment
plans, users and tasks (members with their eTags) are compared before and
after every case.
"""
import json
import random
import re
import socket

import harness

LISTED = ["plan-scripts", "build-plans", "deployment-plans", "users", "tasks"]
ARTIFACTS = ["plan-scripts", "build-plans", "deployment-plans"]
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


# ---- checks --------------------------------------------------------------------------------
def check_error_json(doc, where):
    """doc is an HPE error object (recursively for nestedErrors)."""
    assert isinstance(doc, dict), "%s: error body is not an object: %r" % (where, doc)
    for k in ("errorCode", "message"):
        assert isinstance(doc.get(k), str) and doc[k], "%s: %s missing or empty: %r" % (where, k, doc)
    assert isinstance(doc.get("details"), str), "%s: details missing: %r" % (where, doc)
    ra = doc.get("recommendedActions")
    assert isinstance(ra, list) and all(isinstance(a, str) for a in ra), "%s: recommendedActions: %r" % (where, doc)
    ne = doc.get("nestedErrors")
    assert isinstance(ne, list), "%s: nestedErrors is not a list: %r" % (where, doc)
    for n in ne:
        check_error_json(n, where + " (nested)")


def check_error(r, status, where=""):
    assert r.status < 500, "%s: server error %r" % (where, r)
    if isinstance(status, int):
        status = (status,)
    assert r.status in status, "%s: expected %s, got %r" % (where, "/".join(map(str, status)), r)
    assert r.headers.get("content-type", "").startswith("application/json"), "%s: %r" % (where, r.headers)
    try:
        doc = json.loads(r.body)
    except ValueError:
        raise AssertionError("%s: error body is not JSON: %r" % (where, r.body[:300]))
    check_error_json(doc, where)
    return doc


def snapshot(srv):
    """Everything a client can list, as parsed JSON (members include eTags)."""
    snap = {}
    for c in LISTED:
        r = srv.request("GET", "/rest/%s" % c, token=srv.token)
        assert r.status == 200, r
        snap[c] = r.json()
    return snap


def assert_same(before, after, where):
    for c in LISTED:
        if before[c] != after[c]:
            b = {m.get("uri") or m.get("id"): m for m in before[c]["members"]}
            a = {m.get("uri") or m.get("id"): m for m in after[c]["members"]}
            diff = [u for u in set(a) | set(b) if a.get(u) != b.get(u)]
            raise AssertionError("%s: %s changed on a failed request: %r" % (where, c, diff[:5]))


def assert_no_5xx_logged(srv):
    for line in srv.read_log().splitlines():
        assert " -> 5" not in line, "a request got a 5xx: " + line


class Neg:
    """Run negative cases against a server, checking status, error JSON and the store."""

    def __init__(self, srv):
        self.srv = srv
        self.count = 0

    def expect(self, status, method, path, body=None, raw=None, headers=None, token=None,
               auth=True, what=""):
        where = "%s %s %s" % (method, path[:120], what)
        before = snapshot(self.srv)
        kw = {}
        if token is not None:
            kw["token"] = token
        r = self.srv.request(method, path, body=body, raw=raw, headers=headers, auth=auth, **kw)
        doc = check_error(r, status, where)
        assert_same(before, snapshot(self.srv), where)
        self.count += 1
        return doc


# ---- fixtures -------------------------------------------------------------------------------
BP_DECLS = [
    {"name": "Count", "type": "number", "value": "10",
     "constraints": json.dumps({"minimum": "1", "maximum": "100", "increment": "1"})},
    {"name": "Host", "type": "hostname", "value": "host1", "constraints": "{}"},
    {"name": "Addr", "type": "ipv4", "value": "10.0.0.1", "constraints": "{}"},
    {"name": "Mode", "type": "option", "value": "on", "constraints": json.dumps({"options": ["on", "off"]})},
    {"name": "Code", "type": "string", "value": "Abc", "constraints": json.dumps({"regex": "[A-Z][a-z]*"})},
    {"name": "Domain", "type": "fqdn", "value": "a.example.com", "constraints": "{}"},
    {"name": "Secret", "type": "password", "value": "",
     "constraints": json.dumps({"minlen": "8", "maxlen": "12"})},
]


def seed(srv):
    """A plan script, a build plan using it, a deployment plan using that, a read-only
    plan script. Returns a dict of their documents."""
    def post(coll, body):
        r = srv.request("POST", "/rest/" + coll, body)
        assert r.status in (200, 201), r
        return r.json()

    ps = post("plan-scripts", {"type": "PlanScript", "name": "Neg PS", "description": "seed",
                               "planType": "deploy", "content": "echo @Greeting:hello@ @Count@ @Host@"})
    ro = post("plan-scripts", {"type": "PlanScript", "name": "Neg RO PS", "planType": "general",
                               "content": "true", "hpProvided": True})
    bp = post("build-plans", {"type": "OeBuildPlanV5", "name": "Neg BP", "oeBuildPlanType": "deploy",
                              "buildStep": [{"serialNumber": "1", "planScriptUri": ps["uri"],
                                             "parameters": ""}],
                              "customAttributes": BP_DECLS})
    dp = post("deployment-plans", {"type": "OEDeploymentPlanV5", "name": "Neg DP",
                                   "oeBuildPlanURI": bp["uri"], "goldenImageURI": "",
                                   "customAttributes": [{"name": "Count", "value": "20"}]})
    fx = {"ps": ps, "ro": ro, "bp": bp, "dp": dp}
    for k, doc in fx.items():  # current revisions (dependentArtifacts changed eTags)
        r = srv.request("GET", doc["uri"])
        assert r.status == 200, r
        fx[k] = r.json()
    return fx


def valid_bodies(fx):
    """One valid new body per collection (each case changes one thing)."""
    return {
        "plan-scripts": {"type": "PlanScript", "name": "New PS", "description": "d",
                         "planType": "deploy", "content": "echo hi"},
        "build-plans": {"type": "OeBuildPlan", "name": "New BP", "description": "",
                        "oeBuildPlanType": "deploy",
                        "buildStep": [{"serialNumber": "1", "planScriptUri": fx["ps"]["uri"],
                                       "parameters": ""}],
                        "customAttributes": []},
        "deployment-plans": {"type": "OEDeploymentPlan", "name": "New DP",
                             "oeBuildPlanURI": fx["bp"]["uri"], "goldenImageURI": "",
                             "customAttributes": []},
    }


KEY = {"plan-scripts": "ps", "build-plans": "bp", "deployment-plans": "dp"}


def with_field(base, key, value):
    b = json.loads(json.dumps(base))
    if value is DELETE:
        b.pop(key, None)
    else:
        b[key] = value
    return b


DELETE = object()


def post_and_put(neg, fx, coll, body, status=400, what=""):
    """The same bad body as a create and as an update of the seeded resource."""
    neg.expect(status, "POST", "/rest/" + coll, body=body, what=what)
    cur = fx[KEY[coll]]
    upd = json.loads(json.dumps(body))
    if isinstance(upd, dict):
        upd["uri"] = cur["uri"]
        upd["eTag"] = cur["eTag"]
    neg.expect(status, "PUT", cur["uri"], body=upd, what=what + " (update)")


# ---- malformed JSON ----------------------------------------------------------------------------
DEEP = b"[" * 100000 + b"]" * 100000


def in_name(v, raw):
    """v with raw bytes inserted at the start of the name's value ("New ...")."""
    assert b'"New ' in v
    return v.replace(b'"New ', b'"New ' + raw, 1)


def malformations(v):
    """Each way of breaking the valid JSON object text v (with a "New ..." string value)
    such that a lenient parser would still have seen a valid body."""
    key, value = re.search(rb'("[A-Za-z]+"): ("New [^"]*")', v).groups()
    return [
        ("truncated", v[:-3]),
        ("missing closing brace", v[:-1]),
        ("trailing garbage", v + b" garbage"),
        ("trailing second object", v + v),
        ("trailing comma", v[:-1] + b",}"),
        ("comment", v[:-1] + b" /* note */}"),
        ("single quotes", v.replace(b'"', b"'")),
        ("unquoted keys", re.sub(rb'"([A-Za-z]+)":', rb"\1:", v)),
        ("invalid UTF-8 in the name", in_name(v, b'\xff\xfe ')),
        ("truncated UTF-8 in the name", in_name(v, b'\xc3')),
        ("overlong UTF-8 in the name", in_name(v, b'\xc0\xaf')),
        ("NUL escape in the name", in_name(v, rb'\u0000')),
        ("NUL escape in a key", v[:-1] + rb', "descr\u0000iption": "x"}'),
        ("raw NUL byte", in_name(v, b'\x00')),
        ("raw control character", in_name(v, b'\x01')),
        ("lone surrogate", in_name(v, rb'\ud800')),
        ("bad escape", in_name(v, rb'\q')),
        ("duplicate keys", b"{" + key + b': "Other", ' + v[1:]),
        ("duplicate keys, same value", v[:-1] + b", " + key + b": " + value + b"}"),
        ("NaN", v[:-1] + b', "description": NaN}'),
        ("Infinity", v[:-1] + b', "description": Infinity}'),
        ("number overflow", v[:-1] + b', "description": 1e99999}'),
        ("deep arrays inside", v[:-1] + b', "description": ' + DEEP + b"}"),
        ("deep objects inside", v[:-1] + b', "description": ' + b'{"a":' * 100000 + b"1" + b"}" * 100000 + b"}"),
        ("deep arrays", DEEP),
        ("top-level array", b"[" + v + b"]"),
        ("top-level empty array", b"[]"),
        ("top-level string", json.dumps(v.decode()).encode()),
        ("top-level number", b"42"),
        ("top-level huge number", b"1" + b"0" * 400),
        ("top-level true", b"true"),
        ("top-level null", b"null"),
        ("empty body", b""),
        ("only white space", b"   \r\n\t "),
        ("UTF-16", v.decode().encode("utf-16")),
    ]


def test_malformed_json(srv):
    fx = seed(srv)
    neg = Neg(srv)
    json_ct = {"Content-Type": "application/json"}
    bodies = valid_bodies(fx)
    user = json.dumps({"userName": "newuser", "password": "password123",
                       "permissions": [{"roleName": "Read only"}], "fullName": "New user"}).encode()
    login = json.dumps({"userName": "administrator", "password": srv.admin_password(),
                        "authLoginDomain": "LOCAL", "fullName": "New x"}).encode()
    for coll in ARTIFACTS:
        v = json.dumps(bodies[coll]).encode()
        for what, raw in malformations(v):
            neg.expect(400, "POST", "/rest/" + coll, raw=raw, headers=json_ct, what=what)
            neg.expect(400, "PUT", fx[KEY[coll]]["uri"], raw=raw, headers=json_ct, what=what)
    for what, raw in malformations(user.replace(b'"New user"', b'"New u"')):
        neg.expect(400, "POST", "/rest/users", raw=raw, headers=json_ct, what=what)
    for what, raw in malformations(login):
        neg.expect(400, "POST", "/rest/login-sessions", raw=raw, headers=json_ct, auth=False, what=what)
    # A JSON string is the documented body of /differences, but not arbitrary garbage.
    for raw in [b'"abc', b"[1,2]", b'"a\u0000b"', b'"\xff"', b"42"]:
        neg.expect(400, "POST", "/rest/plan-scripts/differences/" + fx["ps"]["id"], raw=raw,
                   headers=json_ct, what=repr(raw))
    # The unbroken bodies are valid: the malformation was the reason for each 400.
    for coll in ARTIFACTS:
        r = srv.request("POST", "/rest/" + coll, raw=json.dumps(bodies[coll]), headers=json_ct)
        assert r.status == 201, r
    r = srv.request("POST", "/rest/users", raw=user, headers=json_ct)
    assert r.status == 201, r
    assert_no_5xx_logged(srv)


# ---- sizes and media types ---------------------------------------------------------------------
def raw_http(port, head, chunks=()):
    """Send a hand-made request; return (status, headers, body). The server may close
    early (413 before the body), so a failed send is fine as long as a reply came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        try:
            s.sendall(head)
            for c in chunks:
                s.sendall(c)
        except OSError:
            pass
        buf = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
                if b"\r\n\r\n" in buf:
                    h, _, rest = buf.partition(b"\r\n\r\n")
                    cl = [ln for ln in h.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                    if cl and len(rest) >= int(cl[0].split(b":")[1]):
                        break
        except OSError:
            pass
    finally:
        s.close()
    assert buf, "no reply"
    h, _, body = buf.partition(b"\r\n\r\n")
    lines = h.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return harness.Response(status, headers, body.decode("utf-8", "replace"))


def test_body_limits():
    with harness.Server(extra_args=["--max-body", "65536"]) as srv:
        tok = srv.login()
        fx = seed(srv)
        neg = Neg(srv)
        body = json.dumps({"name": "Big", "planType": "deploy", "content": "x" * 70000}).encode()
        assert 70000 < len(body) < 72000
        for path, method in [("/rest/plan-scripts", "POST"), (fx["ps"]["uri"], "PUT"),
                             ("/rest/build-plans", "POST"), ("/rest/users", "POST"),
                             ("/rest/login-sessions", "POST")]:
            before = snapshot(srv)
            head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nauth: %s\r\nX-API-Version: 2020\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (method, path, tok, len(body))).encode()
            r = raw_http(srv.port, head + body)
            check_error(r, 413, "%s %s Content-Length" % (method, path))
            assert_same(before, snapshot(srv), "413 with Content-Length")
            # The same body chunked, without Content-Length.
            head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nauth: %s\r\nX-API-Version: 2020\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    % (method, path, tok)).encode()
            chunks = [b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                      for i in range(0, len(body), 4096)] + [b"0\r\n\r\n"]
            r = raw_http(srv.port, head, chunks)
            check_error(r, 413, "%s %s chunked" % (method, path))
            assert_same(before, snapshot(srv), "413 chunked")
        # A lying Content-Length far above the limit is refused before any body is read.
        head = ("POST /rest/plan-scripts HTTP/1.1\r\nHost: 127.0.0.1\r\nauth: %s\r\n"
                "Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n" % tok).encode()
        check_error(raw_http(srv.port, head + b"{}"), 413, "huge Content-Length")
        # Just under the limit is accepted: the limit is the limit.
        ok = json.dumps({"name": "Almost big", "planType": "deploy", "content": "x" * 60000})
        r = srv.request("POST", "/rest/plan-scripts", raw=ok, headers={"Content-Type": "application/json"})
        assert r.status == 201, r
        assert srv.request("GET", "/rest/version").status == 200
        neg.expect(400, "GET", "/rest/plan-scripts?start=x")  # still serving
        assert_no_5xx_logged(srv)


def test_content_type(srv):
    fx = seed(srv)
    neg = Neg(srv)
    good = json.dumps(valid_bodies(fx)["plan-scripts"])
    for ct in ["application/xml", "text/xml", "application/x-www-form-urlencoded",
               "multipart/form-data; boundary=xyz", "image/png", "application/jsonx-not",
               "application/json-patch+json", "text/plainx", "application/octet-streamer", "nonexistent"]:
        neg.expect(415, "POST", "/rest/plan-scripts", raw=good, headers={"Content-Type": ct}, what=ct)
        neg.expect(415, "PUT", fx["ps"]["uri"], raw=good, headers={"Content-Type": ct}, what=ct)
        neg.expect(415, "POST", "/rest/deployment-plans",
                   raw=json.dumps(valid_bodies(fx)["deployment-plans"]), headers={"Content-Type": ct})
    neg.expect(415, "POST", "/rest/users", raw=b"<user/>", headers={"Content-Type": "application/xml"})
    assert_no_5xx_logged(srv)


# ---- wrong field types -----------------------------------------------------------------------------
def test_plan_script_fields(srv):
    fx = seed(srv)
    neg = Neg(srv)
    base = valid_bodies(fx)["plan-scripts"]
    cases = [
        ("name", [DELETE, None, 5, 1.5, True, [], ["x"], {}, {"a": "b"}]),
        ("description", [5, True, [], {}, "d" * 65537]),
        ("planType", [DELETE, None, 5, True, "", "xyz", "deploy ", ["deploy"], {}]),
        ("content", [DELETE, None, 5, True, [], ["echo"], {}]),
        ("hpProvided", ["xyz", 5, "yes", [], {}]),
        ("readOnly", ["maybe", 0, [True]]),
        ("type", ["OeBuildPlan", "PlanScriptX", 5, [], {}]),
    ]
    for key, values in cases:
        for v in values:
            post_and_put(neg, fx, "plan-scripts", with_field(base, key, v),
                         what="%s=%r" % (key, "<absent>" if v is DELETE else v))
    # Misspelt fields are refused, never silently dropped.
    for key in ["contnet", "Name", "plantype", "planScriptType", "customAttributesX", ""]:
        post_and_put(neg, fx, "plan-scripts", with_field(base, key, "echo"), what="unknown " + key)
    assert_no_5xx_logged(srv)


def test_build_plan_fields(srv):
    fx = seed(srv)
    neg = Neg(srv)
    base = valid_bodies(fx)["build-plans"]
    ps_uri = fx["ps"]["uri"]

    def step(**kw):
        s = {"serialNumber": "1", "planScriptUri": ps_uri, "parameters": ""}
        for k, v in kw.items():
            if v is DELETE:
                s.pop(k)
            else:
                s[k] = v
        return s

    field_cases = [
        ("name", [DELETE, None, 5, [], {}]),
        ("description", [5, [], {}]),
        ("oeBuildPlanType", [DELETE, None, "", "xyz", "general", 5, ["deploy"]]),
        ("buildStep", ["x", 5, True, {}, {"serialNumber": "1"}]),
        ("customAttributes", ["x", 5, True, {}, {"name": "A"}, [5], ["A"], [[]], [None]]),
        ("hpProvided", ["xyz", 1]),
        ("readOnly", ["xyz"]),
        ("type", ["PlanScript", "OeBuildPlanV6", 5]),
    ]
    for key, values in field_cases:
        for v in values:
            post_and_put(neg, fx, "build-plans", with_field(base, key, v),
                         what="%s=%r" % (key, "<absent>" if v is DELETE else v))
    bad_steps = [
        ("step not object (number)", [5]),
        ("step not object (string)", [ps_uri]),
        ("step not object (array)", [[ps_uri]]),
        ("step null", [None]),
        ("serialNumber abc", [step(serialNumber="abc")]),
        ("serialNumber 0", [step(serialNumber="0")]),
        ("serialNumber int 0", [step(serialNumber=0)]),
        ("serialNumber -1", [step(serialNumber=-1)]),
        ("serialNumber '-1'", [step(serialNumber="-1")]),
        ("serialNumber 1.5", [step(serialNumber=1.5)]),
        ("serialNumber '1.5'", [step(serialNumber="1.5")]),
        ("serialNumber ''", [step(serialNumber="")]),
        ("serialNumber ' 1'", [step(serialNumber=" 1")]),
        ("serialNumber too big", [step(serialNumber="99999999999")]),
        ("serialNumber true", [step(serialNumber=True)]),
        ("serialNumber []", [step(serialNumber=[])]),
        ("serialNumber duplicate", [step(serialNumber="1"), step(serialNumber="1")]),
        ("serialNumber duplicate int/str", [step(serialNumber="2"), step(serialNumber=2)]),
        ("serialNumber duplicate implicit", [step(serialNumber=DELETE), step(serialNumber="1")]),
        ("planScriptUri dangling", [step(planScriptUri="/rest/plan-scripts/" + NO_SUCH_ID)]),
        ("planScriptUri bare dangling id", [step(planScriptUri=NO_SUCH_ID)]),
        ("planScriptUri other collection", [step(planScriptUri=fx["bp"]["uri"])]),
        ("planScriptUri traversal", [step(planScriptUri="/rest/plan-scripts/../users/administrator")]),
        ("planScriptUri empty", [step(planScriptUri="")]),
        ("planScriptUri number", [step(planScriptUri=5)]),
        ("planScriptUri missing", [step(planScriptUri=DELETE)]),
        ("planScriptName dangling", [step(planScriptUri=DELETE, planScriptName="No such script")]),
        ("parameters number", [step(parameters=5)]),
        ("parameters object", [step(parameters={"a": 1})]),
        ("parameters array", [step(parameters=["-x"])]),
        ("unknown step field", [step(planScriptURI=ps_uri)]),
        ("unknown step field 2", [step(timeout=30)]),
        ("one bad among good", [step(serialNumber="1"), step(serialNumber="2"),
                                step(serialNumber="3", planScriptUri="/rest/plan-scripts/" + NO_SUCH_ID)]),
        ("too many steps", [step(serialNumber=str(i + 1)) for i in range(1001)]),
    ]
    for what, steps in bad_steps:
        post_and_put(neg, fx, "build-plans", with_field(base, "buildStep", steps), what=what)
    for key in ["buildstep", "steps", "contnet", "oeBuildPlanTypo"]:
        post_and_put(neg, fx, "build-plans", with_field(base, key, []), what="unknown " + key)
    assert_no_5xx_logged(srv)


def test_deployment_plan_fields(srv):
    fx = seed(srv)
    neg = Neg(srv)
    base = valid_bodies(fx)["deployment-plans"]
    field_cases = [
        ("name", [DELETE, None, 5, [], {}]),
        ("description", [5, {}]),
        ("oeBuildPlanURI", [DELETE, None, "", 5, [], {}, "/rest/build-plans/" + NO_SUCH_ID,
                            NO_SUCH_ID, fx["ps"]["uri"], "/rest/build-plans/", "No such build plan",
                            "/rest/build-plans/../plan-scripts/" + fx["ps"]["id"]]),
        ("goldenImageURI", ["/rest/golden-images/" + NO_SUCH_ID, NO_SUCH_ID, fx["bp"]["uri"], 5, [], {},
                            "/rest/golden-images/" + "x" * 2000]),
        ("customAttributes", ["x", 5, True, {}, {"name": "Count", "value": "3"}, [5], ["Count"], [None]]),
        ("hpProvided", ["xyz"]),
        ("type", ["OeBuildPlan", 5]),
    ]
    for key, values in field_cases:
        for v in values:
            post_and_put(neg, fx, "deployment-plans", with_field(base, key, v),
                         what="%s=%r" % (key, "<absent>" if v is DELETE else v))
    for key in ["contnet", "oeBuildPlanUri", "goldenImageUri", "customattributes"]:
        post_and_put(neg, fx, "deployment-plans", with_field(base, key, "x"), what="unknown " + key)

    bp_name = fx["bp"]["name"]
    # An attribute the build plan does not declare.
    doc = neg.expect(400, "POST", "/rest/deployment-plans",
                     body=with_field(base, "customAttributes", [{"name": "Undeclared", "value": "1"}]))
    assert any("Undeclared" in n["message"] for n in doc["nestedErrors"]), doc
    assert "Undeclared" in doc["message"] and bp_name in doc["message"], doc

    # One bad value per declared attribute, plus an undeclared one: every problem at once.
    bad = {
        "Count": "1000",          # above the maximum
        "Host": "bad.host.name",  # hostnames have no dots
        "Addr": "300.1.1.1",      # not an IPv4 address
        "Mode": "sideways",       # not an option
        "Code": "abc",            # does not match the regex
        "Domain": "nodot",        # an FQDN needs a dot
        "Secret": "Zq9x",         # shorter than minlen
        "Nope": "x",              # not declared
    }
    attrs = [{"name": n, "value": v} for n, v in bad.items()]
    for method, path, body in [("POST", "/rest/deployment-plans", with_field(base, "customAttributes", attrs)),
                               ("PUT", fx["dp"]["uri"], dict(with_field(base, "customAttributes", attrs),
                                                             name=fx["dp"]["name"]))]:
        doc = neg.expect(400, method, path, body=body, what="every violation")
        nested = doc["nestedErrors"]
        assert len(nested) >= len(bad), (len(nested), nested)
        for n in bad:
            assert any('"%s"' % n in e["message"] for e in nested), "no nested error names %s: %r" % (n, nested)
        for e in nested:
            assert any('"%s"' % n in e["message"] for n in bad), "nested error names no attribute: %r" % e
            assert "Zq9x" not in e["message"], "a password value is quoted: %r" % e
        assert "Zq9x" not in doc["message"], doc
    # A wrong value through a NIC-like sub-attribute or a number given as a JSON number.
    post_and_put(neg, fx, "deployment-plans",
                 with_field(base, "customAttributes", [{"name": "Count", "value": 0}]), what="Count 0")
    post_and_put(neg, fx, "deployment-plans",
                 with_field(base, "customAttributes", [{"name": "Count", "value": "1.5"}]), what="increment")
    post_and_put(neg, fx, "deployment-plans",
                 with_field(base, "customAttributes", [{"name": "Count", "value": True}]), what="bool value")
    post_and_put(neg, fx, "deployment-plans",
                 with_field(base, "customAttributes", [{"name": "Count", "value": {"a": 1}}]), what="object value")
    post_and_put(neg, fx, "deployment-plans",
                 with_field(base, "customAttributes", [{"name": "Count", "value": "5"},
                                                       {"name": "count", "value": "6"}]), what="twice")
    assert_no_5xx_logged(srv)


# ---- names -------------------------------------------------------------------------------------------
HOSTILE_NAMES = [
    "", "a" * 256, "é" * 128, "a\nb", "a\tb", "a\x01b", "a\x7fb", "a\rb", "<script>alert(1)</script>",
    "../../etc/passwd", "a/b", "a\\b", 'a"b', "BP6-Create-=&#!@%", "   ", " ", " leading", "trailing ",
    "semi;colon", "x' OR '1'='1", "%s%n%x", "${jndi:ldap://x}", "a|b", "`id`",
]


def test_hostile_names(srv):
    fx = seed(srv)
    neg = Neg(srv)
    bodies = valid_bodies(fx)
    for coll in ARTIFACTS:
        for name in HOSTILE_NAMES:
            post_and_put(neg, fx, coll, with_field(bodies[coll], "name", name), what="name %r" % name[:40])
    for name in HOSTILE_NAMES + ["a" * 65, "administrator/x", ".", ".."]:
        neg.expect(400, "POST", "/rest/users",
                   body={"userName": name, "password": "password123",
                         "permissions": [{"roleName": "Read only"}]}, what="user %r" % name[:40])
    # Duplicate names: 409 (case-sensitive exact duplicates at least).
    for coll in ARTIFACTS:
        post_and_put_dup = with_field(bodies[coll], "name", fx[KEY[coll]]["name"])
        neg.expect(409, "POST", "/rest/" + coll, body=post_and_put_dup, what="duplicate name")
    other = srv.request("POST", "/rest/plan-scripts", with_field(bodies["plan-scripts"], "name", "Other PS"))
    assert other.status == 201, other
    ren = dict(other.json(), name=fx["ps"]["name"])
    neg.expect(409, "PUT", other.json()["uri"], body=ren, what="rename onto an existing name")
    neg.expect(409, "POST", "/rest/users",
               body={"userName": "administrator", "password": "password123",
                     "permissions": [{"roleName": "Read only"}]}, what="duplicate user")
    assert_no_5xx_logged(srv)


def test_plan_and_build_plan_types(srv):
    fx = seed(srv)
    neg = Neg(srv)
    bodies = valid_bodies(fx)
    for v in ["xyz", "Deploy2", "capture ", "", "integer", "DEPLOY\n"]:
        post_and_put(neg, fx, "plan-scripts", with_field(bodies["plan-scripts"], "planType", v), what=v)
        post_and_put(neg, fx, "build-plans", with_field(bodies["build-plans"], "oeBuildPlanType", v), what=v)
    for coll in ARTIFACTS:
        for v in ["xyz", "TRUE ", "1", "0", "", "null"]:
            post_and_put(neg, fx, coll, with_field(bodies[coll], "hpProvided", v), what="hpProvided %r" % v)
    assert_no_5xx_logged(srv)


# ---- attribute declarations ---------------------------------------------------------------------------
BAD_DECLS = [
    {"name": "A1", "type": "integer", "value": "1"},
    {"name": "A2", "type": "string", "constraints": "not json"},
    {"name": "A3", "type": "string", "constraints": json.dumps({"regex": "[unclosed"})},
    {"name": "A4", "type": "number", "constraints": json.dumps({"minimum": "10", "maximum": "1"})},
    {"name": "A5", "type": "number", "value": "5", "constraints": json.dumps({"minimum": "10"})},
    {"name": "A6", "type": "password", "constraints": json.dumps({"minlen": "12", "maxlen": "8"})},
    {"name": "A7", "type": "string", "constraints": json.dumps({"minimum": "1"})},
    {"name": "bad name", "type": "string"},
    {"name": "A9", "type": "nic", "value": "10.0.0.1"},
    {"name": "A10", "type": "option", "constraints": json.dumps({"options": "on"})},
    {"name": "A11", "type": "ipv4", "value": "999.1.1.1"},
    {"name": "A12", "type": "number", "constraints": json.dumps({"increment": "-1"})},
    {"name": "A13", "type": "number", "value": "abc"},
    {"name": "A14", "type": "string", "constraints": "[1, 2]"},
    {"name": "A15", "type": 5},
    {"name": "A16", "type": "hostname", "value": "has.dot"},
    {"name": "A17", "constraints": 5},
    {"name": "A18", "visible": "maybe"},
    {"name": "A19", "type": "number", "value": "500", "constraints": json.dumps({"maximum": "100"})},
    {"name": "A20", "type": "password", "constraints": json.dumps({"maxlen": "abc"})},
    {"name": "A21", "type": "number", "constraints": json.dumps({"minimum": "ten"})},
    {"name": "A22", "description": 5},
    {"name": "A23", "type": "string", "value": ["a"]},
]


def test_attribute_declarations(srv):
    fx = seed(srv)
    neg = Neg(srv)
    base = valid_bodies(fx)["build-plans"]
    for d in BAD_DECLS:
        doc = neg.expect(400, "POST", "/rest/build-plans", body=with_field(base, "customAttributes", [d]),
                         what=json.dumps(d))
        assert doc["nestedErrors"], doc
        assert any('"%s"' % d["name"] in n["message"] for n in doc["nestedErrors"]), doc
        post_and_put(neg, fx, "build-plans", with_field(base, "customAttributes", [d]), what=json.dumps(d))
    for extra in [[{"name": "", "type": "string"}], [{"type": "string"}], [{"name": "Dup"}, {"name": "dup"}]]:
        post_and_put(neg, fx, "build-plans", with_field(base, "customAttributes", extra), what=repr(extra))
    # Everything at once: one nested error (at least) per bad declaration.
    doc = neg.expect(400, "POST", "/rest/build-plans", body=with_field(base, "customAttributes", BAD_DECLS),
                     what="all bad declarations")
    nested = doc["nestedErrors"]
    assert len(nested) >= len(BAD_DECLS), (len(nested), len(BAD_DECLS))
    for d in BAD_DECLS:
        assert any('"%s"' % d["name"] in n["message"] for n in nested), "nothing about %s: %r" % (d["name"], nested)
    # Declarations in a deployment plan are checked the same way.
    dp = valid_bodies(fx)["deployment-plans"]
    doc = neg.expect(400, "POST", "/rest/deployment-plans",
                     body=with_field(dp, "customAttributes", [{"name": "Count", "value": "1", "type": "integer"}]))
    assert doc["nestedErrors"], doc
    assert_no_5xx_logged(srv)


# ---- sessions and roles --------------------------------------------------------------------------------
def test_auth(srv):
    fx = seed(srv)
    neg = Neg(srv)
    body = valid_bodies(fx)["plan-scripts"]
    for method, path, b in [("GET", "/rest/plan-scripts", None), ("POST", "/rest/plan-scripts", body),
                            ("GET", fx["ps"]["uri"], None), ("PUT", fx["ps"]["uri"], dict(fx["ps"], name="X")),
                            ("DELETE", fx["dp"]["uri"], None), ("GET", "/rest/tasks", None),
                            ("GET", "/rest/users", None), ("GET", "/rest/users/administrator", None),
                            ("POST", "/rest/users", {"userName": "u1", "password": "password123",
                                                     "permissions": [{"roleName": "Read only"}]}),
                            ("GET", "/rest/login-sessions", None), ("DELETE", "/rest/login-sessions", None),
                            ("PUT", "/rest/login-sessions", None), ("GET", "/rest/sessions/idle-timeout", None),
                            ("GET", "/rest/roles", None),
                            ("POST", "/rest/plan-scripts/differences/" + fx["ps"]["id"], "x")]:
        neg.expect(401, method, path, body=b, auth=False, what="no session")
        neg.expect(401, method, path, body=b, token="bogus-token", what="bogus session")
        neg.expect(401, method, path, body=b, token="x" * 300, what="long bogus session")
        neg.expect(401, method, path, body=b, auth=False,
                   headers={"Authorization": "Bearer nope"}, what="bogus bearer")
    # A logged-out session is dead.
    tok = srv.login("administrator")
    assert srv.request("DELETE", "/rest/login-sessions", token=tok).status == 204
    srv.login()
    neg.expect(401, "GET", "/rest/plan-scripts", token=tok, what="logged out")
    # Bad logins.
    neg.expect(401, "POST", "/rest/login-sessions", auth=False,
               body={"userName": "administrator", "password": "wrong-password", "authLoginDomain": "LOCAL"})
    neg.expect(401, "POST", "/rest/login-sessions", auth=False,
               body={"userName": "nobody", "password": "wrong-password"})
    neg.expect(401, "POST", "/rest/login-sessions", auth=False,
               body={"userName": "administrator", "password": srv.admin_password(), "authLoginDomain": "AD"})
    for b in [{}, {"userName": "administrator"}, {"password": "x"}, {"userName": 5, "password": "x"},
              {"userName": "administrator", "password": None}]:
        neg.expect(400, "POST", "/rest/login-sessions", auth=False, body=b, what=json.dumps(b))

    # Wrong role: a "Read only" user and a "Server administrator".
    for user, role in [("viewer", "Read only"), ("serveradmin", "Server administrator")]:
        r = srv.request("POST", "/rest/users", {"userName": user, "password": "password-" + user,
                                                "permissions": [{"roleName": role}]})
        assert r.status == 201, r
    ro = srv.login("viewer", "password-viewer")
    sa = srv.login("serveradmin", "password-serveradmin")
    assert srv.request("GET", "/rest/plan-scripts", token=ro).status == 200
    for tok, who in [(ro, "read only"), (sa, "server admin")]:
        for coll in ARTIFACTS:
            neg.expect(403, "POST", "/rest/" + coll, body=valid_bodies(fx)[coll], token=tok, what=who)
            cur = fx[KEY[coll]]
            neg.expect(403, "PUT", cur["uri"], body=dict(cur, description="changed"), token=tok, what=who)
            neg.expect(403, "DELETE", cur["uri"], token=tok, what=who)
        neg.expect(403, "DELETE", fx["ro"]["uri"], token=tok, what=who)
        neg.expect(403, "POST", "/rest/users", token=tok, what=who,
                   body={"userName": "sneaky", "password": "password123",
                         "permissions": [{"roleName": "Infrastructure administrator"}]})
        neg.expect(403, "PUT", "/rest/users/administrator", body={"password": "takeover123"}, token=tok, what=who)
        neg.expect(403, "DELETE", "/rest/users/administrator", token=tok, what=who)
        neg.expect(403, "PUT", "/rest/sessions/idle-timeout", body={"idleTimeout": 600000}, token=tok, what=who)
    # Not even for oneself: a role change needs an administrator.
    neg.expect(403, "PUT", "/rest/users/viewer", token=ro,
               body={"permissions": [{"roleName": "Infrastructure administrator"}]})
    neg.expect(403, "PUT", "/rest/users/viewer", token=ro, body={"enabled": False})
    # Bad user bodies (as administrator).
    for b in [{"userName": "u2", "password": "short", "permissions": [{"roleName": "Read only"}]},
              {"userName": "u2", "password": "password123"},
              {"userName": "u2", "password": "password123", "permissions": [{"roleName": "Emperor"}]},
              {"userName": "u2", "password": "password123", "permissions": "Read only"},
              {"userName": "u2", "password": "password123", "role": "Emperor"},
              {"userName": "u2", "password": 12345678, "permissions": [{"roleName": "Read only"}]},
              {"userName": "u2", "password": "password123", "permissions": [{"roleName": "Read only"}],
               "contnet": 1},
              {"userName": "u2", "password": "password123", "permissions": [{"roleName": "Read only"}],
               "fullName": 5}]:
        neg.expect(400, "POST", "/rest/users", body=b, what=json.dumps(b))
    for b in [{"enabled": "maybe"}, {"permissions": []}, {"permissions": [{"roleName": "Emperor"}]},
              {"password": "short"}, {"password": 5}, {"unknownField": 1}, {"role": "Emperor"}]:
        neg.expect(400, "PUT", "/rest/users/viewer", body=b, what="admin " + json.dumps(b))
    # Changing one's own password needs the current one.
    neg.expect(400, "PUT", "/rest/users/viewer", token=ro, body={"password": "new-password-1"})
    neg.expect(400, "PUT", "/rest/users/viewer", token=ro,
               body={"password": "new-password-1", "currentPassword": "wrong-password"})
    # A disabled user cannot log in, and its sessions end.
    r = srv.request("PUT", "/rest/users/serveradmin", {"enabled": False})
    assert r.status == 200, r
    neg.expect(401, "GET", "/rest/plan-scripts", token=sa, what="disabled user's session")
    neg.expect(401, "POST", "/rest/login-sessions", auth=False,
               body={"userName": "serveradmin", "password": "password-serveradmin"}, what="disabled user")
    neg.expect(409, "DELETE", "/rest/users/administrator", what="last administrator")
    neg.expect(409, "PUT", "/rest/users/administrator",
               body={"permissions": [{"roleName": "Read only"}]}, what="demote last administrator")
    neg.expect(400, "PUT", "/rest/sessions/idle-timeout", body={"idleTimeout": 5})
    neg.expect(400, "PUT", "/rest/sessions/idle-timeout", body={"idleTimeout": "600000"})
    assert_no_5xx_logged(srv)


# ---- eTags, ids, paths, methods, query, headers ------------------------------------------------------
def test_etag_and_ids(srv):
    fx = seed(srv)
    neg = Neg(srv)
    for coll in ARTIFACTS:
        cur = fx[KEY[coll]]
        stale = "1/1"
        neg.expect(412, "PUT", cur["uri"], body=dict(cur, description="new"), headers={"If-Match": stale})
        neg.expect(412, "PUT", cur["uri"], body=dict(cur, description="new"),
                   headers={"If-Match": '"%s"' % stale}, what="quoted")
        neg.expect(412, "DELETE", cur["uri"], headers={"If-Match": stale})
        neg.expect(412, "PUT", cur["uri"], body=dict(cur, description="new"),
                   headers={"If-Match": cur["eTag"] + "x"}, what="near miss")
        # Unknown ids.
        for bad in [NO_SUCH_ID, "x", NO_SUCH_ID.upper(), "%20", "..", "%2e%2e"]:
            path = "/rest/%s/%s" % (coll, bad)
            neg.expect(404, "GET", path)
            neg.expect(404, "PUT", path, body=valid_bodies(fx)[coll], what="no upsert")
            neg.expect(404, "DELETE", path)
        # Body id that contradicts the URI.
        neg.expect(400, "PUT", cur["uri"], body=dict(cur, id=NO_SUCH_ID), what="id mismatch")
    # A stale eTag after a real update.
    ps = fx["ps"]
    r = srv.request("PUT", ps["uri"], dict(ps, description="updated"), headers={"If-Match": ps["eTag"]})
    assert r.status == 200, r
    assert r.json()["eTag"] != ps["eTag"]
    neg.expect(412, "PUT", ps["uri"], body=dict(ps, description="again"), headers={"If-Match": ps["eTag"]})
    neg.expect(412, "DELETE", ps["uri"], headers={"If-Match": ps["eTag"]})
    # In use and read-only: 409.
    neg.expect(409, "DELETE", ps["uri"], what="used by a build plan")
    neg.expect(409, "DELETE", fx["bp"]["uri"], what="used by a deployment plan")
    neg.expect(409, "PUT", fx["ro"]["uri"], body=dict(fx["ro"], description="x"), what="read-only")
    neg.expect(409, "DELETE", fx["ro"]["uri"], what="read-only")
    # Other unknown ids.
    for path in ["/rest/tasks/" + NO_SUCH_ID, "/rest/users/nobody", "/rest/users/" + "x" * 200,
                 "/rest/plan-scripts/%s/usedby/readonly" % NO_SUCH_ID,
                 "/rest/build-plans/%s/usedby" % NO_SUCH_ID, "/rest/deployment-plans/%s/usedby" % NO_SUCH_ID,
                 "/rest/deployment-plans/%s/osdp" % NO_SUCH_ID]:
        neg.expect(404, "GET", path)
    neg.expect(404, "POST", "/rest/plan-scripts/differences/" + NO_SUCH_ID, body="echo")
    neg.expect(404, "PUT", "/rest/users/nobody", body={"fullName": "x"})
    neg.expect(404, "DELETE", "/rest/users/nobody")
    assert_no_5xx_logged(srv)


def test_paths_and_methods(srv):
    fx = seed(srv)
    neg = Neg(srv)
    ps = fx["ps"]
    for path in ["/", "/index.html", "/rest", "/rest/", "/rest/nothing", "/rest/plan-script",
                 "/rest/PLAN-SCRIPTS", "/rest/plan-scripts/%s/nothing" % ps["id"],
                 "/rest/plan-scripts/%s/usedby" % ps["id"], "/rest/tasks/a/b", "/rest/version/x",
                 "/rest/users/a/b", "/rest/roles/x", "/rest/golden-images-x", "/%FF", "/rest/%FF",
                 "/rest/plan-scripts/%FF", "/rest/plan-scripts/%C3", "/rest/sessions/x"]:
        neg.expect(404, "GET", path)
    # Path traversal in URIs never reaches anything else.
    for path in ["/rest/plan-scripts/..%2F..%2Fetc", "/rest/plan-scripts/..%2F..%2Fetc%2Fpasswd",
                 "/rest/plan-scripts/%2e%2e/%2e%2e/etc/passwd", "/rest/../etc/passwd",
                 "/rest/plan-scripts/../users", "/rest/plan-scripts/%2E%2E%2Fusers",
                 "/rest/plan-scripts/%s%%2F..%%2F..%%2Fusers" % ps["id"], "/../../etc/passwd",
                 "/rest/%2e%2e/%2e%2e/etc/passwd", "/rest/plan-scripts/..\\..\\etc"]:
        neg.expect((400, 404), "GET", path)
        neg.expect((400, 404, 405), "DELETE", path)
        neg.expect((400, 404, 405), "PUT", path, body=dict(ps, description="x"))
    # A very long URL (8 KB): 404 for one long id, 400 for too many segments or a long filter.
    neg.expect(404, "GET", "/rest/plan-scripts/" + "a" * 8000)
    neg.expect(404, "DELETE", "/rest/plan-scripts/" + "a" * 8000)
    neg.expect(400, "GET", "/rest/" + "a/" * 4000)
    neg.expect(400, "GET", "/rest/plan-scripts?filter=" + "x" * 8000)
    neg.expect(400, "GET", "/rest/plan-scripts?query=" + "x" * 8000)
    neg.expect(400, "GET", "/rest/plan-scripts?sort=" + "x" * 8000)
    # Many query parameters (libmicrohttpd 0.9.75 stops answering somewhere above ~450 of
    # them with its default 32 KB connection pool: see the report; 300 is served).
    neg.expect(404, "GET", "/rest/nothing?" + "a=b&" * 300)
    neg.expect(400, "GET", "/rest/plan-scripts?" + "filter=name%3D&" * 300)
    # Wrong methods.
    for method, path in [("PATCH", "/rest/plan-scripts"), ("DELETE", "/rest/plan-scripts"),
                         ("PUT", "/rest/plan-scripts"), ("PATCH", ps["uri"]), ("POST", ps["uri"]),
                         ("POST", "/rest/version"), ("DELETE", "/rest/version"), ("PUT", "/rest/tasks"),
                         ("POST", "/rest/tasks"), ("DELETE", "/rest/tasks/" + NO_SUCH_ID),
                         ("PATCH", "/rest/users"), ("DELETE", "/rest/users"), ("PATCH", "/rest/users/administrator"),
                         ("POST", "/rest/roles"), ("PATCH", "/rest/login-sessions"),
                         ("DELETE", "/rest/sessions/idle-timeout"),
                         ("GET", "/rest/plan-scripts/differences/" + ps["id"]),
                         ("POST", "/rest/plan-scripts/%s/usedby/readonly" % ps["id"]),
                         ("DELETE", "/rest/deployment-plans/%s/osdp" % fx["dp"]["id"]),
                         ("FOO", "/rest/plan-scripts"), ("OPTIONS", "/rest/plan-scripts"),
                         ("TRACE", "/rest/version")]:
        neg.expect(405, method, path)
    assert_no_5xx_logged(srv)


def test_query_and_headers(srv):
    seed(srv)
    neg = Neg(srv)
    for q in ["start=-1", "start=abc", "start=", "start=1e3", "start=1.5", "start=99999999999999999999",
              "count=-2", "count=abc", "count=", "count=0x10", "count=99999999999999999999",
              "start=0&count=-5", "filter=name%3D", "filter=%22name%3D%27x", "filter=name%20~~%20x",
              "sort=name:sideways", "sort=:asc", "query=name%20EQ", "filter=" + "(" * 2000]:
        for coll in LISTED:
            neg.expect(400, "GET", "/rest/%s?%s" % (coll, q))
    # Extreme but valid paging is served, never a 5xx (or a sanitizer report).
    for q in ["start=9223372036854775807&count=9223372036854775807", "start=1&count=9223372036854775807",
              "start=9223372036854775806&count=1", "count=0", "start=5&count=0", "count=-1"]:
        for coll in LISTED:
            r = srv.request("GET", "/rest/%s?%s" % (coll, q))
            assert r.status == 200, (q, r)
            assert isinstance(r.json()["members"], list)
    for v in ["abc", "299", "0", "-1", "3.00", "300abc", "99999999999999999999", "é"]:
        hdr = {"X-API-Version": v}
        neg.expect(400, "GET", "/rest/plan-scripts", headers=hdr, what="X-API-Version %r" % v)
        neg.expect(400, "POST", "/rest/plan-scripts", body={"name": "V", "planType": "deploy", "content": "x"},
                   headers=hdr, what="X-API-Version %r" % v)
        neg.expect(400, "GET", "/rest/version", headers=hdr, auth=False, what="X-API-Version %r" % v)
    assert_no_5xx_logged(srv)


# ---- garbage fuzz ---------------------------------------------------------------------------------------
JSONISH = [b"{", b"}", b"[", b"]", b'"', b":", b",", b" ", b"\\", b"\\u0000", b"\\ud800", b"null", b"true",
           b"-", b"0", b"1e999", b"9" * 30, b'"planType"', b'"content"', b'"buildStep"', b'"customAttributes"',
           b'"oeBuildPlanURI"', b'"deploy"', b'"/rest/plan-scripts/"', b'"serialNumber"', b"\xff", b"\xc3",
           b"\x00", b"\n", b'"@a@"', b'"type"', b'"OeBuildPlan"']


def test_garbage_fuzz(srv):
    fx = seed(srv)
    rnd = random.Random(0x5EED)
    before = snapshot(srv)
    cts = [None, "application/json", "application/json; charset=utf-8", "text/plain"]
    statuses = {}
    n = 0
    for coll in ARTIFACTS:
        # 300 random byte bodies POSTed, then 100 PUT onto the seeded resource.
        for i in range(400):
            size = rnd.choice([0, 1, 2, 8, 64, 512, 4096])
            body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, size)))
            method, path = ("POST", "/rest/" + coll) if i < 300 else ("PUT", fx[KEY[coll]]["uri"])
            ct = rnd.choice(cts)
            r = srv.request(method, path, raw=body, headers={"Content-Type": ct} if ct else None)
            check_error(r, (400, 415), "fuzz %s %s #%d %r" % (method, path, i, body[:40]))
            statuses[r.status] = statuses.get(r.status, 0) + 1
            n += 1
        # JSON-looking garbage reaches the validators (no "name" token: nothing can be valid).
        for i in range(200):
            body = b"".join(rnd.choice(JSONISH) for _ in range(rnd.randint(1, 60)))
            if rnd.random() < 0.5:
                body = b"{" + body
            method, path = ("POST", "/rest/" + coll) if i % 4 else ("PUT", fx[KEY[coll]]["uri"])
            r = srv.request(method, path, raw=body, headers={"Content-Type": "application/json"})
            check_error(r, 400, "jsonish %s %s #%d %r" % (method, path, i, body[:80]))
            n += 1
        if coll == "build-plans":
            assert_same(before, snapshot(srv), "fuzz so far")
    assert srv.proc.poll() is None, "streamerd died"
    assert srv.request("GET", "/rest/version").status == 200
    assert_same(before, snapshot(srv), "garbage fuzz")
    assert n == 1800 and statuses.get(400), statuses
    assert_no_5xx_logged(srv)
