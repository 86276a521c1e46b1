#!/usr/bin/env bats
# The deployment examples in examples/ are meant to be copied, so what they
# name must exist and what they set must be accepted. No Docker engine and
# no cluster are used: each file is parsed and held against what this tree
# really builds and accepts:
#   - Dockerfile, Dockerfile.alpine: every path COPYed from the build stage is
#     one `make install` produces with the stage's PREFIX and DESTDIR; build
#     and run stages use the same base image (the library must match the
#     program's C library); ENTRYPOINT and CMD are JSON arrays; ENTRYPOINT
#     starts with the copied wrapper and its options are accepted by the
#     wrapper; every HBSHIM_* of ENV is a variable of the config table and
#     its value is accepted by the library;
#   - hbshim.conf.systemd: LD_PRELOAD is where `make install` puts the
#     library, the event and stats files are in the unit's RuntimeDirectory,
#     every HBSHIM_* is known and accepted;
#   - kubernetes.yaml: parses, every volumeMount names a defined volume, the
#     init container copies the library (a path `make install` produces)
#     into an emptyDir the application container mounts at LD_PRELOAD's
#     directory, and the HBSHIM_* settings are known and accepted.

load helpers

setup() {
	hb_setup
	EX="$HB_ROOT/examples"
	# The wrapper with the library under test (see scope.bats).
	WRAP=(timeout --kill-after=2 "$HB_CMD_TIMEOUT" env "${SAN_ENV[@]}"
		${HB_SAN_PRELOAD:+LD_PRELOAD="$HB_SAN_PRELOAD"} HBSHIM_LIBRARY="$HB_LIB" "$HB_WRAP")
}

# The variables of the config table, one a line, from the wrapper's --help.
table_vars() {
	"$HB_WRAP" --help | grep -o 'env HBSHIM_[A-Z_]*' | cut -d' ' -f2 | sort -u
}

# Files `make install PREFIX=$1 DESTDIR=...` installs, as absolute paths
# under PREFIX (one a line) into $T/installed.$2. An empty $1: the
# Makefile's default PREFIX.
install_listing() {
	local prefix=$1 tag=$2
	local -a pre=()
	[ -n "$prefix" ] && pre=(PREFIX="$prefix")
	make -s -C "$HB_ROOT" install "${pre[@]}" DESTDIR="$T/dest.$tag" >"$T/install.$tag.log" 2>&1 ||
		fail "make install ${pre[*]}: $(cat "$T/install.$tag.log")"
	(cd "$T/dest.$tag" && find . -type f -o -type l | sed 's|^\.||' | sort) >"$T/installed.$tag"
	[ -s "$T/installed.$tag" ] || fail "make install installed nothing"
}

# accepted NAME=VALUE...: the library, loaded into a program called
# legacy-server (a python3 link) with exactly these settings, prints no
# config error and is active.
accepted() {
	ln -sf "$PY" "$T/legacy-server"
	run stderr_to "$T/acc.err" shim "$@" "$T/legacy-server" "$APP" loopback
	assert_status 0
	! grep -q 'invalid value' "$T/acc.err" || fail "settings $*: $(cat "$T/acc.err")"
	[ "$(kv "$(line_with LOOPBACK)" active)" = 1 ] || fail "settings $*: inactive: $output"
}

