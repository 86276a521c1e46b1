#!/usr/bin/env bats
# Hostile arguments and small stacks: bad iovec arrays get the kernel's
# answer on framed connections, the exec and spawn interposers fit a small
# thread stack, and the build products carry the hardening flags.

load helpers

HELPERS="$HB_HELPERS"

@test "iovec: wrapping, oversized lengths and too many entries get the kernel's errno on every vectored call" {
	[ -x "$HELPERS/iovec_overflow" ] || fail "build/helpers/iovec_overflow missing: make build/helpers/iovec_overflow"
	run shim HBSHIM_FRAME='*' "$HELPERS/iovec_overflow"
	[ "$(line_with MODE)" = "MODE 2" ] || fail "connection not framed: $output"
	assert_status 0
	local op
	for op in writev sendmsg sendmmsg readv recvmsg recvmmsg; do
		line_with "CASE $op {16,2^64-8} kernel=EINVAL shim=EINVAL" >/dev/null || fail "$op wrap: $output"
		line_with "CASE $op {16,2^63} kernel=EINVAL shim=EINVAL" >/dev/null || fail "$op over: $output"
		line_with "CASE $op {2^62,2^62} kernel=EFAULT shim=EINVAL" >/dev/null || fail "$op sum: $output"
	done
	line_with "CASE writev 1025-entries kernel=EINVAL shim=EINVAL" >/dev/null || fail "$output"
	line_with "CASE readv 1025-entries kernel=EINVAL shim=EINVAL" >/dev/null || fail "$output"
	line_with "CASE sendmsg 1025-entries kernel=EMSGSIZE shim=EMSGSIZE" >/dev/null || fail "$output"
	line_with "CASE recvmsg 1025-entries kernel=EMSGSIZE shim=EMSGSIZE" >/dev/null || fail "$output"
	# A count far past the array: answered without reading past it.
	line_with "CASE writev 2^30-entries kernel=EINVAL shim=EINVAL" >/dev/null || fail "$output"
	line_with "CASE readv 2^30-entries kernel=EINVAL shim=EINVAL" >/dev/null || fail "$output"
	for op in sendmsg sendmmsg recvmsg recvmmsg; do
		line_with "CASE $op 2^30-entries kernel=EMSGSIZE shim=EMSGSIZE" >/dev/null || fail "$op: $output"
	done
	[ "${lines[-1]}" = OK ] || fail "$output"
}

# smallstack_exec MODE under the shim with a framed connection open: the
# child ran, exited 0 and adopted the connection (fdmode=2).
spawned_ok() {
	run shim HBSHIM_FRAME='*' "$HELPERS/smallstack_exec" "$1"
	assert_status 0
	[ "$(line_with STATUS)" = "STATUS 0" ] || fail "$1: $output"
	[ "$(line_with CHILD)" = "CHILD fdmode=2 argc=${2:-3} hb_t=${3:--}" ] || fail "$1: $output"
	[ "${lines[-1]}" = DONE ] || fail "$1: $output"
}

@test "stack: posix_spawn from a thread with a 64 KiB stack, a framed connection open" {
	[ -x "$HELPERS/smallstack_exec" ] || fail "build/helpers/smallstack_exec missing"
	spawned_ok spawn
}

@test "stack: fork then execve and execle from a thread with a 64 KiB stack" {
	spawned_ok fork-execve
	spawned_ok fork-execle
}

@test "stack: vfork then execve from a 64 KiB thread, 17 times, leaves no memory behind" {
	run shim HBSHIM_FRAME='*' "$HELPERS/smallstack_exec" vfork-execve
	assert_status 0
	[ "$(grep -c '^CHILD fdmode=2 argc=3 hb_t=-$' <<<"$output")" = 17 ] || fail "$output"
	local g
	g=$(line_with GROWTH) || fail "no GROWTH line: $output"
	[ "${g#GROWTH }" -lt 64 ] || fail "the process grew by ${g#GROWTH } kB: $output"
}

@test "exec: execle with 5000 arguments passes them all and its own envp" {
	spawned_ok execle-args 5000 ok
}

