#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets (tests/fuzz/corpus/*): whole,
valid initiator byte streams for fuzz_pdu (normal and discovery sessions,
reads, writes with immediate data and R2T-less unsolicited data, NOP, TMF,
text, logout, digests) and key=value lists for fuzz_login_kv. Deterministic:
re-running rewrites the same files."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
import iscsi_client as ic  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = "iqn.2024-11.org.streamer:fuzz"
INI = "iqn.2024-01.test:fuzz"


def login(extra=None, discovery=False):
    keys = [("InitiatorName", INI), ("SessionType", "Discovery" if discovery else "Normal")]
    if not discovery:
        keys.append(("TargetName", TARGET))
    ops = [("AuthMethod", "None")]
    out = ic.login_pdu(keys + ops, csg=0, nsg=1, itt=1, cmdsn=1)
    o2 = [("HeaderDigest", "None"), ("DataDigest", "None"), ("InitialR2T", "No"),
          ("ImmediateData", "Yes"), ("MaxRecvDataSegmentLength", "8192"),
          ("MaxBurstLength", "262144"), ("FirstBurstLength", "65536"),
          ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0")]
    if extra:
        o2 += extra
    out += ic.login_pdu(o2, csg=1, nsg=3, itt=1, cmdsn=1)
    return out


def read10(lba, blocks):
    return bytes([0x28, 0]) + struct.pack(">I", lba) + bytes([0]) + struct.pack(">H", blocks) + b"\0"


def write10(lba, blocks):
    return bytes([0x2A, 0]) + struct.pack(">I", lba) + bytes([0]) + struct.pack(">H", blocks) + b"\0"


def seeds():
    s = {}
    base = login()
    s["read"] = base + ic.scsi_cmd_pdu(read10(0, 8), 2, 1, edtl=4096, read=True) + \
        ic.scsi_cmd_pdu(bytes([0x12, 0, 0, 0, 96, 0]), 3, 2, edtl=96, read=True) + \
        ic.logout_pdu(4, 3)
    s["write_imm"] = base + ic.scsi_cmd_pdu(write10(8, 8), 2, 1, edtl=4096, write=True,
                                            data=b"\xab" * 4096) + ic.logout_pdu(3, 2)
    s["write_unsol"] = base + ic.scsi_cmd_pdu(write10(16, 16), 2, 1, edtl=8192, write=True,
                                              data=b"\x01" * 1024, final=False) + \
        ic.data_out_pdu(2, 0xFFFFFFFF, 0, 1024, b"\x02" * 7168, final=True) + ic.logout_pdu(3, 2)
    s["nop_tmf"] = base + ic.nop_out_pdu(2, 1, data=b"ping") + \
        ic.tmf_pdu(1, 3, 1, rtt=99) + ic.tmf_pdu(5, 4, 1) + ic.logout_pdu(5, 1)
    s["text"] = base + ic.text_pdu({"SendTargets": ""}, 2, 1) + ic.logout_pdu(3, 1)
    s["discovery"] = login(discovery=True) + ic.text_pdu({"SendTargets": "All"}, 2, 1) + \
        ic.logout_pdu(3, 1)
    s["misc_cdbs"] = base + b"".join(
        ic.scsi_cmd_pdu(cdb, 2 + i, 1 + i, edtl=ln, read=bool(ln))
        for i, (cdb, ln) in enumerate([
            (bytes([0x00] + [0] * 5), 0),                      # TEST UNIT READY
            (bytes([0x25] + [0] * 9), 8),                      # READ CAPACITY 10
            (bytes([0x9E, 0x10] + [0] * 11 + [32, 0, 0]), 32),  # READ CAPACITY 16
            (bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), 256),  # REPORT LUNS
            (bytes([0x1A, 0, 0x3F, 0, 255, 0]), 255),          # MODE SENSE 6
            (bytes([0x12, 1, 0x83, 0, 255, 0]), 255),          # INQUIRY VPD 0x83
            (bytes([0x35] + [0] * 9), 0),                      # SYNCHRONIZE CACHE 10
        ]))
    s["digests"] = login([("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")])
    return s


def kv_seeds():
    return {
        "login": ic.kv([("InitiatorName", INI), ("TargetName", TARGET), ("SessionType", "Normal"),
                        ("AuthMethod", "CHAP,None"), ("MaxRecvDataSegmentLength", "0x2000")]),
        "chap": ic.kv([("CHAP_A", "5"), ("CHAP_N", "user"), ("CHAP_R", "0x" + "ab" * 16),
                       ("CHAP_I", "7"), ("CHAP_C", "0bAQIDBA==")]),
        "ops": ic.kv([("HeaderDigest", "CRC32C,None"), ("InitialR2T", "No"),
                      ("MaxBurstLength", "16776192"), ("X-com.example.key", "v")]),
    }


def main():
    for name, seedset in (("fuzz_pdu", seeds()), ("fuzz_login_kv", kv_seeds())):
        d = os.path.join(HERE, "corpus", name)
        os.makedirs(d, exist_ok=True)
        for k, v in seedset.items():
            with open(os.path.join(d, "seed-" + k), "wb") as f:
                f.write(v)


if __name__ == "__main__":
    main()