# check_dockerfile FILE: the checks above; prints "PREFIX", then the
# HBSHIM_* settings of ENV as NAME=VALUE lines, then the wrapper options of
# ENTRYPOINT, NUL-separated, into $T/df.*.
check_dockerfile() {
	local df=$1
	table_vars >"$T/vars"
	"$PY" - "$df" "$T" <<'PYEOF' || fail "$df: $(cat "$T/df.err")"
import json, os, re, shlex, sys
path, tmp = sys.argv[1], sys.argv[2]
err = open(os.path.join(tmp, "df.err"), "w")
def bad(msg):
    err.write(msg + "\n")
    err.close()
    sys.exit(1)
# Instructions: comments dropped, continuation lines joined.
instrs, cur = [], ""
for line in open(path):
    s = line.rstrip("\n")
    if not cur and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    cur += s
    kw, _, rest = cur.strip().partition(" ")
    instrs.append((kw.upper(), rest.strip()))
    cur = ""
known = {"FROM", "RUN", "COPY", "ENV", "ENTRYPOINT", "CMD", "WORKDIR", "ARG", "LABEL",
         "EXPOSE", "USER", "VOLUME", "ADD", "HEALTHCHECK", "SHELL", "STOPSIGNAL"}
stages = []  # [name, image, [instructions]]
for kw, rest in instrs:
    if kw not in known:
        bad("unknown instruction %s %s" % (kw, rest))
    if kw == "FROM":
        m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
        if not m:
            bad("bad FROM: " + rest)
        stages.append([m.group(2), m.group(1), []])
    elif not stages:
        bad("%s before FROM" % kw)
    else:
        stages[-1][2].append((kw, rest))
if len(stages) != 2 or not stages[0][0]:
    bad("expected a named build stage and a run stage: %r" % [s[:2] for s in stages])
build, run = stages
if build[1] != run[1]:
    bad("build stage %s and run stage %s differ: the library must be built "
        "against the run image's C library" % (build[1], run[1]))
# The build stage's make install: its PREFIX and DESTDIR.
inst = [r for k, r in build[2] if k == "RUN" and "make install" in r]
if len(inst) != 1:
    bad("no single RUN with make install in the build stage")
words = shlex.split(inst[0][inst[0].index("make install"):].split("&&")[0])
kv = dict(w.split("=", 1) for w in words if "=" in w)
if "PREFIX" not in kv or "DESTDIR" not in kv:
    bad("make install without PREFIX= and DESTDIR=: " + " ".join(words))
prefix, destdir = kv["PREFIX"], kv["DESTDIR"].rstrip("/")
if "musl" in path or "alpine" in build[1]:
    apk = " ".join(r for k, r in build[2] if k == "RUN" and "apk add" in r)
    for p in ("build-base", "linux-headers"):
        if p not in apk.split():
            bad("the Alpine build stage does not apk add " + p)
open(os.path.join(tmp, "df.prefix"), "w").write(prefix + "\n")
# COPY --from=build SRC DST, in the run stage.
copied = {}
for kw, rest in run[2]:
    if kw != "COPY" or not rest.startswith("--from="):
        continue
    w = rest.split()
    frm = w[0][len("--from="):]
    if frm != build[0]:
        bad("COPY --from=%s: no such stage" % frm)
    src, dst = w[1], w[2]
    if not src.startswith(destdir + "/"):
        bad("COPY of %s: not under the build stage's DESTDIR %s" % (src, destdir))
    copied[src[len(destdir):]] = dst + os.path.basename(src) if dst.endswith("/") else dst
if not copied:
    bad("nothing COPYed from the build stage")
open(os.path.join(tmp, "df.copied"), "w").write("".join(k + "\n" for k in copied))
# ENTRYPOINT and CMD: JSON arrays (exec form).
ep = [r for k, r in run[2] if k == "ENTRYPOINT"]
cmd = [r for k, r in run[2] if k == "CMD"]
if len(ep) != 1:
    bad("expected one ENTRYPOINT")
try:
    ep = json.loads(ep[0])
    cmd = json.loads(cmd[0]) if cmd else []
except ValueError as e:
    bad("ENTRYPOINT/CMD is not a JSON array: %s" % e)
if not (isinstance(ep, list) and all(isinstance(x, str) for x in ep) and isinstance(cmd, list)):
    bad("ENTRYPOINT/CMD is not an array of strings")
wrapper = copied.get(prefix + "/bin/hbshim")
if ep[0] != wrapper:
    bad("ENTRYPOINT runs %s, the wrapper was copied to %s" % (ep[0], wrapper))
if "--" not in ep or ep.index("--") == len(ep) - 1:
    bad("ENTRYPOINT has no -- COMMAND")
with open(os.path.join(tmp, "df.opts"), "wb") as f:
    for o in ep[1:ep.index("--")]:
        f.write(o.encode() + b"\0")
# ENV: HBSHIM_* names of the config table.
table = set(open(os.path.join(tmp, "vars")).read().split())
if len(table) < 10:
    bad("could not read the config table from --help")
with open(os.path.join(tmp, "df.env"), "w") as f:
    for kw, rest in run[2]:
        if kw != "ENV":
            continue
        for a in shlex.split(rest):
            name, eq, val = a.partition("=")
            if not eq:
                bad("ENV without =: " + a)
            if name.startswith("HBSHIM_"):
                if name not in table:
                    bad("ENV %s: not a variable of the config table" % name)
                f.write(a + "\n")
print("ok")
PYEOF
	# Every path COPYed from the build stage is one make install produces.
	install_listing "$(cat "$T/df.prefix")" df
	local p
	while read -r p; do
		grep -qxF -- "$p" "$T/installed.df" || fail "$df COPYs $p, which make install does not produce:
$(cat "$T/installed.df")"
	done <"$T/df.copied"
	# The wrapper accepts the ENTRYPOINT's options.
	local -a opts=()
	mapfile -d '' opts <"$T/df.opts"
	[ "${#opts[@]}" -gt 0 ] || fail "$df: ENTRYPOINT passes no option to the wrapper"
	run stderr_to "$T/wrap.err" "${WRAP[@]}" "${opts[@]}" -- true
	assert_status 0
	[ ! -s "$T/wrap.err" ] || fail "$df: the wrapper says: $(cat "$T/wrap.err")"
	# The library accepts the ENV settings and the ENTRYPOINT's options
	# (the wrapper sets the variables and execs the program).
	local -a envs=()
	mapfile -t envs <"$T/df.env"
	ln -sf "$PY" "$T/legacy-server"
	run stderr_to "$T/acc.err" env "${envs[@]}" "${WRAP[@]}" "${opts[@]}" -- \
		"$T/legacy-server" "$APP" loopback
	assert_status 0
	! grep -q 'invalid value' "$T/acc.err" || fail "$df: $(cat "$T/acc.err")"
	[ "$(kv "$(line_with LOOPBACK)" active)" = 1 ] || fail "$df: inactive: $output"
}

