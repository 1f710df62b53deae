"""test_boot_linux.py — a real Linux deployed by Streamer boots its personalized OS volume
over iSCSI; captured, redeployed elsewhere, it boots again (issue 6 item 7).

The golden image is the Debian tiny image (examples/images/build-debian-tiny.sh: a Debian
kernel, an initramfs with iscsistart, a busybox root filesystem on partition 2). The
samples of examples/ are loaded; then, all through the REST API:

 1. server hardware "vm17" with the VM's MAC; server profile "node-17" with the sample
    deployment plan "Streamer - Debian tiny", Hostname=node-17, a static ManagementNIC, a
    root password and an SSH key: the deploy task clones the image and runs the sample
    Debian build plan on the new OS volume;
 2. qemu (TCG) boots from its iPXE ROM with a script, served by slirp's TFTP, that chains
    streamerd's `GET /boot/ipxe?mac=${net0/mac}`; the answer logs in to the profile's
    target (initiator IQN and CHAP of the hardware) and `sanboot`s it; SYSLINUX, the kernel
    and the initramfs come through INT 13h; the initramfs reads the iBFT, logs in again
    with the kernel's initiator (iscsistart) and mounts its root filesystem from the OS
    volume. The root's init prints `hostname: node-17`, the first-boot marker the plan
    wrote, the password and key state, then powers off;
 3. the OS volume is captured with the sample generalize plan ("Streamer - Debian -
    capture", POST /rest/golden-images imageCapture) into a new golden image;
 4. a deployment plan on the captured image, hardware "vm18" (another MAC), profile
    "node-18"; the second VM boots `hostname: node-18`, with the identity the capture
    removed (machine-id empty, no SSH host keys, no first-boot marker left from node-17)
    and node-17's boot still in the image's boot history.

streamerd's iSCSI portal listens on 0.0.0.0 (a free port) with --iscsi-advertise 10.0.2.2,
the host as the slirp guest reaches it. Every qemu run is bounded (iscsi_env.qemu_ipxe_boot
kills it at the first decisive line or at the timeout); a boot takes 20-60 s under TCG.
"""
import os

import harness
import samples
from test_iscsi_boot import iscsi_env  # noqa: F401  (tests/iscsi on sys.path)

BOOT_TIMEOUT = 360
MAC17, MAC18 = "52:54:00:12:34:56", "52:54:00:12:34:57"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKexampleexampleexampleexampleexampleexampl streamer@test"


class BootServer(harness.Server):
    """A streamerd whose iSCSI portal the slirp guest can reach: 0.0.0.0:PORT, advertised
    as 10.0.2.2 (slirp's alias of the host's loopback)."""

    def args(self):
        a = [harness.STREAMERD, "--data-dir", self.data_dir, "--listen", "127.0.0.1:%d" % self.port,
             "--insecure-http", "--iscsi-listen", "0.0.0.0:%d" % self.iscsi_port, "--iscsi-advertise", "10.0.2.2"]
        return a + self.extra_args


def chain_script(port):
    return ("#!ipxe\n"
            "echo STREAMER-CHAIN\n"
            "chain http://10.0.2.2:%d/boot/ipxe?mac=${net0/mac} || goto failed\n"
            ":failed\n"
            "echo STREAMER-IPXE-FAILED\n"
            "shell\n" % port)


def deploy(srv, hw_name, mac, profile, plan_uri, attrs):
    r = srv.request("POST", "/rest/server-hardware", {"name": hw_name, "macAddresses": [mac]})
    assert r.status == 201, r
    hw = r.json()
    r = srv.request("POST", "/rest/server-profiles", {
        "name": profile, "serverHardwareUri": hw["uri"],
        "osDeploymentSettings": {"osDeploymentPlanUri": plan_uri, "osCustomAttributes": attrs}})
    assert r.status == 202, r
    t = srv.wait_task(r.json()["uri"], timeout=300)
    assert t["taskState"] == "Completed", t
    p = srv.request("GET", t["data"]["serverProfileUri"]).json()
    assert p["state"] == "Normal" and p["bootConnections"], p
    assert p["bootConnections"][0]["targetIp"] == "10.0.2.2", p["bootConnections"]
    return hw, p


