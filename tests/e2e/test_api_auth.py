"""test_api_auth.py — end-to-end tests of sessions, users and roles:
/rest/login-sessions, /rest/users, /rest/sessions/idle-timeout, the role
matrix over the artifact endpoints, and that no secret ever leaves the
server (responses, log, file modes).
"""
import json
import os
import stat
import urllib.parse

import harness

PS_COLL = "/rest/plan-scripts"
ZERO = "00000000-0000-4000-8000-000000000000"

ROLES = ("Infrastructure administrator", "Deployment administrator", "Server administrator", "Read only")


# ---- helpers ----------------------------------------------------------------
def expect(r, status):
    assert r.status == status, "expected %d, got %r" % (status, r)
    return r.json()


def expect_error(r, status, code=None):
    assert r.status == status, "expected %d, got %r" % (status, r)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    b = r.json()
    assert isinstance(b, dict), r
    assert isinstance(b.get("errorCode"), str) and b["errorCode"], b
    assert isinstance(b.get("message"), str) and b["message"], b
    assert isinstance(b.get("recommendedActions"), list) and b["recommendedActions"], b
    assert isinstance(b.get("nestedErrors"), list), b
    if code:
        assert b["errorCode"] == code, b
    return b


def raw(srv, method, path, body=None, headers=None):
    c = srv.connection()
    try:
        data = body.encode() if isinstance(body, str) else body
        c.request(method, path, body=data, headers=headers or {})
        r = c.getresponse()
        return harness.Response(r.status, {k.lower(): v for k, v in r.getheaders()},
                                r.read().decode("utf-8", "replace"))
    finally:
        c.close()


def no_secrets(r, *secrets):
    assert "passwordHash" not in r.body, r
    assert "$y$" not in r.body and "$6$" not in r.body and "$2b$" not in r.body, r
    for s in secrets:
        assert s not in r.body, "secret leaked: %r" % r


def mk_user(srv, name, role, password=None):
    password = password or "pw-%s-Secret1" % name
    r = srv.request("POST", "/rest/users", {"userName": name, "password": password,
                                            "permissions": [{"roleName": role}]})
    u = expect(r, 201)
    no_secrets(r, password)
    assert u["userName"] == name and u["permissions"] == [{"roleName": role}], u
    assert r.headers.get("location") == "/rest/users/" + name
    return password


def login(srv, user, password):
    r = srv.request("POST", "/rest/login-sessions",
                    {"userName": user, "password": password, "authLoginDomain": "LOCAL", "loginMsgAck": True},
                    auth=False)
    b = expect(r, 200)
    assert isinstance(b["sessionID"], str) and len(b["sessionID"]) >= 16, b
    no_secrets(r, password)
    return b["sessionID"]


def ps_body(name, content="echo @A@"):
    return {"type": "PlanScript", "name": name, "planType": "deploy", "content": content,
            "description": "", "hpProvided": False}


# ---- sessions -------------------------------------------------------------------------
def test_login_sessions(srv):
    pw = srv.admin_password()
    tok = login(srv, "administrator", pw)
    assert tok != srv.token, "every login gets its own session"
    # without authLoginDomain (Ruby SDK), and with a null loginMsgAck
    t2 = expect(srv.request("POST", "/rest/login-sessions", {"userName": "administrator", "password": pw},
                            auth=False), 200)["sessionID"]
    assert t2 not in (tok, srv.token)
    # re-validate: PUT with the auth header and a null body (Python SDK)
    r = raw(srv, "PUT", "/rest/login-sessions", "null",
            {"auth": tok, "X-API-Version": "300", "Content-Type": "application/json"})
    assert expect(r, 200)["sessionID"] == tok
    r = raw(srv, "PUT", "/rest/login-sessions", None, {"Auth": tok})
    assert expect(r, 200)["sessionID"] == tok
    who = expect(srv.request("GET", "/rest/login-sessions", token=tok), 200)
    assert who["userName"] == "administrator" and who["sessionID"] == tok
    assert expect(srv.request("GET", PS_COLL, token=tok), 200)["total"] == 0
    # logout ends only that session
    r = srv.request("DELETE", "/rest/login-sessions", token=tok)
    assert r.status == 204 and r.body == "", r
    expect_error(srv.request("GET", PS_COLL, token=tok), 401)
    expect_error(srv.request("PUT", "/rest/login-sessions", None, token=tok), 401)
    expect_error(srv.request("DELETE", "/rest/login-sessions", token=tok), 401)
    expect(srv.request("GET", PS_COLL, token=t2), 200)
    expect(srv.request("GET", PS_COLL), 200)

    # failed logins: 401 with an HPE error body; no session is created
    for body in ({"userName": "administrator", "password": pw + "x"},
                 {"userName": "administrator", "password": ""},
                 {"userName": "nobody", "password": pw},
                 {"userName": "administrator", "password": pw, "authLoginDomain": "CORP"}):
        r = srv.request("POST", "/rest/login-sessions", body, auth=False)
        expect_error(r, 401)
        assert "sessionID" not in r.json() and pw not in r.body
    for body in ({"userName": "administrator"}, {"password": pw}, "administrator", None, []):
        expect_error(srv.request("POST", "/rest/login-sessions", body, auth=False), 400)
    expect_error(srv.request("POST", "/rest/login-sessions", raw="{", auth=False), 400)
    # login needs no session, version needs no header at all
    v = expect(raw(srv, "GET", "/rest/version"), 200)
    assert v == {"currentVersion": v["currentVersion"], "minimumVersion": 300} and v["currentVersion"] >= 300, v
    assert expect(srv.request("GET", "/rest/version/", auth=False), 200) == v