@test "examples/Dockerfile: COPYed paths are make install's, ENTRYPOINT runs the wrapper with accepted options, ENV accepted" {
	need_cmd make
	check_dockerfile "$EX/Dockerfile"
}

@test "examples/Dockerfile.alpine: Alpine build stage with build-base and linux-headers, COPYed paths are make install's, ENTRYPOINT and ENV accepted" {
	need_cmd make
	check_dockerfile "$EX/Dockerfile.alpine"
	grep -q '^FROM alpine:' "$EX/Dockerfile.alpine" || fail "not Alpine-based"
}

@test "examples/hbshim.conf.systemd: LD_PRELOAD is make install's library, files in the RuntimeDirectory, settings accepted" {
	need_cmd make
	table_vars >"$T/vars"
	"$PY" - "$EX/hbshim.conf.systemd" "$T" <<'PYEOF' >"$T/sd.out" 2>&1 || fail "$(cat "$T/sd.out")"
import os, shlex, sys
path, tmp = sys.argv[1], sys.argv[2]
table = set(open(os.path.join(tmp, "vars")).read().split())
env, rundir, section = {}, None, None
for line in open(path):
    s = line.strip()
    if not s or s.startswith("#"):
        continue
    if s.startswith("["):
        section = s
        continue
    key, _, val = s.partition("=")
    if section != "[Service]":
        sys.exit("%s outside [Service]" % key)
    if key == "Environment":
        for a in shlex.split(val):
            n, eq, v = a.partition("=")
            if not eq:
                sys.exit("Environment without =: " + a)
            env[n] = v
    elif key == "RuntimeDirectory":
        rundir = "/run/" + val
if "LD_PRELOAD" not in env:
    sys.exit("no LD_PRELOAD")
for n in env:
    if n.startswith("HBSHIM_") and n not in table:
        sys.exit("%s: not a variable of the config table" % n)
for n in ("HBSHIM_EVENTS", "HBSHIM_STATS", "HBSHIM_LOG_FILE"):
    if n in env and env[n].startswith("/run/") and os.path.dirname(env[n]) != rundir:
        sys.exit("%s=%s is not in the RuntimeDirectory %s" % (n, env[n], rundir))
with open(os.path.join(tmp, "sd.preload"), "w") as f:
    f.write(env["LD_PRELOAD"] + "\n")
with open(os.path.join(tmp, "sd.env"), "w") as f:
    for n, v in env.items():
        if n.startswith("HBSHIM_"):
            # The unit's runtime directory does not exist here.
            if v.startswith("/run/"):
                v = os.path.join(tmp, os.path.basename(v))
            f.write("%s=%s\n" % (n, v))
PYEOF
	# The drop-in goes with a plain `make install` (default PREFIX).
	local lib
	lib=$(cat "$T/sd.preload")
	install_listing "" sd
	grep -qxF -- "$lib" "$T/installed.sd" || fail "LD_PRELOAD=$lib is not what make install produces:
$(cat "$T/installed.sd")"
	local -a envs=()
	mapfile -t envs <"$T/sd.env"
	[ "${#envs[@]}" -ge 3 ] || fail "settings: ${envs[*]}"
	accepted "${envs[@]}"
}

