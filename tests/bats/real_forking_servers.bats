#!/usr/bin/env bats
# real_forking_servers.bats - real, unmodified Debian servers that fork a
# process per connection (dropbear, mini_httpd; proftpd, which then chroots
# and changes user; vsftpd, a raw clone or fork per connection with
# privilege separation) or serve from a pool of forked processes that each
# accept (apache2: mpm_prefork with mod_cgi forking a CGI per request,
# mpm_event's threaded processes with mod_cgid's forking daemon), or fork a
# CGI per request from an event loop (lighttpd), framed at both ends: the
# server under the shim with HBSHIM_ACCEPT=auto, the client with
# HBSHIM_FRAME naming the server.
#
# Every exchange is byte-exact (1 MB of random bytes, `cmp`): through `cat`
# over ssh both ways, an HTTP download (apache2 with sendfile, mini_httpd),
# an HTTP upload echoed back by a CGI, an FTP download and upload (proftpd,
# vsftpd: the control connection framed, the data connections raw). Both
# ends' events must hold a "framed" event (vsftpd: the client's; see
# ftp_exchange) and no "protocol_error" or "dead"; an
# unshimmed client of the same shimmed server must get the same bytes. A
# frozen client (SIGSTOP) of dropbear is found dead by the forked server
# process within HBSHIM_TIMEOUT + 10 %.
#
# apache2, mini_httpd and proftpd drop to www-data or nobody: their
# documents, logs, events and stats live in a directory of their own under
# /tmp that user can reach (the test's own temp dir is root's, mode 0700).
#
# Known failures: none (vsftpd's and proftpd's default capabilities engine
# were; their tests at the end say what changed).

load helpers
load real_programs

SRV_ENV=(HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=50ms HBSHIM_TIMEOUT=20s)
CLI_ENV=(HBSHIM_INTERVAL=50ms HBSHIM_TIMEOUT=20s)

setup() {
	hb_setup
	W=""
	SRV_EV="$T/srv.ev"
	STATS="$T"
	head -c 1000000 /dev/urandom >"$T/payload"
	NPAYLOAD=$(stat -c %s "$T/payload")
}

teardown() {
	hb_teardown
	[ -n "$W" ] && rm -rf "$W"
	return 0
}

# shared_dir USER: a tree under /tmp that the server's processes running as
# USER can read ($W, mode 755) with a directory they can write ($W/out,
# mode 777: events and stats; the events file made beforehand, mode 666,
# so that the root parent and USER's children append to one file); the
# payload in $W/www.
shared_dir() {
	id "$1" >/dev/null 2>&1 || skip "needs the user $1"
	W=$(mktemp -d /tmp/hbt-fork.XXXXXX)
	chmod 755 "$W"
	mkdir -p "$W/www" "$W/out"
	chmod 755 "$W/www"
	chmod 777 "$W/out"
	cp "$T/payload" "$W/www/payload"
	chmod 644 "$W/www/payload"
	SRV_EV="$W/out/srv.ev"
	: >"$SRV_EV"
	chmod 666 "$SRV_EV"
	STATS="$W/out"
}

# got_payload FILE WHAT: FILE holds the payload exactly.
got_payload() {
	same_file "$T/payload" "$1" || fail "$2: client stderr: $(head -c 1000 "$T/cli.err")
server events: $(grep -E 'protocol_error|dead' "$SRV_EV" | head -3)"
	echo "# $2: $(stat -c %s "$1") bytes, ${ELAPSED:-?} s" >&3
}

# ------------------------------------------------------------------ dropbear