# Every endpoint, with a method and a body that would succeed for an administrator.
def endpoints(ids):
    ps, bp, dp = ids["ps"], ids["bp"], ids["dp"]
    return [
        ("GET", "/rest/plan-scripts", None),
        ("POST", "/rest/plan-scripts", ps_body("unauth")),
        ("GET", "/rest/plan-scripts/" + ps, None),
        ("PUT", "/rest/plan-scripts/" + ps, ps_body("unauth put")),
        ("DELETE", "/rest/plan-scripts/" + ps, None),
        ("POST", "/rest/plan-scripts/differences/" + ps, "echo"),
        ("GET", "/rest/plan-scripts/%s/usedby/readonly" % ps, None),
        ("GET", "/rest/build-plans", None),
        ("POST", "/rest/build-plans", {"name": "unauth", "oeBuildPlanType": "deploy"}),
        ("GET", "/rest/build-plans/" + bp, None),
        ("PUT", "/rest/build-plans/" + bp, {"name": "unauth put", "oeBuildPlanType": "deploy"}),
        ("DELETE", "/rest/build-plans/" + bp, None),
        ("GET", "/rest/build-plans/%s/usedby" % bp, None),
        ("GET", "/rest/deployment-plans", None),
        ("POST", "/rest/deployment-plans", {"name": "unauth", "oeBuildPlanURI": "/rest/build-plans/" + bp}),
        ("GET", "/rest/deployment-plans/" + dp, None),
        ("PUT", "/rest/deployment-plans/" + dp, {"name": "unauth put", "oeBuildPlanURI": "/rest/build-plans/" + bp}),
        ("DELETE", "/rest/deployment-plans/" + dp, None),
        ("GET", "/rest/deployment-plans/%s/usedby" % dp, None),
        ("GET", "/rest/deployment-plans/%s/osdp" % dp, None),
        ("GET", "/rest/tasks", None),
        ("GET", "/rest/tasks/" + ZERO, None),
        ("GET", "/rest/users", None),
        ("POST", "/rest/users", {"userName": "intruder", "password": "Intruder-pw1",
                                 "permissions": [{"roleName": "Infrastructure administrator"}]}),
        ("GET", "/rest/users/administrator", None),
        ("PUT", "/rest/users/administrator", {"password": "Hijacked-pw1"}),
        ("DELETE", "/rest/users/administrator", None),
        ("GET", "/rest/roles", None),
        ("GET", "/rest/sessions/idle-timeout", None),
        ("POST", "/rest/sessions/idle-timeout", {"idleTimeout": 60000}),
        ("GET", "/rest/login-sessions", None),
        ("PUT", "/rest/login-sessions", None),
        ("DELETE", "/rest/login-sessions", None),
        ("GET", "/rest/no-such-collection", None),
    ]