@test "examples/kubernetes.yaml: volumes, the init container's copy, LD_PRELOAD and HBSHIM_* settings hold together and are accepted" {
	need_cmd make
	"$PY" -c 'import yaml' 2>/dev/null || skip "needs python3-yaml (Debian package python3-yaml)"
	table_vars >"$T/vars"
	"$PY" - "$EX/kubernetes.yaml" "$T" <<'PYEOF' >"$T/k8s.out" 2>&1 || fail "$(cat "$T/k8s.out")"
import os, sys, yaml
path, tmp = sys.argv[1], sys.argv[2]
table = set(open(os.path.join(tmp, "vars")).read().split())
docs = [d for d in yaml.safe_load_all(open(path)) if d]
if len(docs) != 1 or docs[0].get("kind") not in ("Deployment", "Pod"):
    sys.exit("expected one Deployment or Pod: %r" % [d.get("kind") for d in docs])
d = docs[0]
if d["kind"] == "Deployment":
    sel = d["spec"]["selector"]["matchLabels"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in sel.items()):
        sys.exit("the selector %r does not match the template's labels %r" % (sel, labels))
    spec = d["spec"]["template"]["spec"]
else:
    spec = d["spec"]
volumes = {v["name"]: v for v in spec.get("volumes", [])}
inits, apps = spec.get("initContainers", []), spec.get("containers", [])
if len(inits) != 1 or len(apps) != 1:
    sys.exit("expected one init container and one application container")
for c in inits + apps:
    for m in c.get("volumeMounts", []):
        if m["name"] not in volumes:
            sys.exit("%s mounts %s, which is not a volume" % (c["name"], m["name"]))
init, app = inits[0], apps[0]
env = {}
for e in app.get("env", []):
    if "value" not in e or not isinstance(e["value"], str):
        sys.exit("env %s: the value must be a string" % e.get("name"))
    env[e["name"]] = e["value"]
if "LD_PRELOAD" not in env:
    sys.exit("the application container does not set LD_PRELOAD")
lib = env["LD_PRELOAD"]
libdir = os.path.dirname(lib)
# The volume mounted at LD_PRELOAD's directory in the application container.
shared = [m["name"] for m in app["volumeMounts"] if m["mountPath"].rstrip("/") == libdir]
if len(shared) != 1:
    sys.exit("no volume is mounted at %s in the application container" % libdir)
shared = shared[0]
if "emptyDir" not in volumes[shared]:
    sys.exit("volume %s is not an emptyDir" % shared)
# The init container copies SRC to a path in that same volume.
cmd = init.get("command", []) + init.get("args", [])
if len(cmd) != 3 or os.path.basename(cmd[0]) != "cp":
    sys.exit("the init container does not run cp SRC DST: %r" % cmd)
src, dst = cmd[1], cmd[2]
mounts = {m["mountPath"].rstrip("/"): m["name"] for m in init.get("volumeMounts", [])}
dstfile = os.path.join(dst, os.path.basename(src)) if dst.endswith("/") else dst
if mounts.get(os.path.dirname(dstfile)) != shared:
    sys.exit("the init container copies to %s, not into volume %s" % (dstfile, shared))
if os.path.basename(dstfile) != os.path.basename(lib):
    sys.exit("the init container writes %s, LD_PRELOAD loads %s" % (dstfile, lib))
for n in env:
    if n.startswith("HBSHIM_") and n not in table:
        sys.exit("%s: not a variable of the config table" % n)
with open(os.path.join(tmp, "k8s.src"), "w") as f:
    f.write(src + "\n")
with open(os.path.join(tmp, "k8s.env"), "w") as f:
    for n, v in env.items():
        if n.startswith("HBSHIM_"):
            f.write("%s=%s\n" % (n, v))
PYEOF
	# The copied file is the library as examples/Dockerfile's build stage
	# installs it (its make install PREFIX=... DESTDIR=...).
	local src prefix destdir
	src=$(cat "$T/k8s.src")
	read -r prefix destdir < <(sed -n 's/.*make install PREFIX=\([^ ]*\) DESTDIR=\([^ ]*\).*/\1 \2/p' \
		"$EX/Dockerfile")
	[ -n "$destdir" ] || fail "examples/Dockerfile: no make install PREFIX=... DESTDIR=..."
	[[ $src == "$destdir"/* ]] || fail "the init container copies $src, not from $destdir (examples/Dockerfile's DESTDIR)"
	src=${src#"$destdir"}
	install_listing "$prefix" k8s
	grep -qxF -- "$src" "$T/installed.k8s" && [[ $src == */libhbshim.so ]] ||
		fail "the init container copies $src, which is not make install's libhbshim.so:
$(cat "$T/installed.k8s")"
	local -a envs=()
	mapfile -t envs <"$T/k8s.env"
	[ "${#envs[@]}" -ge 3 ] || fail "settings: ${envs[*]}"
	accepted "${envs[@]}"
}
