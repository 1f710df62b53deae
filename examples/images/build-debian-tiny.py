#!/usr/bin/python3
"""build-debian-tiny.py OUT.img — a small bootable Linux golden image from Debian packages,
whose root filesystem lives on an iSCSI disk (Streamer's OS volume).

Built without root and without mounts (nothing here needs a loop device or a kernel mount):

  * Debian packages are fetched with `apt-get download` into build/debian-tiny/debs/ and
    unpacked with `dpkg-deb -x` (both cached: a rerun downloads nothing): the kernel
    (the package linux-image-amd64 depends on), busybox-static, open-iscsi's `iscsistart`
    and the libraries it needs (libopeniscsiusr, libkmod2, libssl3, libzstd1, liblzma5,
    libc6).
  * Partition 1 (vfat, bootable): SYSLINUX, the Debian kernel and an initramfs (a newc cpio
    written here) holding busybox, iscsistart with its libraries and the kernel modules
    for the NIC, iSCSI and ext4 (with their dependencies, read from each module's
    .modinfo). Its /init reads the iBFT the iPXE `sanboot` left in memory: `iscsistart -N`
    brings up the NIC with the iBFT's address, `iscsistart -b` logs in to the same target
    iPXE booted from, and the root filesystem on partition 2 of that disk is mounted and
    switched to.
  * Partition 2 (ext4, label streamer-root, made by `mkfs.ext4 -d`; owners fixed with
    debugfs): a busybox userland laid out like a Debian system — /etc/hostname, /etc/hosts,
    /etc/network/interfaces, /etc/shadow, /root/.ssh, /etc/machine-id, /etc/ssh/ssh_host_*,
    a DHCP lease — what the sample plans in examples/ write and remove. Its /sbin/init
    prints on the serial console
        hostname: <the host name in /etc/hostname>
        first-boot: <the marker the deployment wrote, or "none">
    and a few lines more (network-config:, root-password:, ssh-key:, machine-id:), records
    the boot in /var/log/streamer-boots, removes the first-boot marker and powers off.

The disk is an MBR disk of 128 MiB (syslinux-common's mbr.bin): the partition layout the
sample Debian plans expect (root filesystem /dev/sda2). Host tools: apt-get, dpkg-deb,
readelf (binutils), mkfs.vfat (dosfstools), syslinux, mtools, mkfs.ext4 and debugfs
(e2fsprogs), ssh-keygen (openssh-client, optional: without it the host keys are random
placeholders). The partition and disk helpers are tests/iscsi/mkbootdisk.py's.

Usage: build-debian-tiny.py [--cache DIR] [--hostname NAME] OUT.img     (prints OUT.img)
"""
import argparse
import glob
import gzip
import io
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "iscsi"))
import mkbootdisk  # noqa: E402

DEFAULT_CACHE = os.path.join(REPO, "build", "debian-tiny")
DISK_MIB = 128
P1_START = 2048                   # 1 MiB
P1_MIB = 40                       # kernel ~8 MiB + initramfs ~6 MiB
P2_START = P1_START + P1_MIB * 2048
P2_MIB = DISK_MIB - 1 - P1_MIB
ARCH_LIBDIR = "lib/x86_64-linux-gnu"

# Packages whose files end up in the image (the kernel package is added at run time).
PACKAGES = ["busybox-static", "open-iscsi", "libopeniscsiusr", "libkmod2", "libssl3", "libzstd1",
            "liblzma5", "libc6"]
# Modules loaded by the initramfs, in this order (their dependencies first, found by
# .modinfo): NICs qemu and common hardware offer, iBFT, the iSCSI initiator, disks, ext4.
MODULES = ["e1000", "e1000e", "virtio_pci", "virtio_net", "iscsi_ibft", "iscsi_tcp", "sd_mod",
           "crc32c_generic", "ext4"]

SYSLINUX_CFG = """SERIAL 0 115200
SAY streamer-tiny: SYSLINUX loaded from the boot disk
DEFAULT linux
PROMPT 0
TIMEOUT 1
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0,115200 quiet loglevel=3 panic=-1 root=/dev/sda2
"""