def test_every_endpoint_needs_a_session(srv):
    ps = expect(srv.request("POST", PS_COLL, ps_body("Guarded")), 201)
    bp = expect(srv.request("POST", "/rest/build-plans", {"name": "Guarded", "oeBuildPlanType": "deploy",
                                                          "buildStep": [{"serialNumber": "1", "planScriptUri": ps["uri"]}]}), 201)
    dp = expect(srv.request("POST", "/rest/deployment-plans", {"name": "Guarded", "oeBuildPlanURI": bp["uri"]}), 201)
    ids = {"ps": ps["id"], "bp": bp["id"], "dp": dp["id"]}
    before = {c: srv.request("GET", "/rest/" + c).body for c in ("plan-scripts", "build-plans", "deployment-plans", "users")}
    eps = endpoints(ids)
    assert len(eps) >= 30
    bogus = ("LTIxNjUzMjc0OTUzzHoF7eEkZLEUWVA-fuOZP4VGA3U8e67E", srv.token + "x", srv.token[:-1], "x" * 200, " ")
    for method, path, body in eps:
        r = srv.request(method, path, body, auth=False)
        expect_error(r, 401)
        for tok in bogus:
            expect_error(srv.request(method, path, body, token=tok), 401)
        # Session-ID (Go) and Authorization: Bearer carrying a bogus token
        expect_error(srv.request(method, path, body, auth=False, headers={"Session-ID": bogus[0]}), 401)
        expect_error(srv.request(method, path, body, auth=False,
                                 headers={"Authorization": "Bearer " + bogus[0]}), 401)
    # nothing changed, the administrator is intact
    after = {c: srv.request("GET", "/rest/" + c).body for c in before}
    assert after == before
    login(srv, "administrator", srv.admin_password())
    # positive control: the same list works with the session
    for method, path, body in eps:
        if method == "GET" and "no-such" not in path and "/tasks/" not in path:
            assert srv.request(method, path).status == 200, path
    # the roles list
    roles = expect(srv.request("GET", "/rest/roles"), 200)
    assert sorted(m["roleName"] for m in roles["members"]) == sorted(ROLES), roles


