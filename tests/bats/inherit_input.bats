#!/usr/bin/env bats
# HBSHIM_INHERIT is input: whoever runs exec writes it. An entry the new
# image cannot trust (malformed, impossible values, a cookie that is not the
# socket's, a number that is no TCP socket) is ignored with a warning and
# the fd stays the application's own: its bytes pass untouched.

load helpers

@test "inherit input: cookie 0 on a non-socket (echo's stdout) -> ignored with a warning, output exact" {
	# A non-socket's cookie reads as 0: an entry with cookie 0 "matched"
	# it, and echo's stdout went down the framed path (ENOTSOCK).
	run stderr_to "$T/err" shim HBSHIM_INHERIT=1,0,0,2,0,0,0,-,0,0,-,0,0 /bin/echo hello
	assert_status 0
	[ "$output" = hello ] || fail "stdout: $output"
	grep -q "warn: HBSHIM_INHERIT: entry 1 ignored: malformed or impossible values" "$T/err" ||
		fail "stderr: $(cat "$T/err")"
}

@test "inherit input: forged entries for a real TCP socket (7-byte partial header, wrong cookie, non-TCP, garbage) -> each ignored with a warning, bytes raw and exact" {
	# A partial header of 7 bytes (the decoder keeps at most 6 between
	# calls) was adopted and the decoder wrote past its header buffer.
	cat >"$T/parent.py" <<'PY'
import os, socket, subprocess, sys
shim_env = dict(a.split("=", 1) for a in sys.argv[1:])
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
s = socket.create_connection(l.getsockname()); p, _ = l.accept()
u1, u2 = socket.socketpair()
fd = s.fileno(); os.dup2(fd, 5)
cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 57, 8), "little")
ucookie = int.from_bytes(u1.getsockopt(socket.SOL_SOCKET, 57, 8), "little")
ok = "%x,%x,2,2,1,1,0,-,0,0,-,3e8,bb8" % (fd, cookie)
variants = {
    "hdr7": "%x,%x,2,2,1,1,0,00000000000000,0,0,-,3e8,bb8" % (fd, cookie),
    "hdr-in-frame": "%x,%x,2,2,1,1,10,00,0,0,-,3e8,bb8" % (fd, cookie),
    "complete-hdr": "%x,%x,2,2,1,1,0,0001,0,0,-,3e8,bb8" % (fd, cookie),
    "huge-frame": "%x,%x,2,2,1,1,1000001,-,0,0,-,3e8,bb8" % (fd, cookie),
    "wrong-cookie": "%x,%x,2,2,1,1,0,-,0,0,-,3e8,bb8" % (fd, cookie + 1),
    "unix-socket": "%x,%x,2,2,1,1,0,-,0,0,-,3e8,bb8" % (u1.fileno(), ucookie),
    "fd-not-open": "%x,%x,2,2,1,1,0,-,0,0,-,3e8,bb8" % (77, cookie),
    "garbage": "%x,zz" % fd,
    "short": "%x,%x,2,2" % (fd, cookie),
    "long": ok + ",0",
    "bad-mode": "%x,%x,9,2,1,1,0,-,0,0,-,3e8,bb8" % (fd, cookie),
}
child = r'''import ctypes, os, sys
lib = ctypes.CDLL(None)
fd = int(sys.argv[1])
got = os.read(fd, 100)
os.write(fd, b"reply")
print("got %r mode %d" % (got, lib.hbshim_fd_mode(fd)), flush=True)
'''
for name, value in variants.items():
    env = dict(os.environ, HBSHIM_INHERIT=value, **shim_env)
    p.sendall(b"raw bytes")
    r = subprocess.run([sys.executable, "-c", child, str(fd)], env=env, pass_fds=(fd, 5, u1.fileno()),
                       capture_output=True, timeout=20)
    back = p.recv(100)
    warns = [l.split(": ", 1)[1] for l in r.stderr.decode().splitlines() if l.startswith("hbshim[")]
    print("%s: %s peer %r | %s" % (name, r.stdout.decode().strip(), back, " / ".join(warns)), flush=True)
PY
	run plain "$PY" "$T/parent.py" "${SHIM_ENV[@]}"
	echo "$output"
	assert_status 0
	local v bad="malformed or impossible values"
	for v in hdr7 hdr-in-frame complete-hdr huge-frame garbage short long bad-mode; do
		[ "$(line_with "$v:")" = "$v: got b'raw bytes' mode 0 peer b'reply' | warn: HBSHIM_INHERIT: entry 1 ignored: $bad" ] ||
			fail "$v: $(line_with "$v:")"
	done
	[[ "$(line_with wrong-cookie:)" == "wrong-cookie: got b'raw bytes' mode 0 peer b'reply' | warn: HBSHIM_INHERIT: entry 1 (fd "*") ignored: not the socket of that cookie" ]] ||
		fail "$(line_with wrong-cookie:)"
	[[ "$(line_with unix-socket:)" == *" ignored: not a TCP socket" ]] || fail "$(line_with unix-socket:)"
	[[ "$(line_with fd-not-open:)" == "fd-not-open: got b'raw bytes' mode 0 peer b'reply' | warn: HBSHIM_INHERIT: entry 1 (fd 77) ignored: not an open fd" ]] ||
		fail "$(line_with fd-not-open:)"
}

@test "inherit input: one bad entry among good ones -> the good ones are adopted, the bad one ignored" {
	# Before, the first malformed entry ended the import: entries after it
	# were lost. A valid entry for fd 3 and a dup on fd 5, a forged one
	# for a pipe between them.
	cat >"$T/parent.py" <<'PY'
import os, socket, subprocess, sys
shim_env = dict(a.split("=", 1) for a in sys.argv[1:])
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
s = socket.create_connection(l.getsockname()); p, _ = l.accept()
os.dup2(s.fileno(), 3); os.dup2(s.fileno(), 5)
r, w = os.pipe(); os.dup2(w, 4)
cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 57, 8), "little")
value = ";".join(["3,%x,2,2,1,1,0,-,0,0,-,3e8,bb8" % cookie, "4,0,2,2,1,1,0,-,0,0,-,3e8,bb8",
                  "5,%x,2,2,1,1,0,-,0,0,-,3e8,bb8" % cookie])
child = r'''import ctypes, os
lib = ctypes.CDLL(None)
os.write(4, b"pipe bytes")
print("modes", lib.hbshim_fd_mode(3), lib.hbshim_fd_mode(4), lib.hbshim_fd_mode(5), flush=True)
'''
env = dict(os.environ, HBSHIM_INHERIT=value, **shim_env)
res = subprocess.run([sys.executable, "-c", child], env=env, pass_fds=(3, 4, 5), capture_output=True, timeout=20)
print(res.stdout.decode().strip(), "| pipe", os.read(r, 100), flush=True)
for l in res.stderr.decode().splitlines():
    print("stderr:", l.split(": ", 1)[1])
PY
	run plain "$PY" "$T/parent.py" "${SHIM_ENV[@]}"
	echo "$output"
	assert_status 0
	[ "$(line_with modes)" = "modes 2 0 2 | pipe b'pipe bytes'" ] || fail "child: $output"
	[ "$(line_with stderr:)" = "stderr: warn: HBSHIM_INHERIT: entry 2 ignored: malformed or impossible values" ] ||
		fail "stderr: $output"
}