# A private dropbear (fork per connection; the session forks again for the
# command): root's home is a directory of the test's, bound over /root in a
# mount namespace of the server's own, holding the client keys.
start_dropbear() {
	need_root "dropbear logs in as root, with a home bound over /root (unshare -m)"
	need_cmd dropbear dropbearkey dbclient unshare
	mkdir -p "$T/home/.ssh"
	chmod 700 "$T/home" "$T/home/.ssh"
	dropbearkey -t ed25519 -f "$T/hostkey" >/dev/null 2>&1
	dropbearkey -t ed25519 -f "$T/dbkey" 2>/dev/null | grep '^ssh-' >"$T/home/.ssh/authorized_keys"
	if command -v ssh-keygen >/dev/null; then
		ssh-keygen -q -t ed25519 -N '' -f "$T/sshkey"
		cat "$T/sshkey.pub" >>"$T/home/.ssh/authorized_keys"
	fi
	chmod 600 "$T/home/.ssh/authorized_keys"
	PORT=$(free_port)
	# -F: foreground, -E: log to stderr, -s: no password logins.
	serve dropbear unshare -m sh -c 'mount --bind "$1" /root && shift && exec "$@"' sh "$T/home" \
		dropbear -F -E -s -p "127.0.0.1:$PORT" -r "$T/hostkey"
	wait_listen "$PORT" || fail "dropbear: $(cat "$T/dropbear.err")"
}

# dbclient -y -y: no host key check (nothing written under ~/.ssh).
DB_OPTS=(-y -y)

@test "dropbear (fork per connection, the session forks the command) <-> dbclient and OpenSSH ssh: 1 MB through cat both ways byte-exact" {
	start_dropbear
	# The command waits 0.5 s first: heartbeats cross the session.
	client dbclient "${DB_OPTS[@]}" -i "$T/dbkey" -p "$PORT" root@127.0.0.1 'sleep 0.5; cat' \
		<"$T/payload" >"$T/got" || fail "dbclient: $(cat "$T/cli.err"; tail -3 "$T/dropbear.err")"
	got_payload "$T/got" "dbclient ... cat"
	framed_both

	if command -v ssh >/dev/null && [ -f "$T/sshkey" ]; then
		: >"$T/cli.ev"
		client ssh -F none -i "$T/sshkey" -o BatchMode=yes -o StrictHostKeyChecking=no \
			-o UserKnownHostsFile=/dev/null -p "$PORT" root@127.0.0.1 'sleep 0.5; cat' \
			<"$T/payload" >"$T/got" || fail "ssh: $(cat "$T/cli.err"; tail -3 "$T/dropbear.err")"
		got_payload "$T/got" "OpenSSH ssh ... cat"
		framed_both
	fi

	: >"$T/cli.ev"
	timed plain dbclient "${DB_OPTS[@]}" -i "$T/dbkey" -p "$PORT" root@127.0.0.1 cat \
		<"$T/payload" >"$T/got_plain" 2>"$T/cli.err" || fail "unshimmed dbclient: $(cat "$T/cli.err")"
	got_payload "$T/got_plain" "unshimmed dbclient ... cat"
	no_errors
	heartbeats_crossed
}

@test "dropbear: a frozen (SIGSTOPped) framed dbclient is found dead by the forked session process within HBSHIM_TIMEOUT + 10 %, which ends with ETIMEDOUT" {
	SRV_ENV=(HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s)
	CLI_ENV=(HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s)
	start_dropbear
	bg dbc shim HBSHIM_FRAME="127.0.0.1:$PORT" "${CLI_ENV[@]}" HBSHIM_EVENTS="$T/cli.ev" \
		dbclient "${DB_OPTS[@]}" -i "$T/dbkey" -p "$PORT" root@127.0.0.1 'echo started; exec sleep 20'
	wait_line "$T/dbc.out" '^started$' || fail "dbclient: $(cat "$T/dbc.err")"
	# bg's pid is timeout(1)'s; dbclient is its child.
	local pid t0
	pid=$(pgrep -P "$BG_PID" -x dbclient) || fail "no dbclient under $BG_PID"
	echo "$pid" >>"$T/.pids"
	t0=$(date +%s%3N)
	kill -STOP "$pid"
	wait_line "$SRV_EV" '"event":"dead"' 5 || fail "no dead event at the server"
	run "$PY" - "$SRV_EV" "$t0" <<-'PY'
		import json, sys
		ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
		dead = [e for e in ev if e["event"] == "dead"]
		assert len(dead) == 1, dead
		d = dead[0]
		assert d["mode"] == "frame" and d["reason"] == "heartbeat", d
		assert any(e["event"] == "framed" for e in ev), "never framed"
		print(d["silent_ms"], (d["time"] - int(sys.argv[2])) / 1000)
	PY
	assert_status 0
	local silent after
	read -r silent after <<<"$output"
	echo "# silent_ms $silent, dead ${after} s after the SIGSTOP" >&3
	# Silence measured by the shim: the timeout, at most 10 % over.
	((silent >= 1000 && silent <= 1100)) || fail "silent_ms $silent"
	# From the stop: the last heartbeat may precede it by one interval.
	in_range "$after" 0.75 1.1 || fail "dead $after s after the stop"
	# The session process's read failed: dropbear says so and exits.
	wait_line "$T/dropbear.err" 'Exit .*Connection timed out' 3 || fail "dropbear: $(tail -3 "$T/dropbear.err")"
}

