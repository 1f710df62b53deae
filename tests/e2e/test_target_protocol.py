"""test_target_protocol.py — Streamer's iSCSI target at the PDU level, with
the small initiator in iscsi_client.py: login negotiation of every key, CHAP
(one-way, mutual, wrong secret, wrong name, skipped security stage, reflected
challenge), ACLs in login and discovery, digests on every PDU, R2T and
unsolicited data, the CmdSN window, NOP both ways, task management, logout,
session reinstatement, several connections per session, text continuation,
and hostile PDUs that must be refused without harm to other sessions.
libiscsi's conformance suite (test_iscsi_conformance.py) covers the SCSI
side; this file covers what it does not."""
import os
import socket
import struct
import time

import harness
import iscsi_client as ic

INI = "iqn.2024-01.test.protocol:host1"
INI2 = "iqn.2024-01.test.protocol:host2"


def make_volume(srv, name, size="64M", initiators=(INI,), chap=False, extra=None):
    body = {"name": name, "size": size, "initiatorNames": list(initiators)}
    if chap:
        body["chap"] = True
    if extra:
        body.update(extra)
    r = srv.request("POST", "/rest/os-volumes", body)
    assert r.status == 202, r
    t = srv.wait_task(r.headers["location"])
    assert t["taskState"] == "Completed", t
    doc = srv.request("GET", t["associatedResource"]["resourceUri"]).json()
    return doc


def creds(srv, doc):
    r = srv.request("GET", doc["uri"] + "/iscsi-credentials")
    assert r.status == 200, r
    return r.json()


def conn(srv):
    return ic.Conn("127.0.0.1", srv.iscsi_port)


def read10(lba, blocks):
    return bytes([0x28, 0]) + struct.pack(">I", lba) + b"\0" + struct.pack(">H", blocks) + b"\0"


def write10(lba, blocks, fua=False):
    return bytes([0x2A, 0x08 if fua else 0]) + struct.pack(">I", lba) + b"\0" + \
        struct.pack(">H", blocks) + b"\0"


def test_login_negotiation_and_io(srv):
    doc = make_volume(srv, "proto-a")
    iqn = doc["iscsi"]["targetName"]
    c = conn(srv)
    try:
        keys = c.login(INI, iqn, extra={"MaxBurstLength": "16384", "FirstBurstLength": "8192",
                                        "InitialR2T": "No", "MaxOutstandingR2T": "4",
                                        "X-com.example.private": "1", "IFMarker": "No",
                                        "MaxRecvDataSegmentLength": "4096"})
        # UEFI needs TargetPortalGroupTag in the first response; every key answered
        assert keys["TargetPortalGroupTag"] == "1", keys
        assert keys["TargetAlias"] == "proto-a", keys
        assert keys["MaxBurstLength"] == "16384" and keys["FirstBurstLength"] == "8192", keys
        assert keys["InitialR2T"] == "No" and keys["ImmediateData"] == "Yes", keys
        assert keys["MaxOutstandingR2T"] == "4" and keys["ErrorRecoveryLevel"] == "0", keys
        assert keys["X-com.example.private"] == "NotUnderstood", keys
        assert keys["IFMarker"] == "No", keys
        assert int(keys["MaxRecvDataSegmentLength"]) >= 8192, keys
        assert c.tsih != 0
        # a 64 KiB write: 8 KiB unsolicited + R2Ts of 16 KiB, then read back in
        # Data-In PDUs no longer than our 4 KiB MaxRecvDataSegmentLength
        data = os.urandom(65536)
        st, _, sense, _ = c.command(write10(100, 128), write=data)
        assert st == 0, sense
        st, got, sense, rsp = c.command(read10(100, 128), read_len=65536)
        assert st == 0 and got == data, sense
        # residual: ask for more than the command transfers (underflow)
        st, got, _, rsp = c.command(read10(100, 1), read_len=4096)
        assert st == 0 and len(got) == 512 and rsp.flags & 0x02 and rsp.u32(44) == 3584
    finally:
        c.close()