# The initramfs' /init: iBFT -> network -> iSCSI login -> root on /dev/sda2 -> switch_root.
INITRAMFS_INIT = r"""#!/bin/sh
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /var/lock /etc/iscsi
fail() {
  echo "streamer-tiny: STREAMER-INITRAMFS-FAILED: $*"
  poweroff -f
  sleep 10
}
root=$(sed -n 's/.*\<root=\([^ ]*\).*/\1/p' /proc/cmdline)
root=${root:-/dev/sda2}
for m in $(cat /etc/modules.order); do
  insmod /lib/modules/$m.ko 2>/dev/null || echo "streamer-tiny: module $m not loaded"
done
[ -d /sys/firmware/ibft ] || fail "no iBFT: boot this disk with iPXE sanboot (iSCSI)"
echo "streamer-tiny: iBFT found, initiator $(cat /sys/firmware/ibft/initiator/initiator-name 2>/dev/null)"
iscsistart -N >/tmp/iscsistart.log 2>&1 || { cat /tmp/iscsistart.log; fail "iscsistart -N (network from the iBFT)"; }
iscsistart -b >>/tmp/iscsistart.log 2>&1 || { cat /tmp/iscsistart.log; fail "iscsistart -b (iSCSI login from the iBFT)"; }
i=0
while [ ! -b "$root" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$root" ] || fail "$root did not appear after the iSCSI login"
mkdir -p /newroot
mount -t ext4 "$root" /newroot || fail "cannot mount $root"
echo "streamer-tiny: root filesystem $root mounted over iSCSI"
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /sbin/init
fail "switch_root"
"""

# The root filesystem's /sbin/init (busybox sh): report, record, power off.
ROOT_INIT = r"""#!/bin/sh
# Streamer Debian tiny: print what the deployment personalized, then power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
[ -s /etc/hostname ] && hostname "$(head -n 1 /etc/hostname)"
echo "hostname: $(hostname)"
m=/var/lib/streamer/first-boot
if [ -f $m ]; then
  echo "first-boot: $(cat $m)"
  rm -f $m
else
  echo "first-boot: none"
fi
echo "machine-id: $(cat /etc/machine-id 2>/dev/null)"
echo "network-config: $(grep -E '^[[:space:]]*(iface|address|netmask|gateway)' /etc/network/interfaces | grep -v 'iface lo' | tr -s ' \n' ' ')"
case "$(grep '^root:' /etc/shadow | cut -d: -f2)" in
  '$6$'*) echo "root-password: set (sha512crypt)" ;;
  '*'|'!'*|'') echo "root-password: locked" ;;
  *) echo "root-password: set" ;;
esac
n=$(grep -c '^[a-z]' /root/.ssh/authorized_keys 2>/dev/null)
echo "ssh-key: ${n:-0} authorized key(s)"
echo "ssh-host-keys: $(ls /etc/ssh/ | grep -c '^ssh_host_.*_key$')"
echo "$(cat /proc/uptime | cut -d' ' -f1)s $(hostname)" >> /var/log/streamer-boots
echo "boots: $(wc -l < /var/log/streamer-boots)"
sync
mount -o remount,ro /
echo "streamer-tiny: powering off"
poweroff -f
sleep 10
"""


class BuildError(RuntimeError):
    pass


def run(args, cwd=None, timeout=600):
    r = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode != 0:
        raise BuildError("%s failed (%d): %s" % (" ".join(args), r.returncode,
                                                 r.stdout.decode(errors="replace")[-2000:]))
    return r.stdout.decode(errors="replace")


# -- Debian packages -------------------------------------------------------------
def kernel_package():
    """The kernel package linux-image-amd64 depends on (linux-image-6.1.0-NN-amd64)."""
    out = run(["apt-cache", "depends", "linux-image-amd64"])
    m = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not m:
        raise BuildError("apt-cache depends linux-image-amd64 names no kernel package")
    return m.group(1)


def fetch(cache, pkgs):
    """{package: unpacked directory}: apt-get download (missing .debs only), dpkg-deb -x."""
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    missing = [p for p in pkgs if not glob.glob(os.path.join(debs, p + "_*.deb"))]
    if missing:
        print("build-debian-tiny: apt-get download %s" % " ".join(missing), file=sys.stderr)
        run(["apt-get", "download", "-q"] + missing, cwd=debs, timeout=1800)
    out = {}
    for p in pkgs:
        found = sorted(glob.glob(os.path.join(debs, p + "_*.deb")))
        if not found:
            raise BuildError("apt-get download %s left no .deb" % p)
        deb = found[-1]
        dest = os.path.join(cache, "pkgs", os.path.basename(deb)[:-4])
        if not os.path.isdir(dest):
            tmp = dest + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            run(["dpkg-deb", "-x", deb, tmp])
            os.rename(tmp, dest)
        out[p] = dest
    return out


def find_in(roots, rel_candidates):
    for r in roots:
        for rel in rel_candidates:
            p = os.path.join(r, rel)
            if os.path.lexists(p):
                return p
    return None