def boot(srv, mac, hostname):
    r = iscsi_env.qemu_ipxe_boot(chain_script(srv.port), {
        "booted": r"streamer-tiny: powering off",
        "failed": r"STREAMER-IPXE-FAILED|STREAMER-INITRAMFS-FAILED|Kernel panic|no OS volume for"},
        BOOT_TIMEOUT, mac=mac)
    tail = r.output[-4000:]
    assert r.matched == "booted", "%r\n%s" % (r, tail)
    assert "Registered SAN device 0x80" in r.output, tail          # iPXE logged in to the profile's target
    assert "streamer-tiny: root filesystem /dev/sda2 mounted over iSCSI" in r.output, tail
    lines = {}
    for line in r.output.splitlines():
        line = line.strip("\r")
        k, sep, v = line.partition(": ")
        if sep and k in ("hostname", "first-boot", "machine-id", "network-config", "root-password", "ssh-key",
                         "ssh-host-keys", "boots"):
            lines.setdefault(k, v.strip())
    assert lines.get("hostname") == hostname, (lines, tail)
    return lines, r


def test_boot_linux_deploy_capture_redeploy():
    img = samples.tiny_image()
    srv = BootServer()
    try:
        srv.start()
        srv.login()
        gi = iscsi_env.upload_golden(srv, img, samples.TINY_NAME)
        made = samples.create_all(srv)
        dp = made["debian-tiny"]
        assert dp["goldenImageURI"] == gi["uri"], dp

        # 1-2: deploy node-17 and boot it
        hw17, p17 = deploy(srv, "vm17", MAC17, "node-17", dp["uri"], [
            {"name": "Hostname", "value": "node-17"},
            {"name": "ManagementNIC.constraint", "value": "static"},
            {"name": "ManagementNIC.ipaddress", "value": "10.0.2.17"},
            {"name": "ManagementNIC.netmask", "value": "255.255.255.0"},
            {"name": "ManagementNIC.gateway", "value": "10.0.2.2"},
            {"name": "RootPassword", "value": "Node17-root!"},
            {"name": "SSHPublicKey", "value": KEY}])
        out, r = boot(srv, MAC17, "node-17")
        assert out["first-boot"].startswith("hostname=node-17 deployed="), out
        assert out["network-config"].startswith("iface eth0 inet static address 10.0.2.17 netmask 255.255.255.0"), out
        assert out["root-password"] == "set (sha512crypt)" and out["ssh-key"] == "1 authorized key(s)", out
        assert out["ssh-host-keys"] == "3" and len(out["machine-id"]) == 32 and out["boots"] == "1", out
        assert "Node17-root!" not in srv.read_log()

        # 3: capture node-17's volume with the sample generalize plan
        r = srv.request("POST", "/rest/golden-images", {
            "type": "GoldenImage", "name": "node-17 captured", "description": "captured by test_boot_linux",
            "imageCapture": True, "osVolumeURI": p17["osDeploymentSettings"]["osVolumeUri"],
            "buildPlanUri": made["debian-capture"]["uri"]})
        assert r.status == 202, r
        t = srv.wait_task(r.json()["uri"], timeout=300)
        assert t["taskState"] == "Completed", t
        cap = srv.request("GET", t["associatedResource"]["resourceUri"]).json()
        assert cap["name"] == "node-17 captured", cap

        # 4: deploy the captured image as node-18 on another machine, DHCP this time
        doc = dict(samples.load("deployment-plans")["debian-tiny"])
        doc.update({"name": "node-17 captured - deploy", "goldenImageURI": cap["uri"]})
        r = srv.request("POST", "/rest/deployment-plans", doc)
        assert r.status == 201, r
        _, p18 = deploy(srv, "vm18", MAC18, "node-18", r.json()["uri"], [{"name": "Hostname", "value": "node-18"}])
        out18, _ = boot(srv, MAC18, "node-18")
        assert out18["first-boot"].startswith("hostname=node-18 deployed="), out18
        assert out18["network-config"] == "iface eth0 inet dhcp", out18
        assert out18["machine-id"] == "" and out18["ssh-host-keys"] == "0", out18      # generalized
        assert out18["ssh-key"] == "0 authorized key(s)", out18                        # node-17's key removed
        assert out18["root-password"] == "set (sha512crypt)", out18   # the image keeps node-17's hash
        assert out18["boots"] == "2", out18     # node-17's boot is in the history: it came from its volume

        # node-17 still boots its own volume (untouched by the capture), now a second boot
        out, _ = boot(srv, MAC17, "node-17")
        assert out["first-boot"] == "none" and out["boots"] == "2" and len(out["machine-id"]) == 32, out
        samples.stop_checked(srv)
    finally:
        srv.cleanup()
