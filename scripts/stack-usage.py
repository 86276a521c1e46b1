#!/usr/bin/env python3
"""stack-usage.py - worst stack use of each exported function of the shim.

    scripts/stack-usage.py OBJDIR LIBRARY [LIMIT]

OBJDIR holds the .ci files of a build made with
CFLAGS="-O2 -g -fcallgraph-info=su" (gcc >= 10). For every function the
library exports (an interposer or hbshim_*), prints the largest sum of the
shim's own frames along any call chain from it, worst first, with the chain
(LIBRARY's dynamic symbols, from nm -D, say which are exported).
Calls into libc count as 0 (their frames are libc's, the same with or without
the shim); indirect calls are resolved to the shim's callbacks passed to
hb_fd_foreach, hb_frame_xfer_* and the wheel, else to libc. Recursion is cut
at the first repeat. Exit status 1 when an exported function exceeds LIMIT
bytes (default 8192).
"""
import glob, os, re, subprocess, sys

objdir, lib = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 8192
dynsyms = set(l.split()[-1].split("@")[0] for l in subprocess.run(
    ["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout.splitlines())
size, edges, exported = {}, {}, set()
node_re = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
edge_re = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
for f in glob.glob(os.path.join(objdir, "*.ci")):
    for line in open(f):
        m = node_re.match(line)
        if m:
            t, label = m.groups()
            b = re.search(r'\\n(\d+) bytes', label)
            if b:
                size[t] = int(b.group(1))
                if t in dynsyms:
                    exported.add(t)
            continue
        m = edge_re.match(line)
        if m:
            edges.setdefault(m.group(1), set()).add(m.group(2))

# Callbacks reached through function pointers inside the shim.
def named(pat):
    return {t for t in size if re.search(pat, t)}
callbacks = {
    "hb_fd_foreach": named(r":(mark_parent|mark|drop_linger|exit_visit|give_back|export1|"
                           r"spawn_visit|find_cookie|clear_link|relink|sweep_one)$"),
    "hb_frame_xfer_in": named(r":(sf_xfer|sp_xfer)$"),
    "hb_frame_xfer_out": named(r":(sf_xfer|sp_xfer)$"),
}
memo = {}

def worst(t, stack):
    if t in stack:
        return 0, []
    if t in memo:
        return memo[t]
    best, chain = 0, []
    for u in edges.get(t, ()):
        targets = callbacks.get(t, ()) if u == "__indirect_call" else (u,)
        for v in targets:
            s, c = worst(v, stack | {t})
            if s > best:
                best, chain = s, c
    r = (size.get(t, 0) + best, [t] + chain)
    memo[t] = r
    return r

rows = sorted((worst(t, frozenset()) + (t,) for t in exported), key=lambda r: -r[0])
bad = 0
for total, chain, t in rows:
    mark = " OVER" if total > limit else ""
    bad |= total > limit
    print(f"{total:7d} {t}{mark}: " + " > ".join(f"{c.split(':')[-1]}({size.get(c, 0)})" for c in chain))
sys.exit(1 if bad else 0)