def real_file(path, roots):
    """Follow symlinks inside the unpacked package trees (absolute targets are package-relative)."""
    for _ in range(20):
        if not os.path.islink(path):
            return path
        t = os.readlink(path)
        if t.startswith("/"):
            p = find_in(roots, [t.lstrip("/"), "usr/" + t.lstrip("/")])
            if not p:
                raise BuildError("symlink %s -> %s: target not in the packages" % (path, t))
            path = p
        else:
            path = os.path.join(os.path.dirname(path), t)
    raise BuildError("symlink loop at %s" % path)


def needed_libs(binary, roots):
    """The shared libraries `binary` needs, recursively: {soname: path}."""
    libs, todo = {}, [binary]
    while todo:
        out = run(["readelf", "-d", todo.pop()])
        for so in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out):
            if so in libs:
                continue
            p = find_in(roots, [os.path.join(d, so) for d in (ARCH_LIBDIR, "usr/" + ARCH_LIBDIR)])
            if not p:
                raise BuildError("%s needs %s, which none of the packages has" % (binary, so))
            libs[so] = real_file(p, roots)
            todo.append(libs[so])
    return libs


def module_tree(kpkg_dir):
    mods = glob.glob(os.path.join(kpkg_dir, "lib", "modules", "*", "kernel"))
    if not mods:
        raise BuildError("no lib/modules/*/kernel in the kernel package")
    index = {}
    for dirpath, _, files in os.walk(mods[0]):
        for f in files:
            if f.endswith(".ko"):
                index[f[:-3].replace("-", "_")] = os.path.join(dirpath, f)
    return os.path.basename(os.path.dirname(mods[0])), index


def module_order(index, wanted):
    """Modules to insmod, dependencies first (from each .ko's .modinfo `depends=`)."""
    order, seen = [], set()

    def visit(name, chain):
        name = name.replace("-", "_")
        if name in seen:
            return
        if name not in index:
            raise BuildError("module %s (needed by %s) is not in the kernel package" % (name, chain or "-"))
        with open(index[name], "rb") as f:
            data = f.read()
        m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
        for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
            visit(dep, name)
        seen.add(name)
        order.append(name)

    for w in wanted:
        visit(w, None)
    return order


def vmlinuz(kpkg_dir):
    k = glob.glob(os.path.join(kpkg_dir, "boot", "vmlinuz-*"))
    if not k:
        raise BuildError("no boot/vmlinuz-* in the kernel package")
    return k[0]


