#!/usr/bin/env bats
# fork() while the background thread holds (pins) a table entry: the child's
# fork handlers must not wait for a pin whose thread does not exist there.

load helpers

setup() { hb_setup; }
teardown() { hb_teardown; }

@test "review_fork: children forked while hundreds of lingering duplicates are ticked all exit (none hangs in the fork handlers)" {
	cat >"$T/forklinger.py" <<'PY'
import os, socket, sys, time
n, forks = int(sys.argv[1]), int(sys.argv[2])
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1024)
keep = []
for i in range(n):
    c = socket.create_connection(l.getsockname()); s, _ = l.accept()
    c.sendall(b"x"); s.recv(1); s.sendall(b"y"); c.recv(1)
    c.close()          # framed, hbshim peer: a lingering duplicate, ticked every 10 ms
    keep.append(s)     # the server side stays open: the linger goes on
time.sleep(0.2)
hung = 0
for i in range(forks):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    t0 = time.time()
    while True:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p:
            break
        if time.time() - t0 > 3:
            hung += 1
            os.kill(pid, 9); os.waitpid(pid, 0)
            break
        time.sleep(0.001)
print("HUNG %d of %d" % (hung, forks))
PY
	run bash -c 'ulimit -n 4096 && exec "$@"' _ timeout 120 env "${SHIM_ENV[@]}" HBSHIM_FRAME='*' \
		"$PY" "$T/forklinger.py" 400 40
	assert_status 0
	[ "${lines[-1]}" = "HUNG 0 of 40" ] || fail "$output"
}
