#!/usr/bin/env python3
# event_names.py SHIMDIR - every event name the library can emit, one a line:
# the string literals given as hb_event_conn's name, followed through the
# functions that pass a parameter on as the name (i_socket.c: opened(...,
# "connect", ...)). Exit status 1, naming the call, when a name is neither a
# literal nor a parameter: such a name could not be checked.
import re, sys, glob, os
src = sys.argv[1]
files = {f: open(f).read() for f in sorted(glob.glob(os.path.join(src, "*.c")))}

def args_at(text, i):
    """Top-level arguments of the call whose '(' is at text[i]."""
    depth, cur, out, j, s = 0, "", [], i, None
    while j < len(text):
        ch = text[j]
        if s:
            cur += ch
            if ch == "\\":
                cur += text[j + 1]; j += 1
            elif ch == s:
                s = None
        elif ch in "\"'":
            s = ch; cur += ch
        elif ch in "([{":
            depth += 1
            if depth > 1: cur += ch
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                out.append(cur.strip()); return out
            cur += ch
        elif ch == "," and depth == 1:
            out.append(cur.strip()); cur = ""
        else:
            if depth >= 1: cur += ch
        j += 1
    raise SystemExit("unbalanced call")

def names_passed(func, pos, seen):
    """String literals given as argument pos of every call of func."""
    if (func, pos) in seen:
        return set()
    seen.add((func, pos))
    names = set()
    for f, text in files.items():
        for m in re.finditer(r"\b%s\s*\(" % re.escape(func), text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            if re.match(r"[A-Za-z_]", text[line_start]):   # a definition or declaration
                continue
            a = args_at(text, m.end() - 1)[pos]
            if re.fullmatch(r'"[a-z_]+"', a):
                names.add(a.strip('"'))
                continue
            if not re.fullmatch(r"[A-Za-z_]\w*", a):
                raise SystemExit("%s: %s(%s...): event name neither a literal nor a parameter"
                                 % (os.path.basename(f), func, a))
            # A parameter of the enclosing function: follow its callers.
            defs = list(re.finditer(r"^[A-Za-z_][^;{]*?\b(\w+)\s*\(([^)]*)\)\s*\{", text[:m.start()], re.M))
            if not defs:
                raise SystemExit("%s: no function around %s(%s" % (f, func, a))
            d = defs[-1]
            params = [re.findall(r"\w+", p)[-1] for p in d.group(2).split(",")]
            if a not in params:
                raise SystemExit("%s: %s(%s...): %s is not a parameter of %s"
                                 % (os.path.basename(f), func, a, a, d.group(1)))
            names |= names_passed(d.group(1), params.index(a), seen)
    return names

for n in sorted(names_passed("hb_event_conn", 0, set())):
    print(n)