# -- initramfs -------------------------------------------------------------------
def make_initramfs(pk, kpkg):
    roots = list(pk.values())
    release, index = module_tree(kpkg)
    order = module_order(index, MODULES)
    busybox = os.path.join(pk["busybox-static"], "bin", "busybox")
    iscsistart = find_in([pk["open-iscsi"]], ["sbin/iscsistart", "usr/sbin/iscsistart"])
    if not iscsistart:
        raise BuildError("no iscsistart in open-iscsi")
    libs = needed_libs(iscsistart, roots)
    ld = real_file(find_in([pk["libc6"]], [ARCH_LIBDIR + "/ld-linux-x86-64.so.2",
                                            "usr/" + ARCH_LIBDIR + "/ld-linux-x86-64.so.2"]), roots)
    entries = []   # (name, mode, data, rdev)

    def d(name):
        entries.append((name, stat.S_IFDIR | 0o755, b"", (0, 0)))

    def f(name, data, mode=0o755):
        entries.append((name, stat.S_IFREG | mode, data, (0, 0)))

    def ln(name, target):
        entries.append((name, stat.S_IFLNK | 0o777, target.encode(), (0, 0)))

    for x in ("dev", "proc", "sys", "run", "tmp", "etc", "etc/iscsi", "bin", "sbin", "lib", "lib64",
              "lib/x86_64-linux-gnu", "lib/modules", "var", "var/lock", "newroot"):
        d(x)
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)))
    entries.append(("dev/null", stat.S_IFCHR | 0o666, b"", (1, 3)))
    f("bin/busybox", open(busybox, "rb").read())
    for applet in ("sh", "mount", "umount", "insmod", "sleep", "cat", "sed", "mkdir", "poweroff",
                   "switch_root", "echo", "ls", "ip", "ifconfig"):
        ln("bin/" + applet, "busybox")
    f("sbin/iscsistart", open(iscsistart, "rb").read())
    for so, path in sorted(libs.items()):
        f("lib/x86_64-linux-gnu/" + so, open(path, "rb").read())
    f("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", open(ld, "rb").read())
    ln("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    for m in order:
        f("lib/modules/%s.ko" % m, open(index[m], "rb").read(), 0o644)
    f("etc/modules.order", ("\n".join(order) + "\n").encode(), 0o644)
    f("etc/iscsi/initiatorname.iscsi", b"", 0o644)
    f("init", INITRAMFS_INIT.encode())
    buf = io.BytesIO()
    for ino, (name, mode, data, rdev) in enumerate(entries, 1):
        mkbootdisk._cpio_entry(buf, ino, name, mode, data, rdev, 2 if stat.S_ISDIR(mode) else 1)
    mkbootdisk._cpio_entry(buf, 0, "TRAILER!!!", 0)
    return gzip.compress(buf.getvalue(), 6, mtime=0), release, order


# -- root filesystem -------------------------------------------------------------
def root_tree(root, pk, release, hostname):
    """The ext4 root's files; returns [(path, uid, gid, mode)] to fix with debugfs."""
    fix = []

    def w(rel, text, mode=0o644, uid=0, gid=0):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w" if isinstance(text, str) else "wb") as fh:
            fh.write(text)
        os.chmod(p, mode)
        fix.append(("/" + rel, uid, gid, stat.S_IFREG | mode))

    def d(rel, mode=0o755):
        os.makedirs(os.path.join(root, rel), exist_ok=True)
        os.chmod(os.path.join(root, rel), mode)
        fix.append(("/" + rel, 0, 0, stat.S_IFDIR | mode))

    for x in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "usr/local/sbin",
              "etc", "etc/network", "etc/network/interfaces.d", "etc/ssh", "etc/systemd",
              "etc/systemd/system", "dev", "proc", "sys", "run", "var", "var/lib", "var/lib/dhcp",
              "var/log", "home", "mnt", "boot"):
        d(x)
    d("root", 0o700)
    d("root/.ssh", 0o700)
    d("tmp", 0o1777)
    bb = os.path.join(pk["busybox-static"], "bin", "busybox")
    shutil.copyfile(bb, os.path.join(root, "bin", "busybox"))
    os.chmod(os.path.join(root, "bin", "busybox"), 0o755)
    fix.append(("/bin/busybox", 0, 0, stat.S_IFREG | 0o755))
    for applet in run([bb, "--list-full"]).split():
        if applet in ("bin/busybox", "sbin/init", "linuxrc"):
            continue
        p = os.path.join(root, applet)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if not os.path.lexists(p):
            os.symlink(os.path.relpath(os.path.join(root, "bin", "busybox"), os.path.dirname(p)), p)
    w("sbin/init", ROOT_INIT, 0o755)
    w("etc/hostname", hostname + "\n")
    w("etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tlocalhost ip6-localhost ip6-loopback\n"
      "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n" % hostname)
    w("etc/network/interfaces", "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
      "auto eth0\niface eth0 inet dhcp\n")
    w("etc/resolv.conf", "nameserver 10.0.2.3\n")
    w("etc/passwd", "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    w("etc/group", "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\n")
    w("etc/shadow", "root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\nnobody:*:20000:0:99999:7:::\n",
      0o640, 0, 42)
    w("etc/fstab", "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n"
      "LABEL=streamer-root\t/\text4\terrors=remount-ro\t0\t1\n")
    w("etc/os-release", 'PRETTY_NAME="Streamer Debian tiny (busybox, Linux %s)"\nNAME="Streamer Debian tiny"\n'
      'VERSION_ID="12"\nID=debian\nHOME_URL="https://github.com/streamer"\n' % release)
    w("etc/debian_version", "12.0\n")
    w("etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    w("var/lib/dhcp/dhclient.eth0.leases",
      "lease {\n  interface \"eth0\";\n  fixed-address 10.0.2.15;\n  option subnet-mask 255.255.255.0;\n"
      "  option routers 10.0.2.2;\n  renew 0 2026/01/01 00:00:00;\n}\n")
    w("root/.ssh/authorized_keys", "", 0o600)
    w("var/log/streamer-boots", "")
    keygen = shutil.which("ssh-keygen")
    for kt in ("ed25519", "ecdsa", "rsa"):
        key = os.path.join(root, "etc", "ssh", "ssh_host_%s_key" % kt)
        if keygen:
            run([keygen, "-q", "-t", kt, "-N", "", "-C", "root@" + hostname, "-f", key])
        else:
            with open(key, "w") as fh:
                fh.write("placeholder host key %s\n" % secrets.token_hex(16))
            with open(key + ".pub", "w") as fh:
                fh.write("placeholder public key\n")
        os.chmod(key, 0o600)
        os.chmod(key + ".pub", 0o644)
        fix.append(("/etc/ssh/ssh_host_%s_key" % kt, 0, 0, stat.S_IFREG | 0o600))
        fix.append(("/etc/ssh/ssh_host_%s_key.pub" % kt, 0, 0, stat.S_IFREG | 0o644))
    return fix


def make_root_fs(part, root, fix):
    size = P2_MIB << 20
    with open(part, "wb") as fh:
        fh.truncate(size)
    run([mkbootdisk.tool("mkfs.ext4"), "-q", "-F", "-L", "streamer-root", "-E", "root_owner=0:0",
         "-O", "^metadata_csum_seed", "-d", root, part])
    # mkfs -d copies the owners of the tree: whoever built it. Everything belongs to root,
    # /etc/shadow to group shadow (42).
    cmds = []
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            rel = "/" + os.path.relpath(os.path.join(dirpath, n), root)
            cmds.append("sif %s uid 0" % rel)
            cmds.append("sif %s gid 0" % rel)
    for path, uid, gid, mode in fix:
        cmds.append("sif %s uid %d" % (path, uid))
        cmds.append("sif %s gid %d" % (path, gid))
        cmds.append("sif %s mode 0%o" % (path, mode))
    script = part + ".debugfs"
    with open(script, "w") as fh:
        fh.write("\n".join(cmds) + "\n")
    run([mkbootdisk.tool("debugfs"), "-w", "-f", script, part])
    os.unlink(script)
    run([mkbootdisk.tool("e2fsck"), "-fn", part])


def make_boot_fs(part, kernel, initrd, work):
    with open(part, "wb") as fh:
        fh.truncate(P1_MIB << 20)
    run([mkbootdisk.tool("mkfs.vfat"), "-F", "16", "-n", "TINYBOOT", "-h", str(P1_START), part])
    run([mkbootdisk.tool("syslinux"), "--install", part])
    files = {"vmlinuz": open(kernel, "rb").read(), "initrd.gz": initrd, "syslinux.cfg": SYSLINUX_CFG.encode()}
    for name, data in files.items():
        p = os.path.join(work, name)
        with open(p, "wb") as fh:
            fh.write(data)
        run([mkbootdisk.tool("mcopy"), "-o", "-i", part, p, "::/" + name])


def build(out, cache=DEFAULT_CACHE, hostname="debian-tiny"):
    for t in ("apt-get", "dpkg-deb", "readelf", "mkfs.ext4", "debugfs", "e2fsck", "mkfs.vfat", "syslinux",
              "mcopy"):
        if not (shutil.which(t) or os.path.exists("/usr/sbin/" + t) or os.path.exists("/sbin/" + t)):
            raise BuildError("missing tool %s (Debian packages: apt, dpkg, binutils, e2fsprogs, dosfstools, "
                             "syslinux, mtools)" % t)
    kp = kernel_package()
    pk = fetch(cache, PACKAGES + [kp])
    os.makedirs(cache, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tiny-", dir=cache)
    try:
        initrd, release, order = make_initramfs(pk, pk[kp])
        p1 = os.path.join(work, "p1.img")
        make_boot_fs(p1, vmlinuz(pk[kp]), initrd, work)
        root = os.path.join(work, "root")
        os.makedirs(root)
        fix = root_tree(root, pk, release, hostname)
        p2 = os.path.join(work, "p2.img")
        make_root_fs(p2, root, fix)
        disk = os.path.join(work, "disk.img")
        mkbootdisk.write_mbr_disk(disk, DISK_MIB << 20, [(P1_START, p1, 0x0E, True), (P2_START, p2, 0x83, False)])
        tmp = out + ".tmp"
        shutil.move(disk, tmp)
        os.rename(tmp, out)
        print("build-debian-tiny: %s: kernel %s, %d modules, initramfs %.1f MiB" %
              (out, release, len(order), len(initrd) / 1048576.0), file=sys.stderr)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", metavar="OUT.img")
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="where .debs and unpacked packages are kept")
    ap.add_argument("--hostname", default="debian-tiny", help="the image's own host name before deployment")
    a = ap.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", a.hostname):
        print("build-debian-tiny: --hostname: letters, digits and '-' (at most 63)", file=sys.stderr)
        return 2
    try:
        print(build(os.path.abspath(a.out), a.cache, a.hostname))
    except (BuildError, mkbootdisk.BootDiskError, subprocess.TimeoutExpired, OSError) as e:
        print("build-debian-tiny: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
