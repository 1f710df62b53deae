"""test_boot_developer.py — HPE's Developer bundle deployed and booted in a UEFI VM.

The bundle's 100 MiB UEFI test golden image (a FAT ESP whose GRUB 0.97 EFI
loader prints /EFI/BOOT/message.txt), its plan scripts and build plans are
imported as HPE publishes them, with its example UEFI deployment plan
("User - Developer 1.0 - Deployment Test (UEFI)"). Then, as a user would:
`streamer hardware add` registers the VM's MAC, `streamer deploy` deploys the
plan with the bundle's example attribute values (one carrying a token unique to
the run), and the VM boots:

  OVMF (UEFI, Debian ovmf) → its NIC's iPXE EFI ROM (Debian ipxe-qemu) → DHCP and
  TFTP from qemu's slirp, which serves `chain http://10.0.2.2:PORT/boot/ipxe` →
  streamerd's plain-HTTP --boot-listen answers the chain script, then the sanboot
  script for the VM's MAC (initiator name and CHAP of the hardware) → iPXE logs in
  to the OS volume's target over the profile's two boot connections (streamerd
  listens on two portals, 127.0.0.1 and 127.0.0.2, which slirp's gateway reaches:
  a multipath sanboot) → OVMF boots \\EFI\\BOOT\\BOOTX64.EFI from the iSCSI disk →
  GRUB prints the personalized message.txt on the serial console.

OVMF's console is on the serial port (-nographic), so the message is read there;
no BIOS fallback is needed. Checked: the token and "has been personalized!" on
the console (the golden image says "generalized"), the boot log lines (chain,
then sanboot with two paths, never the CHAP secret), the profile's boot
connections, the target's sessions while GRUB runs (the hardware's initiator,
on our portals), and after `streamer profile delete` the same MAC gets the exit
script. Every wait is bounded; about 40 s of TCG boot (GRUB's own menu timeout
is 10 s of it).
"""
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import harness
import test_cli_deploy as tcd

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
MAC = "52:54:00:5e:00:17"
BOOT_TIMEOUT = 180  # ~25 s alone under TCG; generous for a loaded 2-CPU machine


