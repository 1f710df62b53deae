#!/usr/bin/python3
"""Write the seed corpus of fuzz_fs_ext (tests/fuzz/corpus/fuzz_fs_ext/): small
ext2/3/4 images made with e2fsprogs (mkfs -d from a little tree: files, a
sparse file, fast and slow symlinks, hard links, subdirectories), encoded as
the target reads them: a size byte, a flags byte (read-write phase on), then
(le32 offset, le16 length, bytes) records for the non-zero 512-byte runs.
Deterministic: fixed UUIDs, hash seeds and times (E2FSPROGS_FAKE_TIME, E2FSCK_TIME,
ctimes pinned with debugfs)."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_fs_ext")
UUID = "5eed0000-0000-4000-8000-000000000001"
ENV = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000", E2FSCK_TIME="1700000000")

# name, image KiB, mkfs options
SEEDS = [
    ("ext2-1k", 256, ["-t", "ext2", "-b", "1024", "-O", "^resize_inode"]),
    ("ext3-1k-journal", 4096, ["-t", "ext3", "-b", "1024", "-J", "size=1"]),
    ("ext4-1k", 512, ["-t", "ext4", "-b", "1024", "-O", "^has_journal,extent,flex_bg,64bit,"
                      "metadata_csum,huge_file,dir_nlink,extra_isize,dir_index,filetype,"
                      "sparse_super,large_file", "-I", "256"]),
    ("ext4-4k", 1024, ["-t", "ext4", "-b", "4096", "-O", "^has_journal,extent,flex_bg,"
                       "metadata_csum,dir_index,filetype", "-I", "256"]),
    ("ext4-inline", 512, ["-t", "ext4", "-b", "1024", "-O", "^has_journal,extent,inline_data,"
                          "metadata_csum,dir_index,filetype,ext_attr", "-I", "256"]),
    ("ext4-htree", 1024, ["-t", "ext4", "-b", "1024", "-O", "^has_journal,extent,dir_index,"
                          "filetype,metadata_csum", "-I", "256", "-N", "256"]),
    ("ext2-128", 256, ["-t", "ext2", "-b", "1024", "-I", "128", "-O", "^resize_inode"]),
]


def tree(root, many):
    os.makedirs(os.path.join(root, "etc", "sysconfig"))
    os.makedirs(os.path.join(root, "d", "e"))
    with open(os.path.join(root, "etc", "hostname"), "w") as f:
        f.write("server42\n")
    with open(os.path.join(root, "small"), "w") as f:
        f.write("tiny")
    with open(os.path.join(root, "d", "data"), "wb") as f:
        f.write(bytes(range(256)) * 40)
    with open(os.path.join(root, "sparse"), "wb") as f:
        f.seek(70000)
        f.write(b"end")
    os.symlink("hostname", os.path.join(root, "etc", "fast"))
    os.symlink("/etc/sysconfig/../" + "x" * 70, os.path.join(root, "slow"))
    os.link(os.path.join(root, "etc", "hostname"), os.path.join(root, "d", "hard"))
    for i in range(many):
        open(os.path.join(root, "d", "e", "entry-%03d" % i), "w").close()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames + [""]:
            os.utime(os.path.join(dirpath, n), (1600000000, 1600000000), follow_symlinks=False)


def encode(image, rw):
    with open(image, "rb") as f:
        data = f.read()
    out = bytearray([len(data) // 65536 - 1, 1 if rw else 0])
    sec = 512
    i = 0
    while i < len(data):
        if not any(data[i:i + sec]):
            i += sec
            continue
        j = i
        while j < len(data) and any(data[j:j + sec]) and j - i < 65536 - sec:
            j += sec
        out += struct.pack("<IH", i, j - i) + data[i:j]
        i = j
    return bytes(out)


def main():
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp()
    try:
        for name, kib, opts in SEEDS:
            src = os.path.join(work, name)
            tree(src, 120 if "htree" in name else 5)
            image = os.path.join(work, name + ".img")
            with open(image, "wb") as f:
                f.truncate(kib * 1024)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-U", UUID, "-E", "hash_seed=" + UUID,
                            "-d", src] + opts + [image], check=True, env=ENV)
            # mkfs -d copies the host's ctimes: pin them (inodes 2 and 11.. are in use)
            out = subprocess.run(["dumpe2fs", "-h", image], check=True, env=ENV, text=True,
                                 capture_output=True).stdout
            field = {k.strip(): v.strip() for k, _, v in
                     (line.partition(":") for line in out.splitlines())}
            used = int(field["Inode count"]) - int(field["Free inodes"])
            cmds = "".join("sif <%d> ctime 20231114221320\n" % i
                           for i in [2] + list(range(11, used + 1)))
            subprocess.run(["debugfs", "-w", "-f", "-", image], input=cmds, text=True,
                           check=True, env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            if "htree" in name:  # index the big directory
                subprocess.run(["e2fsck", "-fyD", image], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            subprocess.run(["e2fsck", "-fn", image], check=True, env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for rw in (0, 1):
                with open(os.path.join(OUT, "seed-%s%s" % (name, "-rw" if rw else "")),
                          "wb") as f:
                    f.write(encode(image, rw))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