# ---- roles ------------------------------------------------------------------------------
def test_role_matrix(srv):
    users = {}
    for i, role in enumerate(ROLES):
        name = "user%d" % i
        pw = mk_user(srv, name, role)
        users[role] = (name, pw, login(srv, name, pw))
    base_ps = expect(srv.request("POST", PS_COLL, ps_body("Matrix base")), 201)
    base_bp = expect(srv.request("POST", "/rest/build-plans", {"name": "Matrix base", "oeBuildPlanType": "deploy",
                                                               "buildStep": [{"serialNumber": "1", "planScriptUri": base_ps["uri"]}]}), 201)
    base_dp = expect(srv.request("POST", "/rest/deployment-plans", {"name": "Matrix base", "oeBuildPlanURI": base_bp["uri"]}), 201)

    def state():
        return [srv.request("GET", "/rest/" + c).body for c in ("plan-scripts", "build-plans", "deployment-plans", "users")]

    for role, (name, pw, tok) in users.items():
        can_write = role in ("Infrastructure administrator", "Deployment administrator")
        admin = role == "Infrastructure administrator"
        # everybody can read
        for path in (PS_COLL, base_ps["uri"], "/rest/build-plans", base_bp["uri"], "/rest/deployment-plans",
                     base_dp["uri"], base_dp["uri"] + "/osdp", base_ps["uri"] + "/usedby/readonly",
                     "/rest/users/" + name, "/rest/sessions/idle-timeout", "/rest/roles", "/rest/tasks"):
            r = srv.request("GET", path, token=tok)
            expect(r, 200)
            no_secrets(r, pw)
        expect(srv.request("POST", "/rest/plan-scripts/differences/" + base_ps["id"], "echo @B@", token=tok), 200)
        tag = role.split()[0]
        writes = [
            ("POST", PS_COLL, ps_body("PS by " + tag)),
            ("POST", "/rest/build-plans", {"name": "BP by " + tag, "oeBuildPlanType": "deploy"}),
            ("POST", "/rest/deployment-plans", {"name": "DP by " + tag, "oeBuildPlanURI": base_bp["uri"]}),
        ]
        if not can_write:
            snap = state()
            for method, path, body in writes + [
                    ("PUT", base_ps["uri"], dict(base_ps, description="by " + tag)),
                    ("PUT", base_bp["uri"], dict(base_bp, description="by " + tag)),
                    ("PUT", base_dp["uri"], dict(base_dp, description="by " + tag)),
                    ("DELETE", base_dp["uri"], None), ("DELETE", base_bp["uri"], None),
                    ("DELETE", base_ps["uri"], None),
                    ("POST", PS_COLL, {"garbage": True}),   # refused before the body is even looked at
                    ("POST", "/rest/users", {"userName": "x" + tag, "password": "Password-123",
                                             "permissions": [{"roleName": "Infrastructure administrator"}]}),
                    ("DELETE", "/rest/users/user0", None),
                    ("PUT", "/rest/users/user0", {"password": "Hijacked-123"}),
                    ("POST", "/rest/sessions/idle-timeout", {"idleTimeout": 120000})]:
                r = srv.request(method, path, body, token=tok)
                b = expect_error(r, 403)
                assert name in b["message"] or role in b["message"], b
            assert state() == snap, role
            continue
        # writers: create, update, delete their own artifacts
        made = []
        for method, path, body in writes:
            made.append(expect(srv.request(method, path, body, token=tok), 201))
        for d in made:
            u = expect(srv.request("PUT", d["uri"], dict(d, description="edited by " + tag), token=tok), 200)
            assert u["description"] == "edited by " + tag
        for d in reversed(made):
            assert srv.request("DELETE", d["uri"], token=tok).status == 204
        if admin:
            r = srv.request("POST", "/rest/users", {"userName": "made-by-admin2", "password": "Made-by-admin2",
                                                    "permissions": [{"roleName": "Read only"}]}, token=tok)
            expect(r, 201)
            no_secrets(r, "Made-by-admin2")
            u = expect(srv.request("PUT", "/rest/users/made-by-admin2",
                                   {"permissions": [{"roleName": "Server administrator"}]}, token=tok), 200)
            assert u["permissions"] == [{"roleName": "Server administrator"}]
            assert expect(srv.request("POST", "/rest/sessions/idle-timeout", {"idleTimeout": 86400000},
                                      token=tok), 200) == {"idleTimeout": 86400000}
            continue
        # a Deployment administrator cannot manage users or settings
        snap = state()
        for method, path, body in [
                ("POST", "/rest/users", {"userName": "x" + tag, "password": "Password-123",
                                         "permissions": [{"roleName": "Read only"}]}),
                ("DELETE", "/rest/users/user3", None),
                ("PUT", "/rest/users/user3", {"password": "Hijacked-123"}),
                ("PUT", "/rest/users/" + name, {"permissions": [{"roleName": "Infrastructure administrator"}]}),
                ("POST", "/rest/sessions/idle-timeout", {"idleTimeout": 120000})]:
            expect_error(srv.request(method, path, body, token=tok), 403)
        assert state() == snap
    # the second Infrastructure administrator can manage users
    tok = users["Infrastructure administrator"][2]
    r = srv.request("DELETE", "/rest/users/made-by-admin2", token=tok)
    assert r.status == 204, r
    # bad role names are refused
    for perms in ([{"roleName": "Superuser"}], [], "Read only", [{"role": "Read only"}]):
        expect_error(srv.request("POST", "/rest/users", {"userName": "badrole", "password": "Password-123",
                                                         "permissions": perms}), 400)
    expect_error(srv.request("POST", "/rest/users", {"userName": "user1", "password": "Password-123",
                                                     "permissions": [{"roleName": "Read only"}]}), 409)
    for body in ({"userName": "bad name", "password": "Password-123", "permissions": [{"roleName": "Read only"}]},
                 {"userName": "shortpw", "password": "short", "permissions": [{"roleName": "Read only"}]},
                 {"userName": "nopw", "permissions": [{"roleName": "Read only"}]},
                 {"userName": "extra", "password": "Password-123", "permissions": [{"roleName": "Read only"}],
                  "passwordHash": "$y$j9T$x"}):
        expect_error(srv.request("POST", "/rest/users", body), 400)
    assert srv.request("GET", "/rest/users/badrole").status == 404


