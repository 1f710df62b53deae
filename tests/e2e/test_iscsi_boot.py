"""test_iscsi_boot.py — a machine boots from its OS volume over iSCSI through iPXE.

qemu-system-x86_64 (TCG; KVM is not usable on these machines, machine.md §1) runs
its built-in iPXE ROM (Debian ipxe-qemu), which fetches a script from slirp's
TFTP and runs `sanboot iscsi:10.0.2.2::PORT::<target IQN>` (10.0.2.2 is the
host's loopback seen from slirp; the empty LUN field means LUN 0, where Streamer
serves the volume). The disk is tests/iscsi/mkbootdisk.py's SYSLINUX + Debian
kernel + busybox initramfs, uploaded as a golden image and cloned into an OS
volume whose ACL holds the iPXE initiator IQN. Its init prints
"STREAMER-BOOT-OK <token>" on the serial console, with a token unique to the run
baked into the disk, then powers off.

Cases: no CHAP; one-way CHAP (iPXE `set username` / `set password`); an
initiator that is not in the volume's list is refused (iPXE says "Could not open
SAN device" and the marker never appears).

Every qemu run is bounded (iscsi_env.qemu_ipxe_boot kills it at the first
decisive line or at the timeout). About 20 s per boot, 9 s for the refusal.
STREAMER_ISCSI_PEER=tgtd runs the same against tgtd (LUN 1 there).
"""
import os
import secrets
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "iscsi"))
import iscsi_env  # noqa: E402
import mkbootdisk  # noqa: E402

CLIENT = "iqn.2024-11.org.streamer.test:boot-client-%s"
BOOT_TIMEOUT = 180      # TCG boot ~20 s alone; generous for a loaded 2-CPU machine
REFUSE_TIMEOUT = 60     # the refusal shows after ~9 s


def boot(srv, chap=False, initiator=None, expect_boot=True):
    tmp = tempfile.mkdtemp(prefix="streamer-boot-")
    tgt = iscsi_env.target(srv)
    try:
        token = "t" + secrets.token_hex(6)
        disk = mkbootdisk.build(token, os.path.join(tmp, "boot.img"))
        client = CLIENT % token
        ex = tgt.create("boot-" + token, "64M", [client], image=disk, chap=chap)
        if not iscsi_env.PEER:
            assert ex.lun == 0, ex
        script = iscsi_env.ipxe_script(iscsi_env.root_path(ex), initiator or client, ex.chap)
        patterns = {"booted": r"STREAMER-BOOT-OK %s" % token, "failed": r"STREAMER-IPXE-FAILED",
                    "wrong disk": r"STREAMER-BOOT-OK (?!%s)" % token}
        r = iscsi_env.qemu_ipxe_boot(script, patterns, BOOT_TIMEOUT if expect_boot else REFUSE_TIMEOUT)
        tail = r.output[-3000:]
        if expect_boot:
            assert r.matched == "booted", "%r\n%s" % (r, tail)
            # the boot loader and the kernel came from the volume, through INT 13h over iSCSI
            assert "Registered SAN device 0x80" in r.output, tail
            assert "STREAMER-SYSLINUX %s" % token in r.output, tail
        else:
            assert r.matched == "failed", "%r\n%s" % (r, tail)
            assert "Could not open SAN device" in r.output, tail
            assert "Registered SAN device" not in r.output, tail
            assert "STREAMER-SYSLINUX" not in r.output and "STREAMER-BOOT-OK" not in r.output, tail
        return r
    finally:
        tgt.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_iscsi_boot_ipxe(srv):
    boot(srv)


def test_iscsi_boot_ipxe_chap(srv):
    boot(srv, chap=True)


def test_iscsi_boot_foreign_initiator_refused(srv):
    boot(srv, initiator="iqn.2024-11.org.streamer.test:intruder", expect_boot=False)
