#!/usr/bin/python3
"""mkbootdisk.py — a small bootable MBR disk image for the iSCSI boot tests.

Built without root and without mounts (machine.md §3), from Debian packages only:
  * the kernel: the newest /boot/vmlinuz-* of Debian's linux-image-amd64 package
    (a Makefile DEB_TEST dependency; the machine's own kernel is not a Debian one);
  * the initramfs: busybox-static's /bin/busybox and an /init script, packed here as
    a newc cpio (so /dev/console can be a device node without mknod or root);
  * syslinux (FAT boot sector + ldlinux.sys via mtools) and syslinux-common's mbr.bin;
  * mkfs.vfat (dosfstools) and mcopy (mtools). The MBR partition table is written here.

The init prints one line to the serial console and powers off:
    STREAMER-BOOT-OK <token> <kernel release>
where <token> comes from `streamer.token=` on the kernel command line, set in
syslinux.cfg. SYSLINUX itself first prints "STREAMER-SYSLINUX <token>" (proof that
it was read from the disk). So each test run boots a disk with its own token and the
marker proves that exactly that disk was booted.

The token-less part (kernel + initramfs + FAT + MBR, about 0.3 s) is cached under
build/iscsi/ keyed by the inputs; a disk with a token is a copy of it with
syslinux.cfg rewritten by mcopy (a few ms).

Usage: mkbootdisk.py [--token T] [--out PATH] [--cache DIR]     (prints PATH)
As a module: mkbootdisk.build(token, out) -> out.
"""
import argparse
import glob
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CACHE = os.path.join(REPO, "build", "iscsi")

DISK_MIB = 32           # whole disk; the kernel is ~8 MiB, the initramfs ~1 MiB
PART_START = 2048       # sectors (1 MiB)
BUSYBOX = "/bin/busybox"
MBR_BINS = ["/usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/SYSLINUX/mbr.bin"]
FORMAT_VERSION = "3"    # bump when the layout or the init script changes

INIT = r"""#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
tok=$(/bin/busybox sed -n 's/.*streamer\.token=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "STREAMER-BOOT-OK ${tok:-none} $(/bin/busybox uname -r)"
/bin/busybox sync
/bin/busybox poweroff -f
/bin/busybox sleep 5
"""

SYSLINUX_CFG = """SERIAL 0 115200
SAY STREAMER-SYSLINUX {token}
DEFAULT linux
PROMPT 0
TIMEOUT 1
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0,115200 quiet loglevel=3 panic=-1 streamer.token={token}
"""


class BootDiskError(RuntimeError):
    pass


def kernel_path():
    """The newest Debian vmlinuz in /boot (package linux-image-amd64)."""
    def release_key(p):
        return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", os.path.basename(p)[8:])]
    cands = sorted(glob.glob("/boot/vmlinuz-*-amd64"), key=release_key)
    if not cands:
        raise BootDiskError("no /boot/vmlinuz-*-amd64: install the Debian package linux-image-amd64")
    return cands[-1]


def mbr_bin():
    for p in MBR_BINS:
        if os.path.exists(p):
            return p
    raise BootDiskError("no syslinux mbr.bin: install the Debian package syslinux-common")


def need_tools():
    missing = [t for t, pkg in (("mkfs.vfat", "dosfstools"), ("mcopy", "mtools"), ("syslinux", "syslinux"))
               if not shutil.which(t) and not os.path.exists("/usr/sbin/" + t) and not os.path.exists("/sbin/" + t)]
    if missing:
        raise BootDiskError("missing tools: %s (Debian packages dosfstools, mtools, syslinux)" % ", ".join(missing))
    if not os.path.exists(BUSYBOX):
        raise BootDiskError("no %s: install the Debian package busybox-static" % BUSYBOX)


def tool(name):
    for d in ("", "/usr/sbin/", "/sbin/"):
        p = shutil.which(name) if not d else d + name
        if p and os.path.exists(p):
            return p
    return name


def run(*args):
    r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise BootDiskError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stdout.decode(errors="replace")))
    return r.stdout


