#!/usr/bin/env python3
"""layers.py [--floors] OBJDIR [SKIP.o ...]: the library's link-level
dependency graph, its circles, and its files' lengths.

A file depends on another when its object file refers to a symbol that the
other object alone defines (calls and data, inline header code included, as
the compiler emitted it). Prints each file's dependencies (LAYERS_VERBOSE=1),
then every circle (strongly connected set of two files or more). Callbacks
registered from above are not edges: they are pointers, not symbols.

Exits 1 when there is a circle or when a source file (shim/*.c, next to this
script) is longer than MAX_LINES lines, so that `make unit` keeps both from
coming back.

--floors: also print the files by floor, from the top down: a file's floor
is one above the highest floor of what it uses (a file that uses no other
is on floor 1), so every file uses only files on floors below its own.
docs/DESIGN.md's layer picture is this output.
"""
import argparse
import os
import subprocess
import sys

MAX_LINES = 800


def symbols(path):
    out = subprocess.run(["nm", "-P", path], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        name, kind = f[0], f[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRVWCG":
            defined.add(name)
    return defined, undefined


def circles(graph):
    """Tarjan's strongly connected components of two files or more."""
    index, low, stack, on, sccs = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sccs


def show(graph, comp, label):
    print("%s: %s" % (label, " ".join(comp)))
    cs = set(comp)
    for f in comp:
        for g, syms in sorted(graph[f].items()):
            if g in cs:
                print("  %s -> %s: %s" % (f, g, ", ".join(sorted(syms)[:6])))


def floors(graph):
    """Each file's floor: 1 + the highest floor of what it uses (no circle)."""
    floor = {}

    def of(f):
        if f not in floor:
            floor[f] = 0  # a circle never reaches here: checked first
            floor[f] = 1 + max((of(g) for g in graph[f]), default=0)
        return floor[f]

    for f in graph:
        of(f)
    return floor


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("objdir", nargs="?", default="build/obj")
    ap.add_argument("skip", nargs="*", help="object files to leave out")
    ap.add_argument("--floors", action="store_true", help="print the files by floor")
    ap.add_argument("--src", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "shim"),
                    help="the sources whose length is checked (default: shim/)")
    args = ap.parse_args()
    skip = set(args.skip)
    objs = sorted(o for o in os.listdir(args.objdir)
                  if o.endswith(".o") and o not in ("wrapper.o", "noop.o") and o not in skip)
    owner, needs = {}, {}
    for o in objs:
        d, u = symbols(os.path.join(args.objdir, o))
        name = o[:-2] + ".c"
        needs[name] = u
        for s in d:
            owner.setdefault(s, set()).add(name)
    graph = {}
    for f, u in needs.items():
        graph[f] = {}
        for s in u:
            own = owner.get(s)
            if own and len(own) == 1:
                (g,) = own
                if g != f:
                    graph[f].setdefault(g, []).append(s)
    if os.environ.get("LAYERS_VERBOSE"):
        for f in sorted(graph):
            print(f + " -> " + ", ".join(sorted(graph[f])))
    bad = circles(graph)
    for comp in bad:
        show(graph, comp, "circle")
    long_files = []
    for name in sorted(os.listdir(args.src)):
        if not name.endswith(".c"):
            continue
        with open(os.path.join(args.src, name), "rb") as fh:
            n = sum(1 for _ in fh)
        if n > MAX_LINES:
            long_files.append(name)
            print("too long: %s has %d lines (at most %d)" % (name, n, MAX_LINES))
    if bad or long_files:
        return 1
    if args.floors:
        floor = floors(graph)
        for k in range(max(floor.values(), default=0), 0, -1):
            print("floor %2d: %s" % (k, ", ".join(sorted(f for f in floor if floor[f] == k))))
    print("layers: %d files, no circle, no file over %d lines" % (len(graph), MAX_LINES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