def test_header_and_data_digests(srv):
    doc = make_volume(srv, "proto-digest")
    c = conn(srv)
    try:
        keys = c.login(INI, doc["iscsi"]["targetName"],
                       extra={"HeaderDigest": "CRC32C,None", "DataDigest": "CRC32C"})
        assert keys["HeaderDigest"] == "CRC32C" and keys["DataDigest"] == "CRC32C", keys
        data = os.urandom(8192)
        st, _, _, _ = c.command(write10(8, 16), write=data)
        assert st == 0
        st, got, _, _ = c.command(read10(8, 16), read_len=8192)  # recv() checks the digests
        assert st == 0 and got == data
        # a corrupted data digest: the PDU is rejected, the session goes on
        pdu = ic.scsi_cmd_pdu(write10(8, 1), 900, c.cmdsn, edtl=512, write=True, data=b"x" * 512)
        c.cmdsn += 1
        hdr, body = pdu[:48], pdu[48:]
        c.send(hdr + struct.pack("<I", ic.crc32c(hdr)) + body + struct.pack("<I", 0xDEADBEEF))
        p = c.recv()
        assert p.opcode == 0x3F and p.hdr[2] == 0x02, (p.opcode, p.hdr[2])  # Reject: digest error
        st, got, _, _ = c.command(read10(8, 16), read_len=8192)
        assert st == 0 and got == data, "the corrupted write must not have landed"
        # a corrupted header digest ends the connection (ERL 0)
        c.send(ic.nop_out_pdu(901, c.cmdsn)[:48] + b"\0\0\0\0")
        c.s.settimeout(5)
        try:
            assert c.s.recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        c.close()


def test_chap_one_way_and_mutual(srv):
    doc = make_volume(srv, "proto-chap", chap=True)
    iqn = doc["iscsi"]["targetName"]
    cr = creds(srv, doc)
    name, secret = cr["chapName"], cr["chapSecret"]
    assert len(secret) >= 12
    c = conn(srv)
    c.login(INI, iqn, chap=(name, secret))
    st, _, _, _ = c.command(bytes(6))  # TEST UNIT READY
    assert st == 0
    c.close()
    for bad in ((name, secret + "x"), (name + "x", secret), (name, "")):
        c = conn(srv)
        try:
            c.login(INI, iqn, chap=bad)
            raise AssertionError("login with bad CHAP credentials succeeded")
        except ic.LoginError as e:
            assert (e.cls, e.detail) == (2, 1), e  # authentication failure
        finally:
            c.close()
    # no CHAP offered at all, and skipping the security stage
    c = conn(srv)
    try:
        c.login(INI, iqn)
        raise AssertionError("login without CHAP succeeded")
    except ic.LoginError as e:
        assert (e.cls, e.detail) == (2, 1), e
    finally:
        c.close()
    c = conn(srv)
    c.send(ic.login_pdu([("InitiatorName", INI), ("TargetName", iqn)], csg=1, nsg=3))
    p = c.recv()
    assert (p.status_class, p.status_detail) == (2, 1)
    c.close()
    # mutual CHAP: PUT the target's own secret, the initiator checks its answer
    r = srv.request("PUT", doc["uri"], {"name": "proto-chap", "chap": True, "chapSecret": secret,
                                        "mutualChapSecret": "target-secret-0123"})
    assert r.status in (200, 202), r
    if r.status == 202:
        srv.wait_task(r.headers["location"])
    cr = creds(srv, srv.request("GET", doc["uri"]).json())
    assert cr.get("mutualChapSecret") == "target-secret-0123", cr
    if True:
        c = conn(srv)
        c.login(INI, iqn, chap=(cr["chapName"], cr["chapSecret"]),
                mutual=(cr.get("mutualChapName") or iqn, cr["mutualChapSecret"]))
        c.close()
    log = srv.read_log()
    assert secret not in log and "target-secret-0123" not in log