def qemu_uefi_boot(tftp_script, patterns, timeout, while_running=None):
    """Boot qemu (TCG, q35, OVMF) from its e1000's iPXE EFI ROM, which runs
    `tftp_script` from slirp's TFTP. Stops at the first pattern matched in the
    console text (ANSI sequences removed) or at `timeout`, then calls
    while_running(key) while the VM still runs; qemu is always killed.
    Returns (key of the pattern or None, console text)."""
    tmp = tempfile.mkdtemp(prefix="streamer-uefi-")
    proc = None
    out = bytearray()
    try:
        with open(os.path.join(tmp, "boot.ipxe"), "w") as f:
            f.write(tftp_script)
        shutil.copy(OVMF_VARS, os.path.join(tmp, "vars.fd"))
        args = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "512",
                "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-vga", "none",
                "-monitor", "none",
                "-drive", "if=pflash,format=raw,readonly=on,file=" + OVMF_CODE,
                "-drive", "if=pflash,format=raw,file=" + os.path.join(tmp, "vars.fd"),
                "-netdev", "user,id=n0,tftp=%s,bootfile=boot.ipxe" % tmp,
                "-device", "e1000,netdev=n0,bootindex=1,mac=" + MAC]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        done = threading.Event()

        def text():
            return re.sub(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1bc", "", bytes(out).decode("utf-8", "replace"))

        def reader():
            while True:
                b = proc.stdout.read1(65536)
                if not b:
                    break
                out.extend(b)
                if any(re.search(p, text()) for p in patterns.values()):
                    done.set()
            done.set()

        threading.Thread(target=reader, daemon=True).start()
        done.wait(timeout)
        t = text()
        key = next((k for k, p in patterns.items() if re.search(p, t)), None)
        if while_running:
            while_running(key)
        return key, t
    finally:
        if proc:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            proc.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def boot_get(port, mac=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", "/boot/ipxe" + ("?mac=" + mac if mac else ""))
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_boot_developer_uefi():
    # two iSCSI portals: the profile gets a Primary and a Secondary boot connection,
    # the script sanboots both (multipath); slirp's gateway reaches both addresses
    bport, iport2 = harness.free_port(), harness.free_port()
    with harness.Server(extra_args=["--boot-listen", "127.0.0.1:%d" % bport,
                                    "--boot-clients", "127.0.0.0/8",
                                    "--iscsi-listen", "127.0.0.2:%d" % iport2]) as srv:
        srv.login()
        gi, dp = tcd.import_developer_plan(srv)
        tcd.login(srv)
        p = tcd.cli(srv, "hardware", "add", "node1", "--mac", MAC.upper().replace(":", "-"))
        assert p.returncode == 0, p
        hw = srv.request("GET", "/rest/server-hardware?filter=name='node1'").json()["members"][0]
        assert hw["macAddresses"] == [MAC], hw
        token = "t" + secrets.token_hex(6)
        attrs = ["--attr", "ExampleString1=Hello from Streamer %s" % token,
                 "--attr", "ExampleNumber1=7", "--attr", "ExamplePassword=pa55word",
                 "--attr", "ExampleFQDN=node1.example.com",
                 "--attr", "DeploymentTesting=#Attempt_OS_Deployment"]
        p = tcd.cli(srv, "deploy", "web1", "--hardware", "node1", "--plan", dp["name"], *attrs)
        assert p.returncode == 0, (p, srv.read_log()[-3000:])
        assert "Deployed server profile \"web1\"" in p.stdout and "Primary" in p.stdout, p.stdout
        prof = srv.request("GET", "/rest/server-profiles?filter=name='web1'").json()["members"][0]
        assert prof["state"] == "Normal", prof
        bc = prof["bootConnections"]
        assert [(b["priority"], b["targetIp"], b["targetPort"]) for b in bc] == \
            [("Primary", "127.0.0.1", srv.iscsi_port), ("Secondary", "127.0.0.2", iport2)], bc
        assert all(b["initiatorName"] == hw["initiatorName"] and b["chapName"] == hw["chapName"] for b in bc), bc

        # the answer the VM will get, read first over the boot listener
        st, script = boot_get(bport, MAC.upper())
        tn = bc[0]["targetName"]
        assert st == 200 and "\nsanboot iscsi:127.0.0.1::%d:0:%s iscsi:127.0.0.2::%d:0:%s ||" % (
            srv.iscsi_port, tn, iport2, tn) in script, script
        assert "set initiator-iqn %s\n" % hw["initiatorName"] in script, script
        m = re.search(r"^set password (\S+)$", script, re.M)
        assert m and "set username %s\n" % hw["chapName"] in script, script
        secret = m.group(1)

        tftp = "#!ipxe\nchain http://10.0.2.2:%d/boot/ipxe || echo STREAMER-CHAIN-FAILED\n" % bport
        patterns = {"booted": r"ExampleString1: Hello from Streamer %s\r?\n[\s\S]*ExampleFQDN: node1\.example\.com\r?\n" % token,
                    "failed": r"STREAMER-CHAIN-FAILED|sanboot failed|no OS volume|Could not"}
        sessions = []

        def look(key):  # the target's view while the VM runs GRUB from it
            if key == "booted":
                t = srv.request("GET", "/rest/iscsi/targets/" + tn).json()
                sessions.extend(t["sessions"])

        t0 = time.time()
        k, console = qemu_uefi_boot(tftp, patterns, BOOT_TIMEOUT, look)
        tail = console[-3000:]
        assert k == "booted", "%r after %.0fs\n%s\n%s" % (k, time.time() - t0, tail, srv.read_log()[-2000:])
        assert "Registered SAN device" in console and "GNU GRUB" in console, tail
        assert "UEFI loader message.txt has been personalized!" in console, tail
        assert "ExampleNumber1: 7" in console, tail
        assert sessions and all(x["initiatorName"] == hw["initiatorName"] for x in sessions), sessions
        locals_ = {c["local"] for x in sessions for c in x["connections"]}
        assert locals_ <= {"127.0.0.1:%d" % srv.iscsi_port, "127.0.0.2:%d" % iport2}, sessions

        log = srv.read_log()
        assert "GET /boot/ipxe client=127.0.0.1 -> chain (no mac)" in log, log[-3000:]
        assert re.search(r'mac=%s -> sanboot \(2 paths\) hardware=\\"node1\\" profile=\\"web1\\"' % MAC, log), log[-3000:]
        assert secret not in log

        # deleting the profile: the machine is sent back to its local disk
        p = tcd.cli(srv, "profile", "delete", "web1")
        assert p.returncode == 0, p
        st, script = boot_get(bport, MAC)
        assert st == 200 and script == "#!ipxe\necho no OS volume for %s: booting from local disk\nexit\n" % MAC, script
        assert secret not in script