def test_own_password_change(srv):
    pw = mk_user(srv, "alice", "Read only")
    tok = login(srv, "alice", pw)
    new = "Alice-new-Passw0rd"
    # without / with a wrong currentPassword: refused, the password still works
    expect_error(srv.request("PUT", "/rest/users/alice", {"password": new}, token=tok), 400)
    expect_error(srv.request("PUT", "/rest/users/alice", {"password": new, "currentPassword": "wrong-pass"},
                             token=tok), 400)
    login(srv, "alice", pw)
    # a user may not raise their own role, nor touch another user
    expect_error(srv.request("PUT", "/rest/users/alice", {"permissions": [{"roleName": "Infrastructure administrator"}]},
                             token=tok), 403)
    expect_error(srv.request("PUT", "/rest/users/administrator", {"password": new}, token=tok), 403)
    assert expect(srv.request("GET", "/rest/users/alice"), 200)["permissions"] == [{"roleName": "Read only"}]
    # the real change
    r = srv.request("PUT", "/rest/users/alice", {"password": new, "currentPassword": pw}, token=tok)
    expect(r, 200)
    no_secrets(r, pw, new)
    expect_error(srv.request("POST", "/rest/login-sessions", {"userName": "alice", "password": pw}, auth=False), 401)
    t2 = login(srv, "alice", new)
    expect(srv.request("GET", PS_COLL, token=t2), 200)
    # the sessions opened with the old password are gone
    expect_error(srv.request("GET", PS_COLL, token=tok), 401)
    # an administrator may reset it without the current password
    expect(srv.request("PUT", "/rest/users/alice", {"password": "Reset-by-admin-1"}), 200)
    expect_error(srv.request("GET", PS_COLL, token=t2), 401)
    login(srv, "alice", "Reset-by-admin-1")
    expect_error(srv.request("PUT", "/rest/users/alice", {"password": "short"}), 400)


def test_deleting_a_user_ends_their_sessions(srv):
    pw = mk_user(srv, "bob", "Deployment administrator")
    t1, t2 = login(srv, "bob", pw), login(srv, "bob", pw)
    expect(srv.request("POST", PS_COLL, ps_body("by bob"), token=t1), 201)
    r = srv.request("DELETE", "/rest/users/bob")
    assert r.status == 204 and r.body == "", r
    for t in (t1, t2):
        expect_error(srv.request("GET", PS_COLL, token=t), 401)
        expect_error(srv.request("POST", PS_COLL, ps_body("after delete"), token=t), 401)
    expect_error(srv.request("POST", "/rest/login-sessions", {"userName": "bob", "password": pw}, auth=False), 401)
    expect_error(srv.request("GET", "/rest/users/bob"), 404)
    expect_error(srv.request("DELETE", "/rest/users/bob"), 404)
    assert [m["name"] for m in expect(srv.request("GET", PS_COLL), 200)["members"]] == ["by bob"]
    # disabling a user also ends their sessions and refuses logins
    pw = mk_user(srv, "carol", "Read only")
    t = login(srv, "carol", pw)
    u = expect(srv.request("PUT", "/rest/users/carol", {"enabled": False}), 200)
    assert u["enabled"] is False
    expect_error(srv.request("GET", PS_COLL, token=t), 401)
    expect_error(srv.request("POST", "/rest/login-sessions", {"userName": "carol", "password": pw}, auth=False), 401)


def test_last_infrastructure_administrator(srv):
    expect_error(srv.request("DELETE", "/rest/users/administrator"), 409)
    expect_error(srv.request("PUT", "/rest/users/administrator", {"permissions": [{"roleName": "Read only"}]}), 409)
    expect_error(srv.request("PUT", "/rest/users/administrator", {"enabled": False}), 409)
    admin = expect(srv.request("GET", "/rest/users/administrator"), 200)
    assert admin["permissions"] == [{"roleName": "Infrastructure administrator"}] and admin["enabled"] is True
    expect(srv.request("GET", PS_COLL), 200)
    # with a second administrator the first one can go; then the second is the last
    pw = mk_user(srv, "admin2", "Infrastructure administrator")
    tok = login(srv, "admin2", pw)
    r = srv.request("DELETE", "/rest/users/administrator", token=tok)
    assert r.status == 204, r
    expect_error(srv.request("GET", PS_COLL), 401)  # the old administrator's session is gone
    expect_error(srv.request("DELETE", "/rest/users/admin2", token=tok), 409)
    expect_error(srv.request("PUT", "/rest/users/admin2", {"permissions": [{"roleName": "Deployment administrator"}]},
                             token=tok), 409)
    users = expect(srv.request("GET", "/rest/users", token=tok), 200)
    assert [m["userName"] for m in users["members"]] == ["admin2"], users


