"""A small iSCSI initiator for tests (RFC 7143), written for Streamer's
protocol and negative tests and to make the fuzz corpus: it builds PDUs byte
by byte, so tests can also send broken ones. Not a general initiator."""
import hashlib
import os
import socket
import struct

ISID = bytes([0x80, 0x12, 0x34, 0x56, 0x78, 0x9A])


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def kv(d):
    """dict or list of pairs -> key=value\\0 bytes"""
    items = d.items() if isinstance(d, dict) else d
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in items)


def parse_kv(data):
    out = {}
    for part in data.split(b"\0"):
        if b"=" in part:
            k, v = part.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


def pad(b):
    return b + b"\0" * (-len(b) % 4)


def bhs(opcode, flags=0, data=b"", lun=0, itt=0, rest=b"", immediate=False, ahs=b""):
    """48-byte basic header segment; rest = bytes 20..47 (28 bytes)."""
    h = bytearray(48)
    h[0] = opcode | (0x40 if immediate else 0)
    h[1] = flags
    h[4] = len(ahs) // 4
    h[5:8] = len(data).to_bytes(3, "big")
    h[8:16] = struct.pack(">Q", lun << 48 if lun < 256 else lun)
    h[16:20] = struct.pack(">I", itt)
    h[20:48] = rest.ljust(28, b"\0")[:28]
    return bytes(h)


def login_pdu(keys, csg=1, nsg=3, transit=True, itt=0, cmdsn=0, exp_statsn=0, tsih=0, cid=0,
              isid=ISID, cont=False):
    data = kv(keys) if not isinstance(keys, bytes) else keys
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
    h = bytearray(bhs(0x03, flags, data, itt=itt, immediate=True))
    h[2] = 0  # VersionMax
    h[3] = 0  # VersionMin
    h[8:14] = isid
    h[14:16] = struct.pack(">H", tsih)
    h[20:22] = struct.pack(">H", cid)
    h[24:28] = struct.pack(">I", cmdsn)
    h[28:32] = struct.pack(">I", exp_statsn)
    return bytes(h) + pad(data)


def scsi_cmd_pdu(cdb, itt, cmdsn, edtl=0, read=False, write=False, data=b"", final=True,
                 lun=0, exp_statsn=0, immediate=False):
    flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
    rest = struct.pack(">III", edtl, cmdsn, exp_statsn) + bytes(cdb).ljust(16, b"\0")
    return bhs(0x01, flags, data, lun=lun, itt=itt, rest=rest, immediate=immediate) + pad(data)


def data_out_pdu(itt, ttt, datasn, offset, data, final=True, lun=0, exp_statsn=0):
    rest = struct.pack(">II", ttt, 0) + struct.pack(">I", exp_statsn) + b"\0" * 4 + \
        struct.pack(">III", datasn, offset, 0)
    return bhs(0x05, 0x80 if final else 0, data, lun=lun, itt=itt, rest=rest) + pad(data)


def nop_out_pdu(itt, cmdsn, data=b"", ttt=0xFFFFFFFF, immediate=True, exp_statsn=0):
    rest = struct.pack(">III", ttt, cmdsn, exp_statsn)
    return bhs(0x00, 0x80, data, itt=itt, rest=rest, immediate=immediate) + pad(data)


def text_pdu(keys, itt, cmdsn, ttt=0xFFFFFFFF, exp_statsn=0):
    data = kv(keys)
    rest = struct.pack(">III", ttt, cmdsn, exp_statsn)
    return bhs(0x04, 0x80, data, itt=itt, rest=rest, immediate=True) + pad(data)


def tmf_pdu(function, itt, cmdsn, rtt=0xFFFFFFFF, lun=0, refcmdsn=0, exp_statsn=0):
    rest = struct.pack(">IIIII", rtt, cmdsn, exp_statsn, refcmdsn, 0)
    return bhs(0x02, 0x80 | function, lun=lun, itt=itt, rest=rest, immediate=True)


def logout_pdu(itt, cmdsn, reason=0, cid=0, exp_statsn=0):
    rest = struct.pack(">HHII", cid, 0, cmdsn, exp_statsn)
    return bhs(0x06, 0x80 | reason, itt=itt, rest=rest, immediate=True)