# -- initramfs: newc cpio written here -----------------------------------------
def _cpio_entry(out, ino, name, mode, data=b"", rdev=(0, 0), nlink=1):
    name_b = name.encode() + b"\0"
    hdr = "070701" + "".join("%08X" % v for v in (
        ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
    out.write(hdr.encode())
    out.write(name_b)
    out.write(b"\0" * ((4 - (110 + len(name_b)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def make_initramfs():
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    buf = io.BytesIO()
    entries = [
        ("dev", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
        ("dev/null", stat.S_IFCHR | 0o666, b"", (1, 3)),
        ("dev/ttyS0", stat.S_IFCHR | 0o600, b"", (4, 64)),
        ("proc", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("sys", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("bin", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox, (0, 0)),
        ("bin/sh", stat.S_IFLNK | 0o777, b"busybox", (0, 0)),
        ("init", stat.S_IFREG | 0o755, INIT.encode(), (0, 0)),
    ]
    for ino, (name, mode, data, rdev) in enumerate(entries, 1):
        _cpio_entry(buf, ino, name, mode, data, rdev, 2 if stat.S_ISDIR(mode) else 1)
    _cpio_entry(buf, 0, "TRAILER!!!", 0)
    return gzip.compress(buf.getvalue(), 9, mtime=0)


# -- MBR ---------------------------------------------------------------------
def _chs(lba, heads=255, spt=63):
    c, rem = divmod(lba, heads * spt)
    h, s = divmod(rem, spt)
    if c > 1023:
        return bytes([0xFE, 0xFF, 0xFF])
    return bytes([h, ((s + 1) & 0x3F) | ((c >> 2) & 0xC0), c & 0xFF])


def partition_entry(start, count, ptype=0x0E, bootable=True):
    """One 16-byte MBR partition entry (LBA and CHS; sectors of 512 bytes)."""
    return bytes([0x80 if bootable else 0]) + _chs(start) + bytes([ptype]) + _chs(start + count - 1) + \
        start.to_bytes(4, "little") + count.to_bytes(4, "little")


def partition_table(start, count, ptype=0x0E):
    return partition_entry(start, count, ptype) + b"\0" * 48


def write_mbr_disk(out, size_bytes, parts):
    """An MBR disk image at `out` of `size_bytes` (sparse): syslinux-common's boot code,
    a partition table of up to 4 `parts` = [(start_sector, image_path, type, bootable)],
    each partition's bytes copied from its image file (its size is the partition's)."""
    if len(parts) > 4:
        raise BootDiskError("at most 4 primary partitions")
    with open(mbr_bin(), "rb") as f:
        code = f.read()[:440]
    table = b""
    for start, path, ptype, boot in parts:
        table += partition_entry(start, os.path.getsize(path) // 512, ptype, boot)
    with open(out, "wb") as d:
        d.write(code.ljust(440, b"\0"))
        d.write(b"STRM" + b"\0\0")  # disk signature + reserved
        d.write(table.ljust(64, b"\0"))
        d.write(b"\x55\xAA")
        for start, path, _, _ in parts:
            d.seek(start * 512)
            with open(path, "rb") as p:
                while True:
                    b = p.read(1 << 20)
                    if not b:
                        break
                    if b.count(0) == len(b):
                        d.seek(len(b), 1)  # keep runs of zeros sparse
                    else:
                        d.write(b)
        d.truncate(size_bytes)


def input_key():
    h = hashlib.sha256(FORMAT_VERSION.encode() + INIT.encode() + SYSLINUX_CFG.encode())
    for p in (kernel_path(), BUSYBOX, mbr_bin(), shutil.which("syslinux") or "syslinux"):
        st = os.stat(p) if os.path.exists(p) else None
        h.update(("%s %s %s" % (p, st.st_size if st else 0, st.st_mtime_ns if st else 0)).encode())
    return h.hexdigest()[:16]


def build_base(cache=DEFAULT_CACHE):
    """The token-less disk, cached: cache/bootdisk-<key>.img."""
    need_tools()
    os.makedirs(cache, exist_ok=True)
    key = input_key()
    out = os.path.join(cache, "bootdisk-%s.img" % key)
    if os.path.exists(out):
        return out
    work = tempfile.mkdtemp(prefix="bootdisk-", dir=cache)
    try:
        part = os.path.join(work, "part.img")
        sectors = DISK_MIB * 2048 - PART_START
        with open(part, "wb") as f:
            f.truncate(sectors * 512)
        run(tool("mkfs.vfat"), "-F", "16", "-n", "STREAMER", "-h", str(PART_START), part)
        run(tool("syslinux"), "--install", part)
        files = {"vmlinuz": open(kernel_path(), "rb").read(), "initrd.gz": make_initramfs(),
                 "syslinux.cfg": SYSLINUX_CFG.format(token="none").encode()}
        for name, data in files.items():
            p = os.path.join(work, name)
            with open(p, "wb") as f:
                f.write(data)
            run(tool("mcopy"), "-o", "-i", part, p, "::/" + name)
        disk = os.path.join(work, "disk.img")
        with open(mbr_bin(), "rb") as f:
            mbr = f.read()[:440]
        with open(disk, "wb") as d, open(part, "rb") as p:
            d.write(mbr.ljust(440, b"\0"))
            d.write(b"STRM" + b"\0\0")  # disk signature + reserved
            d.write(partition_table(PART_START, sectors))
            d.write(b"\x55\xAA")
            d.seek(PART_START * 512)
            shutil.copyfileobj(p, d, 1 << 20)
            d.truncate(DISK_MIB << 20)
        os.rename(disk, out)
        for old in glob.glob(os.path.join(cache, "bootdisk-*.img")):
            if old != out:
                os.unlink(old)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(token, out, cache=DEFAULT_CACHE):
    """A copy of the cached base disk whose syslinux.cfg carries `token`."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", token):
        raise BootDiskError("token must be 1-64 of [A-Za-z0-9._-]")
    base = build_base(cache)
    tmp = out + ".tmp"
    shutil.copyfile(base, tmp)
    cfg = tmp + ".cfg"
    try:
        with open(cfg, "w") as f:
            f.write(SYSLINUX_CFG.format(token=token))
        run(tool("mcopy"), "-o", "-i", "%s@@%d" % (tmp, PART_START * 512), cfg, "::/syslinux.cfg")
        os.rename(tmp, out)
    finally:
        for p in (cfg, tmp):
            if os.path.exists(p):
                os.unlink(p)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--token", default="none")
    ap.add_argument("--out", default=None)
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    a = ap.parse_args()
    try:
        out = a.out or os.path.join(a.cache, "bootdisk.img")
        print(build(a.token, out, a.cache) if a.token != "none" or a.out else build_base(a.cache))
    except BootDiskError as e:
        print("mkbootdisk: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
