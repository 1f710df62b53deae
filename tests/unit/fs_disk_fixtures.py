#!/usr/bin/env python3
"""fs_disk_fixtures.py OUTDIR — the disk images of tests/unit/test_fs_disk.c.

Every image is built with Debian's own tools, never with Streamer's code:
sfdisk for the partition tables, mkfs.* / mkswap / genisoimage / mksquashfs /
mkntfs for the filesystems, and lvm2 itself for the LVM2 physical volumes,
volume groups and logical volumes. lvm2 needs block devices, so each PV is a
loop device over its byte range of the image file (losetup -o/--sizelimit);
device-mapper is not in this kernel, so lvm2 runs with activation disabled
(global/activation=0, lvcreate -an -Zn) with a private LVM_SYSTEM_DIR whose
filter sees only our loop devices. LV contents are written into the image
through lvm2's own report of where each segment's extents live (seg_pe_ranges,
pe_start, extent size): the test then checks that Streamer reads the same
bytes back through its own metadata parser.

Writes into OUTDIR (never into the repository):
  mbr.img     200 MiB MBR: p1 FAT16 "BOOTBANK", p3 PV, p2 extended with
              p5 ext4 "root", p6 swap, p7 PV, p8 empty; VG vg0 over p3+p7 with
              LVs root (linear, ext4), data (striped 2 x 64 KiB, a pattern),
              split (two segments on two PVs, ext2), my-lv (linear, empty)
  gpt.img     128 MiB GPT: p1 ESP FAT32 "EFI", p2 BIOS boot, p3 Microsoft
              reserved, p5 ext3 "boot", p6 iso9660, p7 squashfs, p8 ntfs,
              p9 ext2 (p4 unused: numbers are sparse)
  pvdisk.img  32 MiB whole-disk PV with two metadata areas, VG vgw, LV lv (vfat)
  fat.img     4 MiB unpartitioned FAT12; xfs.img, btrfs.img whole-disk
  manifest.json  what the independent tools say: sfdisk --json of each table,
              blkid -p of each partition and LV (TYPE/LABEL/UUID), lvm2's lvs and
              vgs, the sha256 of every LV's contents, lvm2's segment map.
The LVM part needs root and loop devices; without them manifest.json has
"lvm": false and only the partition images are built.

fs_disk_fixtures.py --fuzz-seeds DIR — the seed corpus of tests/fuzz/fuzz_fs_disk.c
(tests/fuzz/corpus/fuzz_fs_disk): small images made the same way (an MBR with
logical partitions and a FAT12, a GPT with an ext2, a whole-disk PV, two PVs
with a striped LV), each written in the fuzz target's input format: the disk
size (u32 little-endian), then its non-zero 512-byte sectors as runs of
(u32 offset, u16 length, bytes).

fs_disk_fixtures.py --lvm-check IMG OFFSET:SIZE... — lvm2's own verdict on
the PVs at those byte ranges of IMG (after Streamer wrote to them): prints
JSON {"vgs": [[name, seqno, pv_count, lv_count]], "lvs": ["/dev/VG/LV"],
"vgck": rc, "pvck": [rc...], "stderr": "..."} where stderr gathers every
complaint of vgs, lvs, vgck and pvck.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

check = sys.argv[1] == "--lvm-check"
seeds = sys.argv[1] == "--fuzz-seeds"
out = tempfile.mkdtemp(prefix="fs-disk-check-") if check or seeds else sys.argv[1]
os.makedirs(out, exist_ok=True)
MiB = 1 << 20
manifest = {"images": {}, "lvm": False}
loops = []


def path(name):
    return os.path.join(out, name)


def run(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw).stdout.decode()


def have(tool):
    return shutil.which(tool) is not None


def blank(name, size):
    p = path(name)
    with open(p, "wb") as f:
        f.truncate(size)
    return p


def put(img, off, data):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(data)


def mkfs_file(size, cmd, *args):
    """A filesystem image in a temporary file, returned as bytes."""
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".fs")
    os.close(fd)
    os.truncate(tmp, size)
    try:
        run(cmd, *[a.replace("@", tmp) for a in args])
        with open(tmp, "rb") as f:
            return f.read()
    finally:
        os.unlink(tmp)


def blkid(img, off=None, size=None):
    args = ["blkid", "-p", "-o", "export"]
    if off is not None:
        args += ["--offset", str(off), "--size", str(size)]
    r = subprocess.run(args + [img], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    kv = {}
    for line in r.stdout.decode(errors="replace").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            kv[k] = v
    return {k: kv.get(k, "") for k in ("TYPE", "LABEL", "UUID")}


def blkid_bytes(data):
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".probe")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        return blkid(tmp)
    finally:
        os.unlink(tmp)


def table(img, script):
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", img], input=script.encode(),
                   check=True, stdout=subprocess.DEVNULL)
    t = json.loads(run("sfdisk", "--json", img))["partitiontable"]
    parts = {}
    for p in t["partitions"]:
        n = int(p["node"][len(img):])
        parts[n] = {"start": p["start"] * 512, "size": p["size"] * 512, "type": p["type"]}
    return t, parts


def image(name, img, t, parts):
    """Record the partitions (blkid's view of each is added at the end)."""
    entry = {"label": t["label"], "partitions": {str(n): p for n, p in parts.items()}, "lvs": {},
             "path": img}
    manifest["images"][name] = entry


# ---- MBR with logical partitions ----------------------------------------
def mbr_image():
    mbr = blank("mbr.img", 200 * MiB)
    t, parts = table(mbr, """label: dos
label-id: 0x5eed0001
{0}1 : start=2048, size=32768, type=e, bootable
{0}3 : start=34816, size=81920, type=8e
{0}2 : start=116736, type=5
{0}5 : size=49152, type=83
{0}6 : size=16384, type=82
{0}7 : size=131072, type=8e
{0}8 : size=8192, type=83
""".format(mbr))
    put(mbr, parts[1]["start"], mkfs_file(parts[1]["size"], "mkfs.vfat", "-F", "16", "-n", "BOOTBANK",
                                          "-i", "1234abcd", "@"))
    put(mbr, parts[5]["start"], mkfs_file(parts[5]["size"], "mkfs.ext4", "-q", "-F", "-L", "root", "-U",
                                          "0b7c1f5e-3c2a-4d8e-9f10-1a2b3c4d5e6f", "@"))
    put(mbr, parts[6]["start"], mkfs_file(parts[6]["size"], "mkswap", "-L", "swappy", "-U",
                                          "6f5e4d3c-2b1a-4098-8f7e-6d5c4b3a2918", "@"))
    image("mbr", mbr, t, parts)
    return mbr


# ---- GPT with sparse numbers ---------------------------------------------
def gpt_image():
    gpt = blank("gpt.img", 128 * MiB)
    t, parts = table(gpt, """label: gpt
label-id: 5EED0002-0000-4000-8000-000000000001
{0}1 : start=2048, size=81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"
{0}2 : size=2048, type=21686148-6449-6E6F-744E-656564454649
{0}3 : size=32768, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE
{0}5 : size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
{0}6 : size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
{0}7 : size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
{0}8 : size=16384, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
{0}9 : size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
""".format(gpt))
    put(gpt, parts[1]["start"], mkfs_file(parts[1]["size"], "mkfs.vfat", "-F", "32", "-n", "EFI", "-i",
                                          "5eedcafe", "@"))
    put(gpt, parts[5]["start"], mkfs_file(parts[5]["size"], "mkfs.ext3", "-q", "-F", "-L", "boot", "@"))
    src = tempfile.mkdtemp(dir=out)
    with open(os.path.join(src, "hello.txt"), "w") as f:
        f.write("hello\n")
    iso = os.path.join(out, "tmp.iso")
    run("genisoimage", "-quiet", "-V", "CDLABEL", "-o", iso, src)
    with open(iso, "rb") as f:
        put(gpt, parts[6]["start"], f.read())
    os.unlink(iso)
    sq = os.path.join(out, "tmp.sqfs")
    run("mksquashfs", src, sq, "-quiet", "-no-progress", "-noappend")
    with open(sq, "rb") as f:
        put(gpt, parts[7]["start"], f.read())
    os.unlink(sq)
    shutil.rmtree(src)
    put(gpt, parts[8]["start"], mkfs_file(parts[8]["size"], "mkntfs", "-q", "-F", "-f", "-L", "WIN", "@"))
    put(gpt, parts[9]["start"], mkfs_file(parts[9]["size"], "mkfs.ext2", "-q", "-F", "-L", "e2", "@"))
    image("gpt", gpt, t, parts)
    return gpt


# ---- whole-disk filesystems ------------------------------------------------
def whole_images():
    for name, size, cmd in (("fat.img", 4 * MiB, ["mkfs.vfat", "-F", "12", "-n", "FLOPPY", "@"]),
                            ("xfs.img", 300 * MiB, ["mkfs.xfs", "-q", "-f", "-L", "xroot", "@"]),
                            ("btrfs.img", 128 * MiB, ["mkfs.btrfs", "-q", "-f", "-L", "broot", "@"])):
        p = blank(name, size)
        run(cmd[0], *[a.replace("@", p) for a in cmd[1:]])
        manifest["images"][name[:-4]] = {"label": "", "partitions": {}, "lvs": {}, "whole": blkid(p)}


# ---- LVM2 through lvm2 itself on loop devices ----------------------------


def losetup(img, off, size):
    dev = run("losetup", "-f", "--show", "-o", str(off), "--sizelimit", str(size), img).strip()
    loops.append(dev)
    return dev


def lvm_env(devs):
    d = tempfile.mkdtemp(dir=out, prefix="lvmconf")
    accept = ", ".join('"a|^%s$|"' % x for x in devs)
    with open(os.path.join(d, "lvm.conf"), "w") as f:
        f.write("""devices { filter = [ %s, "r|.*|" ] global_filter = [ %s, "r|.*|" ]
  obtain_device_list_from_udev = 0 use_devicesfile = 0 pv_min_size = 512 hints = "none" }
global { activation = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 0 archive = 0 }
""" % (accept, accept))
    env = dict(os.environ, LVM_SYSTEM_DIR=d, LVM_SUPPRESS_FD_WARNINGS="1")
    return d, env


def lvm(env, *args):
    return subprocess.run(("lvm",) + args, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env).stdout.decode()


def report(env, cmd, fields, *extra):
    r = json.loads(lvm(env, cmd, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields, *extra))
    (rows,) = r["report"][0].values()  # "pv", "vg", "lv" or "seg"
    return rows


def pattern(size, seed):
    """Every 512-byte block holds its own offset and a seed: a striping mistake shows."""
    b = bytearray(size)
    for off in range(0, size, 512):
        rec = ("%s@%012d;" % (seed, off)).encode()
        b[off:off + 512] = (rec * (512 // len(rec) + 1))[:512]
    return bytes(b)


def scatter(env, img_of, vg, name, data):
    """Write data as LV vg/name's contents, using lvm2's segment report."""
    segs = report(env, "lvs", "lv_name,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges",
                  "--segments", "%s/%s" % (vg, name))
    ext = int(report(env, "vgs", "vg_extent_size", vg)[0]["vg_extent_size"])
    pvs = {p["pv_name"]: int(p["pe_start"]) for p in report(env, "pvs", "pv_name,pe_start")}
    desc = []
    for s in segs:
        lv_off = int(s["seg_start_pe"]) * ext
        stripes = int(s["stripes"])
        ssize = int(s["stripe_size"]) if stripes > 1 else 0
        ranges = []
        for r in s["seg_pe_ranges"].split():
            dev, pe = r.rsplit(":", 1)
            first = int(pe.split("-")[0])
            ranges.append((dev, first))
        seg_len = int(s["seg_size_pe"]) * ext
        desc.append({"lv_start": lv_off, "len": seg_len, "stripes": stripes, "stripe_size": ssize,
                     "disk_offsets": [img_of[dev][1] + pvs[dev] + first * ext for dev, first in ranges]})
        for o in range(0, seg_len, ssize or seg_len):
            n = ssize or seg_len
            if stripes > 1:
                chunk = o // ssize
                dev, first = ranges[chunk % stripes]
                dev_off = pvs[dev] + first * ext + (chunk // stripes) * ssize
            else:
                dev, first = ranges[0]
                dev_off = pvs[dev] + first * ext
            img, base = img_of[dev]
            put(img, base + dev_off, data[lv_off + o:lv_off + o + n])
    return desc


def lvm_images(mbr):
    # vg0 over mbr.img's p3 and p7
    p = manifest["images"]["mbr"]["partitions"]
    d3 = losetup(mbr, p["3"]["start"], p["3"]["size"])
    d7 = losetup(mbr, p["7"]["start"], p["7"]["size"])
    conf, env = lvm_env([d3, d7])
    lvm(env, "pvcreate", "-q", d3, d7)
    lvm(env, "vgcreate", "-q", "vg0", d3, d7)
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "root", "-L", "16M", "vg0", d7)
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "data", "-i", "2", "-I", "64k", "-L", "16M", "vg0", d3, d7)
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "split", "-L", "4M", "vg0", d3)
    lvm(env, "lvextend", "-q", "-L", "+8M", "vg0/split", d7)
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "my-lv", "-L", "4M", "vg0", d3)
    img_of = {d3: (mbr, p["3"]["start"]), d7: (mbr, p["7"]["start"])}
    lvs = {}
    contents = {
        "root": mkfs_file(16 * MiB, "mkfs.ext4", "-q", "-F", "-L", "lvroot", "@"),
        "data": pattern(16 * MiB, "vg0/data"),
        "split": mkfs_file(12 * MiB, "mkfs.ext2", "-q", "-F", "-L", "split", "@"),
        "my-lv": bytes(4 * MiB),
    }
    for name, data in contents.items():
        segs = scatter(env, img_of, "vg0", name, data)
        lvs["/dev/vg0/" + name] = dict(blkid_bytes(data), sha256=hashlib.sha256(data).hexdigest(),
                                       size=len(data), segments=segs)
    m = manifest["images"]["mbr"]
    m["lvs"] = lvs
    m["lvm_lvs"] = sorted("/dev/" + x.strip() for x in
                          lvm(env, "lvs", "--noheadings", "-o", "vg_name,lv_name", "--separator", "/").split())
    m["lvm_vgs"] = sorted(lvm(env, "vgs", "--noheadings", "-o", "vg_name").split())
    for dev in (d3, d7):
        run("losetup", "-d", dev)
        loops.remove(dev)
    shutil.rmtree(conf)

    # vgw: a whole-disk PV with two metadata areas
    pv = blank("pvdisk.img", 32 * MiB)
    d = losetup(pv, 0, 32 * MiB)
    conf, env = lvm_env([d])
    lvm(env, "pvcreate", "-q", "--pvmetadatacopies", "2", "--metadatasize", "4k",
        "--dataalignment", "64k", d)
    lvm(env, "vgcreate", "-q", "-s", "1M", "vgw", d)
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "lv", "-L", "8M", "vgw")
    data = mkfs_file(8 * MiB, "mkfs.vfat", "-n", "LVFAT", "-i", "0badf00d", "@")
    segs = scatter(env, {d: (pv, 0)}, "vgw", "lv", data)
    manifest["images"]["pvdisk"] = {
        "label": "", "partitions": {}, "whole": blkid(pv),
        "lvs": {"/dev/vgw/lv": dict(blkid_bytes(data), sha256=hashlib.sha256(data).hexdigest(),
                                    size=len(data), segments=segs)},
        "lvm_lvs": ["/dev/vgw/lv"], "lvm_vgs": ["vgw"]}
    run("losetup", "-d", d)
    loops.remove(d)
    shutil.rmtree(conf)