class PDU:
    def __init__(self, hdr, data):
        self.hdr, self.data = hdr, data
        self.opcode = hdr[0] & 0x3F
        self.flags = hdr[1]
        self.itt = struct.unpack(">I", hdr[16:20])[0]

    def u32(self, off):
        return struct.unpack(">I", self.hdr[off:off + 4])[0]

    @property
    def status_class(self):
        return self.hdr[36]

    @property
    def status_detail(self):
        return self.hdr[37]


class Conn:
    def __init__(self, host, port, timeout=10.0):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.hdigest = self.ddigest = False
        self.cmdsn = 1
        self.statsn = 0
        self.itt = 1

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, raw):
        self.s.sendall(raw)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by target")
            buf += chunk
        return buf

    def recv(self):
        hdr = self.recv_exact(48)
        ahs = hdr[4] * 4
        if ahs:
            hdr += self.recv_exact(ahs)
        if self.hdigest:
            dig = struct.unpack("<I", self.recv_exact(4))[0]
            assert dig == crc32c(hdr), "bad header digest from target"
        dl = int.from_bytes(hdr[5:8], "big")
        data = b""
        if dl:
            data = self.recv_exact(dl + (-dl % 4))
            if self.ddigest:
                dig = struct.unpack("<I", self.recv_exact(4))[0]
                assert dig == crc32c(data), "bad data digest from target"
            data = data[:dl]
        p = PDU(hdr, data)
        if p.opcode in (0x21, 0x23, 0x24, 0x26, 0x22, 0x3F) or (p.opcode == 0x25 and p.flags & 1):
            self.statsn = p.u32(24) + 1
        return p

    def sendpdu(self, raw):
        """Append digests to a PDU built without them."""
        if not (self.hdigest or self.ddigest):
            self.send(raw)
            return
        hdr = raw[:48 + raw[4] * 4]
        rest = raw[len(hdr):]
        out = hdr
        if self.hdigest:
            out += struct.pack("<I", crc32c(hdr))
        out += rest
        if self.ddigest and rest:
            out += struct.pack("<I", crc32c(rest))
        self.send(out)

    def next_itt(self):
        self.itt += 1
        return self.itt

    def login(self, initiator, target=None, chap=None, mutual=None, extra=None, discovery=False):
        """Log in; chap = (name, secret), mutual = (name, secret). Returns
        the final response's keys. Raises on a failed status."""
        keys = [("InitiatorName", initiator),
                ("SessionType", "Discovery" if discovery else "Normal")]
        if target:
            keys.append(("TargetName", target))
        keys.append(("AuthMethod", "CHAP,None" if chap else "None"))
        got = {}
        p = self._login_step(keys, csg=0, nsg=1, transit=not chap)
        got.update(parse_kv(p.data))
        if chap:
            assert got.get("AuthMethod") == "CHAP", got
            p = self._login_step([("CHAP_A", "5")], csg=0, nsg=1, transit=False)
            ch = parse_kv(p.data)
            cid = int(ch["CHAP_I"])
            chal = bytes.fromhex(ch["CHAP_C"][2:])
            resp = hashlib.md5(bytes([cid]) + chap[1].encode() + chal).hexdigest()
            k = [("CHAP_N", chap[0]), ("CHAP_R", "0x" + resp)]
            mchal = None
            if mutual:
                mchal = os.urandom(16)
                k += [("CHAP_I", "33"), ("CHAP_C", "0x" + mchal.hex())]
            p = self._login_step(k, csg=0, nsg=1, transit=True)
            r = parse_kv(p.data)
            if mutual:
                want = hashlib.md5(bytes([33]) + mutual[1].encode() + mchal).hexdigest()
                assert r.get("CHAP_N") == mutual[0], r
                assert r.get("CHAP_R", "").lower() == "0x" + want, "bad mutual CHAP response"
            got.update(r)
        ops = [("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxConnections", "1"),
               ("InitialR2T", "Yes"), ("ImmediateData", "Yes"),
               ("MaxRecvDataSegmentLength", "262144"), ("MaxBurstLength", "262144"),
               ("FirstBurstLength", "65536"), ("DefaultTime2Wait", "2"),
               ("DefaultTime2Retain", "0"), ("MaxOutstandingR2T", "1"),
               ("DataPDUInOrder", "Yes"), ("DataSequenceInOrder", "Yes"),
               ("ErrorRecoveryLevel", "0")]
        if extra:
            d = dict(ops)
            d.update(extra)
            ops = list(d.items())
        p = self._login_step(ops, csg=1, nsg=3, transit=True)
        r = parse_kv(p.data)
        got.update(r)
        self.tsih = struct.unpack(">H", p.hdr[14:16])[0]
        self.hdigest = r.get("HeaderDigest") == "CRC32C"
        self.ddigest = r.get("DataDigest") == "CRC32C"
        self.first_burst = int(r.get("FirstBurstLength", dict(ops).get("FirstBurstLength", 65536)))
        self.initial_r2t = r.get("InitialR2T", "Yes") == "Yes"
        self.immediate = r.get("ImmediateData", "Yes") == "Yes"
        self.target_mrdsl = int(got.get("MaxRecvDataSegmentLength", 8192))
        self.exp_cmdsn = p.u32(28)
        self.max_cmdsn = p.u32(32)
        return got

    def _login_step(self, keys, csg, nsg, transit):
        self.send(login_pdu(keys, csg=csg, nsg=nsg, transit=transit, itt=self.itt,
                            cmdsn=self.cmdsn, exp_statsn=self.statsn,
                            tsih=getattr(self, "tsih_join", 0)))
        p = self.recv()
        assert p.opcode == 0x23, f"expected a login response, got opcode {p.opcode:#x}"
        if p.status_class != 0:
            raise LoginError(p.status_class, p.status_detail)
        return p

    def command(self, cdb, read_len=0, write=b"", lun=0):
        """One SCSI command (immediate data + R2T as needed). Returns
        (status, data_in, sense, response_pdu)."""
        itt = self.next_itt()
        cmdsn = self.cmdsn
        self.cmdsn += 1
        fb = min(getattr(self, "first_burst", 65536), len(write))
        mrdsl = getattr(self, "target_mrdsl", 8192)
        first = write[:min(fb, mrdsl)] if write and getattr(self, "immediate", True) else b""
        edtl = read_len if read_len else len(write)
        unsol = write and not getattr(self, "initial_r2t", True) and len(first) < fb
        self.sendpdu(scsi_cmd_pdu(cdb, itt, cmdsn, edtl=edtl, read=bool(read_len),
                                  write=bool(write), data=first, lun=lun, final=not unsol,
                                  exp_statsn=self.statsn))
        if unsol:  # unsolicited Data-Out up to FirstBurstLength
            off, dsn = len(first), 0
            while off < fb:
                chunk = write[off:min(fb, off + mrdsl)]
                self.sendpdu(data_out_pdu(itt, 0xFFFFFFFF, dsn, off, chunk,
                                          final=off + len(chunk) >= fb, exp_statsn=self.statsn))
                off += len(chunk)
                dsn += 1
        data = bytearray()
        while True:
            p = self.recv()
            if p.opcode == 0x31:  # R2T
                ttt, off, want = p.u32(20), p.u32(40), p.u32(44)
                sent, dsn = 0, 0
                while sent < want:
                    chunk = write[off + sent: off + sent + min(getattr(self, "target_mrdsl", 8192), want - sent)]
                    self.sendpdu(data_out_pdu(itt, ttt, dsn, off + sent, chunk,
                                              final=sent + len(chunk) >= want,
                                              exp_statsn=self.statsn))
                    sent += len(chunk)
                    dsn += 1
                continue
            if p.opcode == 0x25:  # Data-In
                off = p.u32(40)
                data[off:off + len(p.data)] = p.data
                if p.flags & 1:
                    return p.hdr[3], bytes(data), b"", p
                continue
            if p.opcode == 0x21:
                sense = p.data[2:] if len(p.data) >= 2 else b""
                return p.hdr[3], bytes(data), sense, p
            if p.opcode == 0x20:  # NOP-In
                continue
            raise AssertionError(f"unexpected opcode {p.opcode:#x} during a command")


class LoginError(Exception):
    def __init__(self, cls, detail):
        super().__init__(f"login failed: status {cls:#04x}{detail:02x}")
        self.cls, self.detail = cls, detail
