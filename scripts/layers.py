#!/usr/bin/env python3
"""layers.py OBJDIR: the library's link-level dependency graph and its circles.

A file depends on another when its object file refers to a symbol that the
other object alone defines (calls and data, inline header code included, as
the compiler emitted it). Prints each file's dependencies, then every circle
(strongly connected set of two files or more); exits 1 when there is one.
Callbacks registered from above are not edges: they are pointers, not symbols.
"""
import os
import subprocess
import sys


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


def main():
    objdir = sys.argv[1] if len(sys.argv) > 1 else "build/obj"
    skip = set(sys.argv[2:])
    objs = sorted(o for o in os.listdir(objdir)
                  if o.endswith(".o") and o not in ("wrapper.o", "noop.o") and o not in skip)
    owner, needs = {}, {}
    for o in objs:
        d, u = symbols(os.path.join(objdir, o))
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
    # Tarjan's strongly connected components.
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

    for v in graph:
        if v not in index:
            strong(v)
    verbose = os.environ.get("LAYERS_VERBOSE")
    if verbose:
        for f in sorted(graph):
            print(f + " -> " + ", ".join(sorted(graph[f])))
    for comp in sccs:
        print("circle: " + " ".join(comp))
        cs = set(comp)
        for f in comp:
            for g, syms in sorted(graph[f].items()):
                if g in cs:
                    print("  %s -> %s: %s" % (f, g, ", ".join(sorted(syms)[:6])))
    if sccs:
        return 1
    print("layers: %d files, no circle" % len(graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