# readelf/objdump facts of one build product: RELRO segment, BIND_NOW, a
# stack-protector reference.
hardened() {
	readelf -lW "$1" | grep -q GNU_RELRO || fail "$1: no GNU_RELRO segment"
	readelf -dW "$1" | grep -E '\(FLAGS\)' | grep -q BIND_NOW || fail "$1: FLAGS lacks BIND_NOW: $(readelf -dW "$1" | grep FLAGS)"
	readelf -dW "$1" | grep -E '\(FLAGS_1\)' | grep -q NOW || fail "$1: FLAGS_1 lacks NOW"
	nm -D --undefined-only "$1" | grep -q '__stack_chk_fail' || fail "$1: no stack protector (no __stack_chk_fail reference)"
}

@test "build: the library and the wrapper are linked with RELRO and BIND_NOW, with the stack protector" {
	need_cmd readelf nm objdump
	hardened "$HB_LIB"
	hardened "$HB_WRAP"
	# Stack clash protection: frame_discard's 4 KiB buffer is probed.
	objdump -d --no-show-raw-insn --disassemble=frame_discard "$HB_LIB" | grep -q 'or.*\$0x0,.*(%rsp)' ||
		fail "frame_discard has no stack probe (-fstack-clash-protection)"
}

@test "build: the fortify _chk interposers still catch an overflow and pass a good call through" {
	# __read_chk with n > buflen aborts (glibc's __chk_fail, SIGABRT);
	# with n <= buflen it reads.
	run shim "$PY" -c 'import ctypes, os
l = ctypes.CDLL(None)
r, w = os.pipe()
os.write(w, b"abc")
b = ctypes.create_string_buffer(8)
print("read", l.__read_chk(r, b, 3, 8), b.value.decode(), flush=True)
l.__read_chk(r, b, 16, 8)
print("not reached")'
	[ "$status" -eq 134 ] || fail "status $status: $output"
	[ "${lines[0]}" = "read 3 abc" ] || fail "$output"
}

# A framed connection to itself in one Python process (client c, server s),
# then the case named by $1 (below).
framed_case() {
	cat >"$T/case.py" <<'PY'
import ctypes, errno, os, socket, struct, sys, threading, time
mode = ctypes.CDLL(None).hbshim_fd_mode
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
c = socket.create_connection(ls.getsockname()); s, _ = ls.accept()
c.sendall(b"hello"); s.recv(16); s.sendall(b"x"); c.recv(16)
print("MODE", mode(c.fileno()), mode(s.fileno()), flush=True)
if sys.argv[1] == "rcvtimeo":
    # 4294968 s is 4294968000 ms: 704 ms once wrapped to 32 bits.
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 4294968, 0))
    threading.Timer(1.5, lambda: s.sendall(b"late")).start()
    t = time.monotonic()
    try:
        d = c.recv(16)
        print("GOT", d.decode(), time.monotonic() - t >= 1.4)
    except OSError as e:
        print("ERR", errno.errorcode[e.errno], round(time.monotonic() - t, 1))
elif sys.argv[1] == "sources":
    # A frame promises what the source holds: a pipe's queued bytes (an
    # empty pipe is waited for), a regular file's bytes past the offset.
    r, w = os.pipe()
    os.write(w, b"0123456789")
    print("PIPE", os.splice(r, c.fileno(), 64), s.recv(64).decode(), flush=True)
    threading.Timer(0.3, lambda: os.write(w, b"late")).start()
    print("PIPE", os.splice(r, c.fileno(), 64), s.recv(64).decode(), flush=True)
    path = sys.argv[2]
    with open(path, "wb") as f:
        f.write(b"abcdefgh")
    fd = os.open(path, os.O_RDONLY)
    os.lseek(fd, 2, os.SEEK_SET)
    print("SENDFILE", os.sendfile(c.fileno(), fd, None, 64), s.recv(64).decode(), flush=True)
    print("SENDFILE", os.sendfile(c.fileno(), fd, 1, 64), s.recv(64).decode(), flush=True)
else:
    fd = os.open("/dev/null", os.O_RDONLY); os.close(fd)
    for n in (16, 0):
        try:
            print("SPLICE", n, os.splice(fd, c.fileno(), n))
        except OSError as e:
            print("SPLICE", n, errno.errorcode[e.errno])
    time.sleep(1.2) # 4 heartbeat timeouts
    try:
        c.sendall(b"ping"); print("S GOT", s.recv(16).decode())
        s.sendall(b"pong"); print("C GOT", c.recv(16).decode())
    except OSError as e:
        print("ERR", errno.errorcode[e.errno])