def lvm_check(img, ranges):
    devs = []
    for r in ranges:
        off, size = r.split(":")
        devs.append(losetup(img, int(off), int(size)))
    conf, env = lvm_env(devs)
    res = {"stderr": ""}

    def call(*args):
        r = subprocess.run(("lvm",) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        res["stderr"] += "".join(line + "\n" for line in r.stderr.decode(errors="replace").splitlines()
                                 if "Activation disabled" not in line)
        return r

    r = call("vgs", "--noheadings", "-o", "vg_name,vg_seqno,pv_count,lv_count", "--separator", ":")
    res["vgs"] = [[x.split(":")[0].strip()] + [int(y) for y in x.split(":")[1:]]
                  for x in r.stdout.decode().split("\n") if x.strip()]
    r = call("lvs", "--noheadings", "-o", "vg_name,lv_name", "--separator", "/")
    res["lvs"] = sorted("/dev/" + x.strip() for x in r.stdout.decode().split())
    res["vgck"] = call("vgck", *[v[0] for v in res["vgs"]]).returncode if res["vgs"] else -1
    res["pvck"] = [call("pvck", d).returncode for d in devs]
    shutil.rmtree(conf)
    print(json.dumps(res))


def seed(name, img):
    """img in the fuzz input format: size, then runs of non-zero sectors"""
    with open(img, "rb") as f:
        data = f.read()
    rec = bytearray(struct.pack("<I", len(data)))
    off = 0
    while off < len(data):
        if not any(data[off:off + 512]):
            off += 512
            continue
        end = off
        while end < len(data) and end - off < 65024 and any(data[end:end + 512]):
            end += 512
        rec += struct.pack("<IH", off, end - off) + data[off:end]
        off = end
    with open(os.path.join(sys.argv[2], name), "wb") as f:
        f.write(rec)


def fuzz_seeds():
    os.makedirs(sys.argv[2], exist_ok=True)
    img = blank("s-mbr.img", 4 * MiB)
    t, parts = table(img, """label: dos
{0}1 : start=64, size=256, type=1, bootable
{0}2 : start=512, size=6000, type=5
{0}5 : start=576, size=256, type=83
{0}6 : start=1024, size=256, type=82
{0}7 : start=2048, size=512, type=8e
""".format(img))
    put(img, parts[1]["start"], mkfs_file(parts[1]["size"], "mkfs.vfat", "-F", "12", "-n", "SEED", "@"))
    seed("mbr-logical", img)
    img = blank("s-gpt.img", 1 * MiB)
    t, parts = table(img, """label: gpt
first-lba: 34
{0}1 : start=34, size=256, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
{0}3 : start=512, size=1024, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
""".format(img))
    put(img, parts[3]["start"], mkfs_file(parts[3]["size"], "mkfs.ext2", "-q", "-F", "-b", "1024", "@"))
    seed("gpt-ext2", img)
    img = blank("s-pv.img", 1 * MiB)
    d = losetup(img, 0, 1 * MiB)
    conf, env = lvm_env([d])
    lvm(env, "pvcreate", "-q", "--metadatasize", "4k", "--dataalignment", "64k", d)
    lvm(env, "vgcreate", "-q", "-s", "64k", "vgs1", d)
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "a", "-l", "3", "vgs1")
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "b", "-l", "2", "vgs1")
    lvm(env, "lvextend", "-q", "-l", "+2", "vgs1/a")
    run("losetup", "-d", d)
    loops.remove(d)
    shutil.rmtree(conf)
    seed("pv-whole", img)
    img = blank("s-striped.img", 3 * MiB)
    t, parts = table(img, """label: dos
{0}1 : start=64, size=2048, type=8e
{0}2 : start=2112, size=2048, type=8e
""".format(img))
    ds = [losetup(img, parts[n]["start"], parts[n]["size"]) for n in (1, 2)]
    conf, env = lvm_env(ds)
    lvm(env, "pvcreate", "-q", "--metadatasize", "4k", "--dataalignment", "64k", *ds)
    lvm(env, "vgcreate", "-q", "-s", "64k", "vg-s", *ds)
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "st", "-i", "2", "-I", "16k", "-l", "4", "vg-s")
    lvm(env, "lvcreate", "-q", "-an", "-Zn", "-n", "lin", "-l", "2", "vg-s")
    for x in ds:
        run("losetup", "-d", x)
        loops.remove(x)
    shutil.rmtree(conf)
    seed("pv-striped", img)


try:
    if check:
        lvm_check(sys.argv[2], sys.argv[3:])
    elif seeds:
        fuzz_seeds()
    else:
        mbr = mbr_image()
        gpt_image()
        whole_images()
        if os.geteuid() == 0 and have("lvm") and os.path.exists("/dev/loop-control"):
            lvm_images(mbr)
            manifest["lvm"] = True
finally:
    for dev in loops:
        subprocess.run(["losetup", "-d", dev])
    if check or seeds:
        shutil.rmtree(out)
if check or seeds:
    sys.exit(0)
for entry in manifest["images"].values():
    img = entry.pop("path", None)
    for p in entry["partitions"].values():
        p.update(blkid(img, p["start"], p["size"]))

with open(path("manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
