#!/usr/bin/env python3
"""image_fixtures.py OUTDIR RESEARCH — the inputs of tests/unit/test_image.c.

Writes into OUTDIR (never into the repository):
  dev.zip, dev.sha256, dev.member   HPE's Developer golden image: the zip that is
                                    the bundle member "HPE - Developer 1.0 - UEFI
                                    Test Image - ...", the SHA-256 and name of its
                                    one raw member (computed here, independently)
  pattern.raw, pattern.sha256       a 64 MiB disk: a few MiB of data, the rest zeros
  pattern.{qcow2,vmdk,vhdx}         the same disk through qemu-img
  pattern-{stored,deflate,dd,zip64,utf8}.zip  good zips of it (stored, deflate,
                                    with a data descriptor, with zip64 local fields,
                                    with a UTF-8 member name)
  dense.raw                         16 MiB without a zero block
  bad-*.{zip,raw,qcow2,vmdk,bin}    hostile or broken inputs (see BAD below)
"""
import hashlib
import io
import os
import random
import struct
import subprocess
import sys
import zipfile

out, research = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)


def path(name):
    return os.path.join(out, name)


def write(name, data):
    with open(path(name), "wb") as f:
        f.write(data)


# --- HPE's Developer golden image ----------------------------------------
bundle = os.path.join(research, "bundles", "HewlettPackard__image-streamer-tools",
                      "HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip")
with zipfile.ZipFile(bundle) as b:
    names = [n for n in b.namelist() if n.startswith("HPE - Developer 1.0 - UEFI Test Image")]
    assert len(names) == 1, names
    dev = b.read(names[0])
write("dev.zip", dev)
with zipfile.ZipFile(io.BytesIO(dev)) as z:
    (info,) = z.infolist()
    h = hashlib.sha256()
    with z.open(info) as m:
        for block in iter(lambda: m.read(1 << 20), b""):
            h.update(block)
write("dev.sha256", h.hexdigest().encode())
write("dev.member", info.filename.encode())

# --- a disk with large zero runs -----------------------------------------
MiB = 1 << 20
rng = random.Random(1234)
disk = bytearray(64 * MiB)
disk[0:512] = bytes(446) + bytes([0x80]) + bytes(63) + b"\x55\xaa"  # an MBR-ish sector
for at in (1 * MiB, 20 * MiB, 63 * MiB):
    disk[at:at + MiB] = rng.randbytes(MiB)
disk[40 * MiB + 4096:40 * MiB + 4100] = b"\1\2\3\4"  # one lone block
pattern = bytes(disk)
write("pattern.raw", pattern)
write("pattern.sha256", hashlib.sha256(pattern).hexdigest().encode())
for fmt in ("qcow2", "vmdk", "vhdx"):
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, path("pattern.raw"),
                    path("pattern." + fmt)], check=True)


def one_member_zip(data, name="disk.raw", method=zipfile.ZIP_DEFLATED, **kw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method, **kw) as z:
        z.writestr(zipfile.ZipInfo(name) if isinstance(name, str) else name, data,
                   compress_type=method)
    return bytearray(buf.getvalue())


write("pattern-stored.zip", one_member_zip(pattern, method=zipfile.ZIP_STORED))
write("pattern-utf8.zip", one_member_zip(pattern, "disque-\u00e9t\u00e9.raw"))  # flag bit 11
write("dense.raw", rng.randbytes(16 * MiB))  # no zero block: for the disk-full tests
write("pattern-deflate.zip", one_member_zip(pattern))


class Unseekable(io.RawIOBase):
    """A stream zipfile cannot seek, so it writes data descriptors (flag bit 3)."""

    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


u = Unseekable()
with zipfile.ZipFile(u, "w", compression=zipfile.ZIP_DEFLATED) as z:
    with z.open("disk.raw", "w") as m:
        m.write(pattern)
assert struct.unpack_from("<H", u.buf, 6)[0] & 8
write("pattern-dd.zip", u.buf)

buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
    with z.open("disk.raw", "w", force_zip64=True) as m:
        m.write(pattern)
write("pattern-zip64.zip", buf.getvalue())


# --- hostile and broken inputs -------------------------------------------
def cd_offset(z):
    eocd = z.rindex(b"PK\5\6")
    return struct.unpack_from("<I", z, eocd + 16)[0]


def patch(z, local_off, cd_rel_off, fmt, value):
    """Set a field in the local header (at 0) and in the central directory entry."""
    struct.pack_into(fmt, z, local_off, value)
    struct.pack_into(fmt, z, cd_offset(z) + cd_rel_off, value)
    return z


small = pattern[:4 * MiB]

buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr("a.raw", small)
    z.writestr("b.raw", small)
write("bad-two-members.zip", buf.getvalue())

write("bad-dotdot.zip", one_member_zip(small, "../evil.raw"))
write("bad-absolute.zip", one_member_zip(small, "/etc/evil.raw"))
write("bad-backslash.zip", one_member_zip(small, "..\\evil.raw"))
write("bad-directory.zip", one_member_zip(b"", "disk/"))

buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("disk/", b"")
    z.writestr("disk/disk.raw", small)
write("bad-dir-and-file.zip", buf.getvalue())

# CRC mismatch: a stored member with one data byte flipped (the CRC is now wrong).
z = one_member_zip(small, method=zipfile.ZIP_STORED)
data_at = 30 + len("disk.raw")
z[data_at + 1 * MiB + 5] ^= 0xFF
write("bad-crc-stored.zip", z)
# A deflate member with a compressed byte flipped: inflate fails or the CRC does.
z = one_member_zip(small)
z[data_at + 1000] ^= 0x55
write("bad-crc-deflate.zip", z)

write("bad-truncated.zip", dev[:len(dev) // 2])

z = one_member_zip(small)
write("bad-declared-smaller.zip", patch(z, 22, 24, "<I", len(small) - 512))
z = one_member_zip(small)
write("bad-declared-larger.zip", patch(z, 22, 24, "<I", len(small) + 512))
z = one_member_zip(small)
write("bad-sizes-disagree.zip", struct.pack_into("<I", z, 22, len(small) - 4096) or z)
z = one_member_zip(small)
write("bad-bomb-ratio.zip", patch(z, 22, 24, "<I", 0xFFFFF000))  # 4 GiB from a few KiB

z = one_member_zip(small)
flags = struct.unpack_from("<H", z, 6)[0]
write("bad-encrypted.zip", patch(z, 6, 8, "<H", flags | 1))

write("bad-bzip2.zip", one_member_zip(small, method=zipfile.ZIP_BZIP2))
z = one_member_zip(small)
write("bad-method12.zip", patch(z, 8, 10, "<H", 12))

write("bad-garbage.bin", b"this is not a zip and not a disk, only a sentence.\n" * 100)
write("bad-random.bin", random.Random(7).randbytes(8192))
write("bad-odd-size.raw", pattern[:1000])
write("bad-empty.raw", b"")
write("bad-odd-member.zip", one_member_zip(pattern[:1000]))
write("bad-empty-member.zip", one_member_zip(b""))
write("bad-zip-in-zip.zip", one_member_zip(dev + bytes(-len(dev) % 512)))
write("bad-text-member.zip", one_member_zip((b"#!/bin/sh\necho hello\n" * 1000)[:8192]))
write("bad-trailing-garbage.zip", bytes(one_member_zip(small)) + b"JUNK")

subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw",
                path("bad-backing.qcow2"), "1M"], check=True)
write("datafile.raw", bytes(MiB))
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                "data_file=" + path("datafile.raw"), path("bad-datafile.qcow2"), "1M"],
               check=True)
write("bad-descriptor.vmdk", b"""# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

RW 2048 FLAT "/etc/hostname" 0

ddb.virtualHWVersion = "4"
""")
write("bad-not-qcow2.qcow2", bytes(MiB))
