"""test_boot.py — GET /boot/ipxe over HTTP, without a VM.

The chain script (no mac) names the server the way the client did (Host
header) and http or https as the client used; bad and missing MACs; an
unknown MAC gets the exit script; no session needed, the REST API still
wants one; --boot-clients refuses other networks (403) and is checked at
start; --boot-listen serves /boot/ipxe and nothing else over plain HTTP; every
request is logged. The sanboot answers of registered machines are in
test_boot_deploy (REST + CLI) and test_boot_developer (a VM).
"""
import http.client
import ssl
import subprocess

import harness


def get(port, path, host=None, tls=False):
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            c.putheader("Host", host)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def test_boot_script_http(srv):
    st, ct, body = get(srv.port, "/boot/ipxe", host="10.0.2.2:%d" % srv.port)
    assert st == 200 and ct.startswith("text/plain"), (st, ct, body)
    assert body == "#!ipxe\nchain http://10.0.2.2:%d/boot/ipxe?mac=${netX/mac}\n" % srv.port, body
    st, _, body = get(srv.port, "/boot/ipxe/")  # default Host: 127.0.0.1:port
    assert st == 200 and "chain http://127.0.0.1:%d/boot/ipxe?mac=" % srv.port in body, body
    st, _, body = get(srv.port, "/boot/ipxe", host="evil${net0/mac}")
    assert st == 400 and "Host" in body, body
    for mac in ("52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"):
        st, ct, body = get(srv.port, "/boot/ipxe?mac=" + mac)
        assert st == 200 and ct.startswith("text/plain"), (st, body)
        assert body == "#!ipxe\necho no OS volume for 52:54:00:ab:cd:ef: booting from local disk\nexit\n", body
    for bad in ("", "zz", "52:54:00:ab:cd", "52:54-00:ab:cd:ef", "52%3A54%3A00%3Aab%3Acd%3Aeg"):
        st, ct, body = get(srv.port, "/boot/ipxe?mac=" + bad)
        assert st == 400 and ct.startswith("text/plain") and "mac" in body, (bad, st, body)
    st, _, body = get(srv.port, "/boot/other")
    assert st == 404, (st, body)
    r = srv.request("POST", "/boot/ipxe", raw="x", auth=False)
    assert r.status == 405, r
    # the REST API still wants a session
    assert srv.request("GET", "/rest/golden-images", auth=False).status == 401
    log = srv.read_log()
    assert "comp=boot" in log and "mac=52:54:00:ab:cd:ef -> exit-unknown-mac" in log, log[-2000:]
    assert "mac=(invalid) -> 400" in log, log[-2000:]


def test_boot_script_https():
    with harness.Server(tls=True) as srv:
        st, _, body = get(srv.port, "/boot/ipxe", host="streamer.example:8443", tls=True)
        assert st == 200 and body.startswith("#!ipxe\nchain https://streamer.example:8443/boot/ipxe?mac="), body


def test_boot_clients_and_listener():
    bport = harness.free_port()
    with harness.Server(extra_args=["--boot-clients", "10.0.0.0/8,fd00::/64",
                                    "--boot-listen", "127.0.0.1:%d" % bport]) as srv:
        st, _, body = get(srv.port, "/boot/ipxe?mac=52:54:00:ab:cd:ef")
        assert st == 403 and "boot client networks" in body, (st, body)
        st, _, body = get(bport, "/boot/ipxe")
        assert st == 403, (st, body)
        assert "-> 403 (not in --boot-clients)" in srv.read_log()


def test_boot_options_checked_at_start():
    for args, word in ((["--boot-clients", "10.0.0.0/33"], "prefix"),
                       (["--boot-clients", "10.0.0.0/8,"], "comma-separated"),
                       (["--boot-clients", "10.0.0.0/8, 127.0.0.1"], "not an IP address"),
                       (["--boot-clients", "example.com"], "not an IP address"),
                       (["--boot-listen", "nowhere"], "ADDR:PORT")):
        srv = harness.Server(extra_args=args)
        try:
            p = subprocess.run(srv.args(), capture_output=True, text=True, timeout=30)
            assert p.returncode == 2 and word in p.stderr, (args, p.returncode, p.stderr)
        finally:
            srv.cleanup()


def test_boot_listener_serves_only_boot():
    bport = harness.free_port()
    with harness.Server(extra_args=["--boot-clients", "127.0.0.0/8",
                                    "--boot-listen", "127.0.0.1:%d" % bport]) as srv:
        st, _, body = get(bport, "/boot/ipxe", host="192.0.2.1:%d" % bport)
        assert st == 200 and "chain http://192.0.2.1:%d/boot/ipxe?mac=" % bport in body, body
        st, _, body = get(bport, "/boot/ipxe?mac=52:54:00:ab:cd:ef")
        assert st == 200 and body.endswith("\nexit\n"), body
        for path in ("/rest/version", "/rest/login-sessions", "/"):
            st, _, body = get(bport, path)
            assert st == 404 and "--boot-listen" in body, (path, st, body)
        assert srv.request("GET", "/rest/version", auth=False).status == 200