# ------------------------------------------------------------------ apache2

# A private apache2 with the MPM and CGI module given: sendfile on for the
# static download, a CGI per request for the upload. mod_cgi writes the
# whole request body to the script before it reads the output: the script
# keeps the body in a file first (an echo through pipes deadlocks at 64 KB
# with or without the shim), then waits 1 s: the apache2 process that
# forked it (mod_cgi) holds the framed connection and must go on
# heartbeating toward the waiting client once its pause after the fork
# (max(interval, 500 ms), DESIGN.md "fork") is over.
# apache_exchange MPM CGI_MODULE [DIRECTIVES]: @W@ in DIRECTIVES is $W.
apache_exchange() {
	local mpm=$1 cgi=$2 extra=${3:-} m=/usr/lib/apache2/modules
	need_cmd apache2 curl
	[ -f "$m/mod_mpm_$mpm.so" ] && [ -f "$m/mod_$cgi.so" ] || skip "needs apache2's mpm_$mpm and $cgi modules"
	shared_dir www-data
	extra=${extra//@W@/$W}
	mkdir -p "$W/cgi"
	cat >"$W/cgi/echo.sh" <<-'EOF'
		#!/bin/sh
		f=$(mktemp) || exit 1
		head -c "$CONTENT_LENGTH" >"$f"
		sleep 1
		printf 'Content-Type: application/octet-stream\r\n\r\n'
		cat "$f"
		rm -f "$f"
	EOF
	chmod 755 "$W/cgi" "$W/cgi/echo.sh"
	PORT=$(free_port)
	cat >"$W/httpd.conf" <<-EOF
		ServerRoot $W
		ServerName 127.0.0.1
		Listen 127.0.0.1:$PORT
		PidFile $W/httpd.pid
		DefaultRuntimeDir $W/out
		ErrorLog $W/out/error.log
		User www-data
		Group www-data
		LoadModule mpm_${mpm}_module $m/mod_mpm_$mpm.so
		LoadModule authz_core_module $m/mod_authz_core.so
		LoadModule alias_module $m/mod_alias.so
		LoadModule ${cgi}_module $m/mod_$cgi.so
		StartServers 2
		$extra
		EnableSendfile On
		DocumentRoot $W/www
		ScriptAlias /cgi/ $W/cgi/
		<Directory />
		  Require all granted
		</Directory>
	EOF
	serve apache2 apache2 -f "$W/httpd.conf" -DFOREGROUND
	wait_listen "$PORT" || fail "apache2: $(cat "$T/apache2.err" "$W/out/error.log")"
	local url="http://127.0.0.1:$PORT"

	client curl -sS -o "$T/got" "$url/payload" || fail "curl GET: $(cat "$T/cli.err")"
	got_payload "$T/got" "curl GET (sendfile)"
	client curl -sS --data-binary @"$T/payload" -H 'Content-Type: application/octet-stream' \
		-o "$T/got_post" "$url/cgi/echo.sh" || fail "curl POST: $(cat "$T/cli.err"; tail -3 "$W/out/error.log")"
	got_payload "$T/got_post" "curl POST to the CGI"
	framed_both
	[ "$(grep -c '"event":"framed"' "$T/cli.ev")" -eq 2 ] || fail "client: $(cat "$T/cli.ev")"
	# The client's own stats (written at its exit): the server's
	# heartbeats reached it while the CGI ran.
	local hb
	hb=$(awk '$1 == "hbshim_heartbeats_received_total" { s += $2 } END { print s + 0 }' "$T"/st.*.prom)
	echo "# heartbeats received by the curl clients: $hb" >&3
	((hb > 0)) || fail "no heartbeat from the server while its CGI ran"

	: >"$T/cli.ev"
	timed plain curl -sS -o "$T/got_plain" "$url/payload"
	got_payload "$T/got_plain" "unshimmed curl GET"
	timed plain curl -sS --data-binary @"$T/payload" -H 'Content-Type: application/octet-stream' \
		-o "$T/got_plain" "$url/cgi/echo.sh"
	got_payload "$T/got_plain" "unshimmed curl POST"
	no_errors
}

@test "apache2 mpm_prefork (pre-forked processes accept; sendfile; mod_cgi forks a CGI per request) <-> curl: 1 MB download and 1 MB POST echoed by a CGI, byte-exact" {
	apache_exchange prefork cgi "MinSpareServers 2
		MaxSpareServers 4"
}

# mod_cgid: the CGIs are forked by a daemon of their own, which hands the
# request's process their pipes over a UNIX socket; the connection stays
# in the threaded server process.
@test "apache2 mpm_event (threaded server processes; sendfile; mod_cgid's daemon forks the CGI) <-> curl: 1 MB download and 1 MB POST echoed by a CGI, byte-exact" {
	apache_exchange event cgid "ScriptSock @W@/out/cgid.sock"
}

# ------------------------------------------------------------------ mini_httpd

@test "mini_httpd (fork per connection) <-> curl and wget: 1 MB download byte-exact" {
	need_cmd mini_httpd curl
	shared_dir www-data
	PORT=$(free_port)
	# -D: foreground; as root it drops to -u after binding (no chroot: a
	# warning on stderr).
	serve mini mini_httpd -D -p "$PORT" -h 127.0.0.1 -d "$W/www" -u www-data -l "$W/out/access.log"
	wait_listen "$PORT" || fail "mini_httpd: $(cat "$T/mini.err")"
	local url="http://127.0.0.1:$PORT"

	client curl -sS -o "$T/got" "$url/payload" || fail "curl: $(cat "$T/cli.err")"
	got_payload "$T/got" "curl"
	framed_both
	if command -v wget >/dev/null; then
		: >"$T/cli.ev"
		client wget -q -O "$T/got" "$url/payload" || fail "wget: $(cat "$T/cli.err")"
		got_payload "$T/got" "wget"
		framed_both
	fi

	: >"$T/cli.ev"
	timed plain curl -sS -o "$T/got_plain" "$url/payload"
	got_payload "$T/got_plain" "unshimmed curl"
	no_errors
}

# ------------------------------------------------------------------ lighttpd

# One event-loop process (as root here: no user change) that forks a CGI per
# request (mod_cgi streams the body to the CGI while it reads its output).
@test "lighttpd (event loop, sendfile; mod_cgi forks a CGI per request) <-> curl: 1 MB download and 1 MB POST echoed by a CGI, byte-exact" {
	need_cmd lighttpd curl
	mkdir -p "$T/www"
	cp "$T/payload" "$T/www/payload"
	cat >"$T/www/echo.sh" <<-'EOF'
		#!/bin/sh
		sleep 0.7
		printf 'Content-Type: application/octet-stream\r\n\r\n'
		exec head -c "$CONTENT_LENGTH"
	EOF
	PORT=$(free_port)
	cat >"$T/lighttpd.conf" <<-EOF
		server.document-root = "$T/www"
		server.bind = "127.0.0.1"
		server.port = $PORT
		server.modules = ("mod_cgi")
		cgi.assign = (".sh" => "/bin/sh")
		server.errorlog = "$T/lighttpd.log"
		server.network-backend = "sendfile"
	EOF
	serve lighttpd lighttpd -D -f "$T/lighttpd.conf"
	wait_listen "$PORT" || fail "lighttpd: $(cat "$T/lighttpd.err")"
	local url="http://127.0.0.1:$PORT"

	client curl -sS -o "$T/got" "$url/payload" || fail "curl GET: $(cat "$T/cli.err")"
	got_payload "$T/got" "curl GET (sendfile)"
	client curl -sS --data-binary @"$T/payload" -H 'Content-Type: application/octet-stream' \
		-o "$T/got_post" "$url/echo.sh" || fail "curl POST: $(cat "$T/cli.err"; tail -3 "$T/lighttpd.log")"
	got_payload "$T/got_post" "curl POST to the CGI"
	framed_both
	[ "$(grep -c '"event":"framed"' "$T/cli.ev")" -eq 2 ] || fail "client: $(cat "$T/cli.ev")"

	: >"$T/cli.ev"
	timed plain curl -sS --data-binary @"$T/payload" -H 'Content-Type: application/octet-stream' \
		-o "$T/got_plain" "$url/echo.sh"
	got_payload "$T/got_plain" "unshimmed curl POST"
	no_errors
	heartbeats_crossed
}

# ------------------------------------------------------------------ proftpd

# A private proftpd: standalone, one process per connection, which chroots
# to the anonymous tree and runs as nobody after the login; incoming/ takes
# uploads. $1: an extra configuration line.
start_proftpd() {
	need_root "proftpd runs standalone as root and chroots the anonymous session"
	need_cmd proftpd curl
	shared_dir nobody
	getent group nogroup >/dev/null || skip "needs the group nogroup"
	mkdir -p "$W/www/incoming"
	chown nobody:nogroup "$W/www/incoming"
	PORT=$(free_port)
	cat >"$W/proftpd.conf" <<-EOF
		ServerType standalone
		DefaultAddress 127.0.0.1
		SocketBindTight on
		Port $PORT
		User nobody
		Group nogroup
		UseIPv6 off
		UseReverseDNS off
		UseFtpUsers off
		AuthPAM off
		WtmpLog off
		DelayTable none
		ScoreboardFile $W/scoreboard
		PidFile $W/proftpd.pid
		$1
		<Anonymous $W/www>
		  User nobody
		  Group nogroup
		  UserAlias anonymous nobody
		  RequireValidShell off
		  <Limit WRITE>
		    DenyAll
		  </Limit>
		  <Directory incoming>
		    <Limit STOR>
		      AllowAll
		    </Limit>
		  </Directory>
		</Anonymous>
	EOF
	# -n: foreground.
	serve proftpd proftpd -n -c "$W/proftpd.conf"
	wait_listen "$PORT" || fail "proftpd: $(cat "$T/proftpd.err")"
}

# ftp_exchange NAME: a framed curl downloads and uploads the payload (two
# framed control connections; the data connections raw) from the server
# NAME started, then an unshimmed curl downloads it. The client's two
# "framed" events say the server framed its direction (its hello came);
# the server's own are asked for too unless NAME is vsftpd: the process
# that takes the client's hello there, vsftpd's pre-login process, runs at
# its RLIMIT_NOFILE (the events file's open fails with EMFILE).
ftp_exchange() {
	local url="ftp://127.0.0.1:$PORT"

	client curl -sS -o "$T/got" "$url/payload" || fail "curl RETR: $(cat "$T/cli.err"; tail -3 "$T/$1.err")"
	got_payload "$T/got" "curl RETR"
	client curl -sS -T "$T/payload" "$url/incoming/up" || fail "curl STOR: $(cat "$T/cli.err"; tail -3 "$T/$1.err")"
	got_payload "$W/www/incoming/up" "curl STOR (the stored file)"
	[ "$1" = vsftpd ] || framed_both
	[ "$(grep -c '"event":"framed"' "$T/cli.ev")" -eq 2 ] || fail "client: $(cat "$T/cli.ev")"
	no_errors

	: >"$T/cli.ev"
	timed plain curl -sS -o "$T/got_plain" "$url/payload"
	got_payload "$T/got_plain" "unshimmed curl RETR"
	no_errors
}

@test "proftpd (fork per connection, chroot and setuid at login) <-> curl: 1 MB FTP download and upload byte-exact over a framed control connection" {
	start_proftpd "CapabilitiesEngine off"
	ftp_exchange proftpd
}

# proftpd's mod_cap (on by default) keeps CAP_SETUID with capset(2), which
# acts on the calling thread only, after PR_SET_KEEPCAPS, which does too.
# The shim's background thread, started in the session process for its
# connection (framed or not), had no capability left after the login's
# setreuid to nobody; the next seteuid(0) is glibc's all-threads setxid,
# which failed with EPERM there, and glibc aborted the session (the client
# read EOF after PASS, "response reading failed", framed or not). The shim
# now gives its thread what the application gives its own (thread.c,
# hb_thread_mirror; capkeep in preload_compat.bats).
@test "proftpd with its default CapabilitiesEngine on <-> curl: 1 MB download and upload, framed and unshimmed" {
	start_proftpd ""
	ftp_exchange proftpd
}

# ------------------------------------------------------------------ vsftpd

# A private vsftpd: standalone, a session process per connection made by a
# raw clone (isolate=YES, the default) or by fork (isolate=NO
# isolate_network=NO), privilege separation: the session process, as
# root, never reads the control connection; it makes a pre-login process
# (as nobody, chrooted) that sends the banner and reads USER, then a
# post-login process (the anonymous user, chrooted to anon_root) that
# answers "230" and serves; with isolate_network the session process
# accepts the data connections and passes them over SCM_RIGHTS. Anonymous
# login without a password as daemon (vsftpd changes to its home, which
# must exist, before anon_root), uploads into incoming/. $1: extra
# configuration lines. The vsftpd package conflicts with proftpd-core (both
# are ftp-server): scripts/install-test-deps.sh unpacks it, as root, under
# /var/cache/hbshim-tests/vsftpd without installing it; HB_VSFTPD may name
# another binary; else an installed one is used.
start_vsftpd() {
	need_root "vsftpd runs standalone as root, chroots and changes user per session"
	need_cmd curl
	local vsftpd=${HB_VSFTPD:-$(command -v vsftpd || true)}
	[ -n "$vsftpd" ] || vsftpd=/var/cache/hbshim-tests/vsftpd/usr/sbin/vsftpd
	[ -n "$vsftpd" ] && [ -x "$vsftpd" ] ||
		skip "needs vsftpd (neither installed nor unpacked by make check as root; HB_VSFTPD may name a binary)"
	id daemon >/dev/null 2>&1 || skip "needs the user daemon"
	shared_dir nobody
	mkdir -p "$W/empty" "$W/www/incoming"
	chown daemon "$W/www/incoming"
	PORT=$(free_port)
	cat >"$W/vsftpd.conf" <<-EOF
		listen=YES
		listen_address=127.0.0.1
		listen_port=$PORT
		background=NO
		anonymous_enable=YES
		no_anon_password=YES
		ftp_username=daemon
		anon_root=$W/www
		write_enable=YES
		anon_upload_enable=YES
		local_enable=NO
		secure_chroot_dir=$W/empty
		xferlog_enable=NO
		$1
	EOF
	serve vsftpd "$vsftpd" "$W/vsftpd.conf"
	wait_listen "$PORT" || fail "vsftpd: $(cat "$T/vsftpd.err")"
}

# The post-login process is copied from the session process, whose copy of
# the connection was handed over before the client's hello arrived (the
# listener's hand-over does not wait for a client's hello) and which never
# reads it: the pre-login process took the hello, and the post-login
# process took the client's frames for a raw client and answered "230
# Login successful." raw (EPROTO at the client, 6 of 6 with the defaults).
# The copy that takes a shared connection's hello now lists it in a page
# the fork family shares (fork_exec_spawn.bats, forkhello). And when the
# listener raw-cloned the session process right after the accept that
# started its shim thread, before that thread ran, the pre-login process
# hung in its first setgroups (the client got no banner): glibc's thread
# list, copied through the clones, still held the thread as being created
# (fork_exec_spawn.bats, clonesetxid).
@test "vsftpd (standalone, raw clone per connection, privilege separation, seccomp sandbox) <-> curl: 1 MB FTP download and upload byte-exact over a framed control connection" {
	start_vsftpd ""
	ftp_exchange vsftpd
}

@test "vsftpd with isolate=NO (fork per connection) and no seccomp sandbox <-> curl: the same" {
	start_vsftpd "isolate=NO
isolate_network=NO
seccomp_sandbox=NO"
	ftp_exchange vsftpd
}
