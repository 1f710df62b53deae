#!/usr/bin/python3
"""run.py — discover tests/e2e/test_*.py and run every function named test_*.

Each test function takes no arguments (it starts its own harness.Server) or
one argument `srv` (a fresh, started server with the administrator logged in).
Exit status 1 if any test fails. Usage: run.py [substring-filter ...]
"""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402


def main():
    wanted = sys.argv[1:]
    failures, count = [], 0
    t0 = time.time()
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(HERE, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = "%s.%s" % (fn[:-3], name)
            if wanted and not any(w in full for w in wanted):
                continue
            func = getattr(mod, name)
            count += 1
            t = time.time()
            try:
                if func.__code__.co_argcount == 1:
                    with harness.Server() as srv:
                        srv.login()
                        func(srv)
                else:
                    func()
                print("PASS %s (%.1fs)" % (full, time.time() - t), flush=True)
            except Exception:
                failures.append(full)
                print("FAIL %s\n%s" % (full, traceback.format_exc()), flush=True)
    print("%d e2e tests, %d failed, %.1fs" % (count, len(failures), time.time() - t0))
    if count == 0:
        print("no e2e tests found")
        return 1
    for f in failures:
        print("  failed: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