PY
	run shim HBSHIM_FRAME='*' HBSHIM_INTERVAL=100ms "$PY" "$T/case.py" "$1" "$T/src"
	assert_status 0
	[ "${lines[0]}" = "MODE 2 2" ] || fail "not framed: $output"
}

@test "sockopt: an SO_RCVTIMEO of 4294968 s does not wrap to 0.7 s on a framed connection" {
	framed_case rcvtimeo
	[ "${lines[1]}" = "GOT late True" ] || fail "$output"
}

@test "sockopt: an SO_SNDTIMEO of 4294968 s does not wrap to 0.7 s: a blocking connect waits for the shim's 1.5 s deadline" {
	# The connect deadline stops at the application's SO_SNDTIMEO when that
	# comes first (EINPROGRESS, as the kernel answers). 4294968 s is
	# 4294968000 ms: 704 ms once wrapped to 32 bits. The listener's accept
	# queue is full, so the SYNs vanish.
	run shim HBSHIM_CONNECT_TIMEOUT=1500ms "$PY" -c 'import errno, socket, struct, time
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(0)
fill = [socket.socket() for _ in range(2)]
for f in fill:
    f.setblocking(False); f.connect_ex(ls.getsockname())
time.sleep(0.1)
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 4294968, 0))
t = time.monotonic()
try:
    c.connect(ls.getsockname()); print("CONNECTED")
except OSError as e:
    print("ERR", errno.errorcode[e.errno], round(time.monotonic() - t, 1))'
	assert_status 0
	set -- $output
	[ "$1 $2" = "ERR ETIMEDOUT" ] || fail "$output (expected ERR ETIMEDOUT after 1.5 s)"
	in_range "$3" 1.4 3.0 || fail "connect gave up after $3 s, expected 1.5 s"
}

@test "splice, sendfile: a pipe's queued bytes (an empty pipe waited for) and a file's bytes past its offset reach the peer framed" {
	framed_case sources
	[ "${lines[1]}" = "PIPE 10 0123456789" ] || fail "$output"
	[ "${lines[2]}" = "PIPE 4 late" ] || fail "$output"
	[ "${lines[3]}" = "SENDFILE 6 cdefgh" ] || fail "$output"
	[ "${lines[4]}" = "SENDFILE 7 bcdefgh" ] || fail "$output"
}

@test "splice: from a bad fd onto a framed connection: EBADF (0 for a zero length), heartbeats go on" {
	framed_case splice
	[ "${lines[1]}" = "SPLICE 16 EBADF" ] || fail "$output"
	[ "${lines[2]}" = "SPLICE 0 0" ] || fail "$output"
	[ "${lines[3]}" = "S GOT ping" ] || fail "$output"
	[ "${lines[4]}" = "C GOT pong" ] || fail "$output"
}

@test "stack: no exported function uses more than 8 KiB of the caller's stack (gcc call graph, shim frames)" {
	# The bound is for the production build, which the plain pass measures;
	# ASan's redzones enlarge every frame (9,112 B worst under SAN=address).
	need_nosan "measures the production build (the plain pass does); ASan's redzones enlarge frames"
	need_cmd gcc
	echo 'int x;' >"$T/probe.c"
	gcc -fcallgraph-info=su -c -o "$T/probe.o" "$T/probe.c" 2>/dev/null || skip "gcc without -fcallgraph-info"
	# A build of this tree's sources with the call graph and frame sizes
	# (-O2 as the default build: frame sizes depend on optimisation).
	run make -s -C "$HB_ROOT" -j2 B="$T/su" "$T/su/libhbshim.so" CC=gcc CFLAGS="-O2 -fcallgraph-info=su"
	assert_status 0
	run "$PY" "$HB_ROOT/scripts/stack-usage.py" "$T/su/obj" "$T/su/libhbshim.so" 8192
	echo "# worst: ${lines[0]:0:100}" >&3
	assert_status 0
	# The exec family and posix_spawn (they held 72-104 KiB) are measured
	# and within the bound like every other interposer.
	local f l
	for f in execl execle execve posix_spawn posix_spawnp; do
		l=$(grep -E "^ *[0-9]+ $f:" <<<"$output") || fail "$f not measured: $output"
		[ "$(awk '{print $1}' <<<"$l")" -le 8192 ] || fail "$l"
	done
}