def test_no_password_hash_in_any_response(srv):
    pws = [srv.admin_password()]
    for i, role in enumerate(ROLES):
        pws.append(mk_user(srv, "hash%d" % i, role, "Hash-user-pw-%d" % i))
    for path in ("/rest/users", "/rest/users?count=-1&sort=userName:desc", "/rest/users/hash0",
                 "/rest/users/administrator", "/rest/login-sessions", "/rest/users?filter=" +
                 "userName%20matches%20%27hash%25%27"):
        r = srv.request("GET", path)
        expect(r, 200)
        no_secrets(r, *pws)
    r = srv.request("GET", "/rest/users")
    for m in r.json()["members"]:
        assert set(m) & {"password", "passwordHash", "currentPassword"} == set(), m
    assert r.json()["total"] == 5
    # a filter or sort on the hash cannot probe it
    for f in ("passwordHash matches '$%'", "passwordHash != null", "passwordHash matches '%y%'"):
        r = srv.request("GET", "/rest/users?filter=" + urllib.parse.quote(f, safe=""))
        assert expect(r, 200)["total"] == 0, (f, r)
    assert expect(srv.request("GET", "/rest/users?filter=userName%20matches%20%27hash%25%27"), 200)["total"] == 4
    # update replies, too
    r = srv.request("PUT", "/rest/users/hash3", {"fullName": "Hash Three", "password": "Hash-user-pw-new"})
    expect(r, 200)
    no_secrets(r, *pws, "Hash-user-pw-new")
    assert r.json()["fullName"] == "Hash Three"


def test_admin_password_file_and_log():
    with harness.Server() as srv:
        path = os.path.join(srv.data_dir, "admin-password")
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        pw = srv.admin_password()
        assert len(pw) >= 12
        srv.login()
        r = srv.request("POST", "/rest/login-sessions", {"userName": "administrator", "password": pw + "-wrong"},
                        auth=False)
        expect_error(r, 401)
        userpw = mk_user(srv, "logcheck", "Read only", "Log-check-Passw0rd")
        tok = login(srv, "logcheck", userpw)
        expect(srv.request("PUT", "/rest/users/logcheck", {"password": "Log-check-Passw0rd-2",
                                                           "currentPassword": userpw}, token=tok), 200)
        expect(srv.request("POST", "/rest/plan-scripts",
                           ps_body("Log check", "echo @Password@"), token=srv.token), 201)
        log = srv.read_log()
        assert "logged in" in log or "login" in log.lower(), log[-2000:]  # the log is being written
        for secret in (pw, userpw, "Log-check-Passw0rd-2", srv.token, tok):
            assert secret not in log, "secret in the daemon log"
        assert "$y$" not in log
        # the admin password file is not rewritten by a restart
        srv.stop()
        srv.start()
        assert srv.admin_password() == pw
        srv.login()


def test_idle_timeout(srv):
    r = srv.request("GET", "/rest/sessions/idle-timeout")
    v = expect(r, 200)
    assert isinstance(v["idleTimeout"], int) and v["idleTimeout"] > 0, v
    assert v["idleTimeout"] == 86400 * 1000
    # Go sends the token as Session-ID (and auth) here
    r = srv.request("GET", "/rest/sessions/idle-timeout", auth=False, headers={"Session-ID": srv.token})
    assert expect(r, 200) == v
    r = srv.request("POST", "/rest/sessions/idle-timeout", {"idleTimeout": 120000},
                    headers={"Session-ID": srv.token})
    assert expect(r, 200) == {"idleTimeout": 120000}
    assert expect(srv.request("GET", "/rest/sessions/idle-timeout"), 200) == {"idleTimeout": 120000}
    for bad in ({"idleTimeout": 59999}, {"idleTimeout": "120000"}, {"idleTimeout": 8 * 86400 * 1000},
                {}, {"idleTimeout": None}, {"idleTimeout": 1.5}):
        expect_error(srv.request("POST", "/rest/sessions/idle-timeout", bad), 400)
    assert expect(srv.request("GET", "/rest/sessions/idle-timeout"), 200) == {"idleTimeout": 120000}
    # the session still works with the new timeout
    expect(srv.request("GET", PS_COLL), 200)
    expect_error(srv.request("DELETE", "/rest/sessions/idle-timeout"), 405)