def test_acl_in_login_and_discovery(srv):
    a = make_volume(srv, "proto-acl-a", initiators=(INI,))
    b = make_volume(srv, "proto-acl-b", initiators=(INI2,))
    c = conn(srv)
    try:
        c.login(INI2, a["iscsi"]["targetName"])
        raise AssertionError("foreign initiator logged in")
    except ic.LoginError as e:
        assert (e.cls, e.detail) == (2, 2), e  # authorization failure
    finally:
        c.close()
    c = conn(srv)
    try:
        c.login(INI, "iqn.2024-11.org.streamer:vol.nope.00000000")
        raise AssertionError("unknown target")
    except ic.LoginError as e:
        assert (e.cls, e.detail) == (2, 3), e  # not found
    finally:
        c.close()
    # discovery lists only the initiator's targets, with every portal
    for ini, mine, other in ((INI, a, b), (INI2, b, a)):
        c = conn(srv)
        c.login(ini, discovery=True)
        c.send(ic.text_pdu({"SendTargets": "All"}, 5, c.cmdsn, exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x24 and p.flags & 0x80
        text = p.data.decode()
        assert mine["iscsi"]["targetName"] in text and other["iscsi"]["targetName"] not in text
        assert "TargetAddress=127.0.0.1:%d,1" % srv.iscsi_port in text, text
        # SCSI commands are not allowed in a discovery session
        c.send(ic.scsi_cmd_pdu(bytes(6), 6, c.cmdsn, exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x3F
        c.close()


def test_cmdsn_window_nop_and_tmf(srv):
    doc = make_volume(srv, "proto-cmdsn")
    c = conn(srv)
    try:
        c.login(INI, doc["iscsi"]["targetName"])
        exp, mx = c.exp_cmdsn, c.max_cmdsn
        assert mx - exp + 1 >= 32, (exp, mx)
        # a command beyond MaxCmdSN is dropped silently; the next valid one works
        c.send(ic.scsi_cmd_pdu(bytes(6), 50, mx + 5, exp_statsn=c.statsn))
        st, _, _, rsp = c.command(bytes(6))
        assert st == 0 and rsp.itt != 50
        # ping: the target echoes our data
        c.send(ic.nop_out_pdu(60, c.cmdsn, data=b"streamer-ping", exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x20 and p.itt == 60 and p.data == b"streamer-ping"
        # ABORT TASK of an unknown task, LUN RESET, and a TMF on a LUN that does not exist
        c.send(ic.tmf_pdu(1, 61, c.cmdsn, rtt=12345, exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x22 and p.hdr[2] == 1  # task does not exist
        c.send(ic.tmf_pdu(5, 62, c.cmdsn, exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x22 and p.hdr[2] == 0
        c.send(ic.tmf_pdu(5, 63, c.cmdsn, lun=7, exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x22 and p.hdr[2] == 2  # LUN does not exist
        # ABORT TASK of a write still waiting for its data
        itt = 70
        c.send(ic.scsi_cmd_pdu(write10(0, 64), itt, c.cmdsn, edtl=32768, write=True,
                               exp_statsn=c.statsn))
        c.cmdsn += 1
        p = c.recv()
        assert p.opcode == 0x31  # R2T
        c.send(ic.tmf_pdu(1, 71, c.cmdsn, rtt=itt, exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x22 and p.itt == 71 and p.hdr[2] == 0, (p.opcode, p.hdr[2])
        # the LUN reset left a unit attention (29/03): TEST UNIT READY clears it
        for _ in range(3):
            st, _, sense, _ = c.command(bytes(6))
            if st == 0:
                break
            assert st == 2 and sense[2] & 0x0F == 6 and sense[12] == 0x29, sense.hex()
        assert st == 0
        # logout
        c.send(ic.logout_pdu(80, c.cmdsn, exp_statsn=c.statsn))
        p = c.recv()
        assert p.opcode == 0x26 and p.hdr[2] == 0
    finally:
        c.close()


def test_session_reinstatement_and_multiple_connections(srv):
    doc = make_volume(srv, "proto-sess")
    iqn = doc["iscsi"]["targetName"]
    c1 = conn(srv)
    c1.login(INI, iqn, extra={"MaxConnections": "4"})
    tsih = c1.tsih
    # a second connection joins the session (same ISID and TSIH, new CID)
    c2 = conn(srv)
    c2.tsih_join = tsih
    c2.cmdsn = c1.cmdsn
    c2.send(ic.login_pdu([("InitiatorName", INI), ("TargetName", iqn), ("AuthMethod", "None")],
                         csg=0, nsg=1, tsih=tsih, cid=1, cmdsn=c1.cmdsn))
    p = c2.recv()
    assert p.status_class == 0, (p.status_class, p.status_detail)
    c2.send(ic.login_pdu([("HeaderDigest", "None")], csg=1, nsg=3, tsih=tsih, cid=1,
                         cmdsn=c1.cmdsn, exp_statsn=c2.statsn))
    p = c2.recv()
    assert p.status_class == 0 and struct.unpack(">H", p.hdr[14:16])[0] == tsih
    # commands on both connections share one CmdSN space
    st, _, _, _ = c1.command(bytes(6))
    c2.cmdsn = c1.cmdsn
    st2, _, _, _ = c2.command(bytes(6))
    assert st == 0 and st2 == 0
    r = srv.request("GET", "/rest/iscsi/targets")
    t = [x for x in r.json()["members" if isinstance(r.json(), dict) else 0]
         if x["targetName"] == iqn] if isinstance(r.json(), dict) else \
        [x for x in r.json() if x["targetName"] == iqn]
    assert t and len(t[0]["sessions"]) == 1 and len(t[0]["sessions"][0]["connections"]) == 2, t
    # a new login with the same ISID and TSIH 0 reinstates: the old connections go
    c3 = conn(srv)
    c3.login(INI, iqn)
    assert c3.tsih != tsih
    for old in (c1, c2):
        old.s.settimeout(5)
        try:
            while True:
                d = old.s.recv(4096)
                if not d:
                    break
        except (ConnectionResetError, socket.timeout):
            pass
    st, _, _, _ = c3.command(bytes(6))
    assert st == 0
    for x in (c1, c2, c3):
        x.close()


def test_hostile_pdus_do_not_hurt_others(srv):
    doc = make_volume(srv, "proto-hostile", initiators=(INI, INI2))
    iqn = doc["iscsi"]["targetName"]
    good = conn(srv)
    good.login(INI2, iqn)
    data = os.urandom(4096)
    assert good.command(write10(0, 8), write=data)[0] == 0
    bad_streams = [
        b"\xff" * 48,                                            # garbage opcode before login
        ic.scsi_cmd_pdu(bytes(6), 1, 1),                         # SCSI command before login
        ic.login_pdu(b"NoEqualsSign\0"),                         # malformed key=value
        ic.login_pdu(b"", csg=3, nsg=3),                         # invalid stage
        ic.bhs(0x03, 0x87, b"x" * 10) [:5] + b"\xff\xff\xff" + b"\0" * 40,  # 16 MiB data segment
        ic.login_pdu([("InitiatorName", INI)], csg=1, nsg=3) + b"\0" * 7,  # truncated tail
    ]
    for raw in bad_streams:
        c = conn(srv)
        c.s.settimeout(5)
        try:
            c.send(raw)
            c.s.shutdown(socket.SHUT_WR)
            while c.s.recv(4096):
                pass
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
        c.close()
    # after login: an unknown opcode and a Data-Out for nothing are rejected
    c = conn(srv)
    c.login(INI, iqn)
    c.send(ic.bhs(0x1F, 0x80, itt=5, rest=struct.pack(">III", 0, c.cmdsn, c.statsn)))
    p = c.recv()
    assert p.opcode == 0x3F and p.hdr[2] == 0x05
    c.send(ic.data_out_pdu(999, 0x1234, 0, 0, b"z" * 512))
    st, _, _, _ = c.command(bytes(6))
    assert st == 0
    c.close()
    st, got, _, _ = good.command(read10(0, 8), read_len=4096)
    assert st == 0 and got == data
    good.close()
    assert srv.proc.poll() is None, "streamerd died"


def test_text_continuation(srv):
    for i in range(40):
        make_volume(srv, "proto-many-%02d-with-a-rather-long-name-for-the-text" % i, size="1M")
    c = conn(srv)
    c.login(INI, discovery=True, extra={"MaxRecvDataSegmentLength": "512"})
    text = b""
    c.send(ic.text_pdu({"SendTargets": "All"}, 5, c.cmdsn, exp_statsn=c.statsn))
    while True:
        p = c.recv()
        assert p.opcode == 0x24
        assert len(p.data) <= 512
        text += p.data
        if p.flags & 0x80:
            break
        assert p.flags & 0x40  # C: more to come
        c.send(ic.text_pdu({}, 5, c.cmdsn, ttt=p.u32(20), exp_statsn=c.statsn))
    assert text.count(b"TargetName=") == 40
    c.close()


def test_unexport_drops_sessions(srv):
    doc = make_volume(srv, "proto-del", initiators=(INI, INI2))
    iqn = doc["iscsi"]["targetName"]
    polite, deaf = conn(srv), conn(srv)
    polite.login(INI, iqn)
    deaf.login(INI2, iqn)
    assert polite.command(bytes(6))[0] == 0 and deaf.command(bytes(6))[0] == 0
    t0 = time.time()
    r = srv.request("DELETE", doc["uri"])
    assert r.status in (200, 202, 204), r
    # the target asks for a logout (Async Message, AsyncEvent 1)
    p = polite.recv()
    assert p.opcode == 0x32 and p.hdr[36] == 1, (p.opcode, p.hdr[36])
    polite.send(ic.logout_pdu(90, polite.cmdsn, exp_statsn=polite.statsn))
    p = polite.recv()
    assert p.opcode == 0x26 and p.hdr[2] == 0
    # the initiator that does not log out is dropped a little later
    deaf.s.settimeout(10)
    try:
        while deaf.s.recv(4096):
            pass
    except (ConnectionResetError, socket.timeout):
        pass
    if r.status == 202:
        t = srv.wait_task(r.headers["location"])
        assert t["taskState"] == "Completed", t
    assert time.time() - t0 < 8, "sessions not dropped in time"
    polite.close()
    deaf.close()
    c = conn(srv)
    try:
        c.login(INI, iqn)
        raise AssertionError("login to a deleted volume")
    except ic.LoginError as e:
        assert e.cls == 2
    c.close()


# The failed-login limiter (src/iscsi/loginlimit.h): failures count per (address,
# initiator name) and per address. Every connection of these tests comes from
# 127.0.0.1: one address shared by several initiators, as behind NAT.
PAIR_MAX, ADDR_MAX, LOG_PER_ADDR = 20, 200, 5


def login_status(srv, ini, iqn, chap=None, discovery=False):
    c = conn(srv)
    try:
        c.login(ini, iqn, chap=chap, discovery=discovery)
        return (0, 0)
    except ic.LoginError as e:
        return (e.cls, e.detail)
    finally:
        c.close()


def limiter_lines(log, event):
    return [ln for ln in log.splitlines() if "event=%s " % event in ln]


def test_failed_logins_block_only_that_initiator(srv):
    doc = make_volume(srv, "proto-limit", initiators=(INI, INI2), chap=True)
    iqn = doc["iscsi"]["targetName"]
    cr = creds(srv, doc)
    good = (cr["chapName"], cr["chapSecret"])
    # INI2 has a wrong CHAP secret and retries in a loop (as iPXE and firmware do)
    for i in range(PAIR_MAX):
        assert login_status(srv, INI2, iqn, (good[0], "wrong-secret-%02d" % i)) == (2, 1), i
    # now INI2 is refused (service unavailable), even with the right secret ...
    assert login_status(srv, INI2, iqn, good) == (3, 1)
    # ... while INI, at the same address, still logs in, however long INI2 keeps trying
    assert login_status(srv, INI, iqn, good) == (0, 0)
    for i in range(3 * PAIR_MAX):
        assert login_status(srv, INI2, iqn, (good[0], "wrong-again-%02d" % i)) == (3, 1), i
    assert login_status(srv, INI, iqn, good) == (0, 0)
    assert login_status(srv, INI, discovery=True, iqn=None) == (0, 0)
    # the refusals did not count: the address is far from its own bound
    assert login_status(srv, "iqn.2024-01.test.protocol:host3", iqn) == (2, 2)
    log = srv.read_log()
    # logging stays bounded: 5 failure lines for the address, one line for the block,
    # no line per refused login; no secret in the log
    assert len(limiter_lines(log, "login_failed")) == LOG_PER_ADDR, log[-3000:]
    blocks = limiter_lines(log, "login_blocked")
    assert len(blocks) == 1 and "initiator=" + INI2 in blocks[0], blocks
    assert "too many failed logins" not in log.replace(blocks[0], ""), log[-3000:]
    assert good[1] not in log and "wrong-secret" not in log and "wrong-again" not in log


def test_failed_logins_address_bound_stops_name_rotation(srv):
    doc = make_volume(srv, "proto-rotate", initiators=(INI,))
    iqn = doc["iscsi"]["targetName"]
    # made-up names, each kept below its own bound: ACL failures (authorization)
    per_name = PAIR_MAX - 1
    for i in range(ADDR_MAX - 1):
        name = "iqn.2024-01.test.attacker:n%d" % (i // per_name)
        assert login_status(srv, name, iqn) == (2, 2), i
    assert login_status(srv, INI, iqn) == (0, 0)  # one failure short of the address bound
    assert login_status(srv, "iqn.2024-01.test.attacker:last", iqn) == (2, 2)
    # the address bound is reached: every login from the address is refused
    assert login_status(srv, "iqn.2024-01.test.attacker:fresh", iqn) == (3, 1)
    assert login_status(srv, INI, iqn) == (3, 1)
    assert login_status(srv, INI, discovery=True, iqn=None) == (3, 1)
    log = srv.read_log()
    assert len(limiter_lines(log, "login_failed")) == LOG_PER_ADDR, log[-3000:]
    blocks = limiter_lines(log, "login_blocked")
    assert len(blocks) == 1 and "initiator=*" in blocks[0] and "failures=%d" % ADDR_MAX \
        in blocks[0], blocks


def test_malformed_logins_do_not_flood_the_log(srv):
    # refusals that are not failed logins (here an invalid stage transition) are not
    # counted — the address is not blocked — and are logged at most 100 times a minute
    doc = make_volume(srv, "proto-noflood")
    n = 130
    for _ in range(n):
        c = conn(srv)
        c.send(ic.login_pdu([("InitiatorName", INI)], csg=3, nsg=3))
        p = c.recv()
        assert (p.status_class, p.status_detail) == (2, 0), (p.status_class, p.status_detail)
        c.close()
    assert login_status(srv, INI, doc["iscsi"]["targetName"]) == (0, 0)
    log = srv.read_log()
    assert len(limiter_lines(log, "login_refused")) == 100, log[-2000:]
