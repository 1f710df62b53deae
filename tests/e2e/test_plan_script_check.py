"""test_plan_script_check.py — `streamer plan-script check` (offline lint, no
server) over every real HPE plan script of the research corpus
($STREAMER_RESEARCH/planscripts/**/*.txt) and over small scripts with known
faults.

The corpus must check clean — zero parse errors, zero unknown commands —
with one exception that is the script's purpose: the Foundation bundle's
"fail OS deployment" script ends with the line
`Intentionally_Fail_OS_Deployment`, an unknown command written so that the
deployment fails (hpe-artifacts.md §3). The test requires exactly that one
error, at that line, and nothing else.
"""
import os
import re
import subprocess
import tempfile

import harness

PLANSCRIPTS = os.path.join(harness.RESEARCH, "planscripts")
INTENDED = ("hpe-generic/HPE_-_Foundation_1.0_-_fail_OS_deployment-2017-03-24.txt", 14,
            'unknown command "Intentionally_Fail_OS_Deployment"')
DIAG = re.compile(r"^(.*):(\d+): (error|warning|note): (.*)$")


def corpus_files():
    files = []
    for root, _dirs, names in os.walk(PLANSCRIPTS):
        for n in names:
            if n.endswith(".txt"):
                files.append(os.path.relpath(os.path.join(root, n), PLANSCRIPTS))
    return sorted(files)


def check(args, cwd=None, stdin=None):
    p = subprocess.run([harness.STREAMER, "plan-script", "check"] + list(args), cwd=cwd,
                       input=stdin, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "surrogateescape"), \
        p.stderr.decode("utf-8", "surrogateescape")


def test_corpus_checks_clean():
    files = corpus_files()
    assert len(files) >= 500, "the research corpus is missing: %s" % PLANSCRIPTS
    errors, warnings, notes, summaries = [], [], [], 0
    for i in range(0, len(files), 200):  # the CLI takes up to 256 words
        batch = files[i:i + 200]
        rc, out, err = check(batch, cwd=PLANSCRIPTS)
        assert rc in (0, 1), (rc, err)
        for line in out.splitlines():
            m = DIAG.match(line)
            assert m, "not a FILE:LINE: diagnostic: %r" % line
            f, ln, sev, msg = m.group(1), int(m.group(2)), m.group(3), m.group(4)
            assert f in batch, line
            {"error": errors, "warning": warnings, "note": notes}[sev].append((f, ln, msg))
        assert re.match(r"^%d files checked: \d+ errors? in \d+ files?, " % len(batch), err), err
        summaries += 1
        assert rc == (1 if any(e[0] in batch for e in errors) else 0), (rc, errors)
    assert summaries == (len(files) + 199) // 200
    assert errors == [INTENDED], "corpus errors:\n" + "\n".join(map(str, errors))
    # what the warnings and notes are about (guestfish reads "chmod 755" as decimal;
    # the Oracle RAC scripts run guest programs; one command word is an attribute)
    assert all(m.startswith("chmod ") for _f, _l, m in warnings), warnings
    assert all("command" in m for _f, _l, m in notes), notes
    print("corpus: %d files, 1 intended error, %d warnings, %d notes"
          % (len(files), len(warnings), len(notes)))


def test_check_faults_and_exit_status():
    with tempfile.TemporaryDirectory() as d:
        good = os.path.join(d, "good.txt")
        bad = os.path.join(d, "bad.txt")
        with open(good, "w") as f:
            f.write("# ok\nmount /dev/sda1 /\nupload -<<END /etc/hostname\n@HostName@\nEND\n"
                    "-statvfs /\nlist-filesystems | cat > ./list-fs\n<!cat ./x\numount /\n")
        with open(bad, "w") as f:
            f.write("echo \"unterminated\nfrobnicate /x\nmount /dev/sda1\n"
                    "upload -<<EOF /a\nno marker\n")
        rc, out, err = check([good])
        assert rc == 0 and out == "", (rc, out, err)
        assert err.startswith("1 file checked: 0 errors in 0 files"), err
        rc, out, err = check([good, bad])
        assert rc == 1, (rc, out, err)
        assert out.splitlines() == [
            bad + ":1: error: unterminated double quote",
            bad + ':2: error: unknown command "frobnicate"',
            bad + ":3: error: mount: incorrect number of arguments (1); usage: "
                  "mount mountable mountpoint",
            bad + ":4: error: end of input reached without finding 'EOF'",
        ], out
        assert "4 errors in 1 file" in err, err
        # standard input, and --attr values substituted before the check
        rc, out, err = check(["--attr", "Cmd=frobnicate", "-"], stdin=b"@Cmd@ /x\n")
        assert rc == 1 and out == '<stdin>:1: error: unknown command "frobnicate"\n', (rc, out)
        rc, out, err = check(["--attr", "Cmd=mkdir-p", "-"], stdin=b"@Cmd@ /x\n")
        assert rc == 0 and out == "", (rc, out)
        # usage errors: exit 2
        rc, out, err = check([])
        assert rc == 2, (rc, err)
        rc, out, err = check(["--attr", "novalue", good])
        assert rc == 2 and "NAME=VALUE" in err, (rc, err)
        rc, out, err = check([b"--attr", b"Cmd=\xff", b"-"], stdin=b"@Cmd@ /x\n")
        assert rc == 2 and "must be UTF-8 text" in err, (rc, err)
        rc, out, err = check([os.path.join(d, "missing.txt")])
        assert rc == 2, (rc, err)
