/*
 * fault_ctl.c - HBSHIM_CONTROL: live control of the fault rules.
 *
 * A UNIX stream socket at the configured path ("%p" = the process id),
 * mode 0600, served by a thread of its own with every signal blocked. Each
 * connection carries one command line and gets the answer, then is closed:
 *
 *   list           the rules (name, action, on/off) and the connections
 *                  with rules (fd, peer, rule names)
 *   add RULE       one more rule (fault.c's grammar, no ';'); it applies to
 *                  connections made or accepted from now on
 *   remove NAME    switch a rule off (connections holding it stop applying it)
 *   trigger NAME   act now: the rule's trigger counts as met on its next use
 *
 * Answers start with "ok" or "error". A peer whose uid (SO_PEERCRED) is
 * neither ours nor root's is turned away. The wrapper's "hbshim ctl PATH
 * CMD..." is the client.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "hb.h"

static char sock_path[HB_PATH_MAX + 32];
static int owner_pid;

static int find_rule(const char *name, size_t n)
{
	int count = hb_load_acquire((_Atomic int *)&hb_cfg.nfaults);

	for (int i = 0; i < count; i++)
		if (strlen(hb_cfg.faults[i].name) == n && !memcmp(hb_cfg.faults[i].name, name, n))
			return i;
	return -1;
}

struct listing {
	struct hb_buf *out;
};

static void list_conn(int fd, struct hb_conn *c, void *arg)
{
	struct listing *l = arg;
	struct hb_fstate *st = hb_fault_of(c);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!st)
		return;
	hb_buf_fmt(l->out, "conn fd=%d peer=", fd);
	if (hb_os_getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		hb_buf_addr(l->out, (struct sockaddr *)&ss, len);
	else
		hb_buf_puts(l->out, "?");
	hb_buf_puts(l->out, " rules=");
	hb_fault_rule_names(st, l->out);
	hb_buf_putc(l->out, '\n');
}

int hb_fault_ctl_exec(const char *cmd, struct hb_buf *out)
{
	size_t n = strlen(cmd);
	int i;

	while (n && (cmd[n - 1] == '\n' || cmd[n - 1] == '\r' || cmd[n - 1] == ' '))
		n--;
	if (n == 4 && !memcmp(cmd, "list", 4)) {
		struct listing l = { out };
		int count = hb_load_acquire((_Atomic int *)&hb_cfg.nfaults);

		hb_buf_puts(out, "ok\n");
		for (i = 0; i < count; i++)
			hb_buf_fmt(out, "rule %s %s %s\n", hb_cfg.faults[i].name,
				   hb_fault_action_name(hb_cfg.faults[i].action),
				   hb_load_relaxed(&hb_fault_off[i]) ? "off" : "on");
		hb_fd_foreach(list_conn, &l);
		return 0;
	}
	if (n > 4 && !memcmp(cmd, "add ", 4)) {
		struct hb_fault f;
		int count = hb_load_acquire((_Atomic int *)&hb_cfg.nfaults);

		if (memchr(cmd + 4, ';', n - 4) || count >= HB_MAX_FAULTS ||
		    hb_fault_parse_one(cmd + 4, n - 4, &f, count) < 0) {
			hb_buf_puts(out, "error: add takes one valid rule (no ';'), at most 16 rules\n");
			return -EINVAL;
		}
		if (find_rule(f.name, strlen(f.name)) >= 0) {
			hb_buf_fmt(out, "error: a rule is named %s already\n", f.name);
			return -EINVAL;
		}
		/* The slot is complete before the count that publishes it. */
		hb_cfg.faults[count] = f;
		hb_store_release((_Atomic int *)&hb_cfg.nfaults, count + 1);
		hb_buf_fmt(out, "ok added %s\n", f.name);
		return 0;
	}
	if ((n > 7 && !memcmp(cmd, "remove ", 7)) || (n > 8 && !memcmp(cmd, "trigger ", 8))) {
		int rm = cmd[0] == 'r';
		size_t skip = rm ? 7 : 8;

		i = find_rule(cmd + skip, n - skip);
		if (i < 0) {
			hb_buf_puts(out, "error: no rule of that name\n");
			return -EINVAL;
		}
		if (rm)
			hb_store_release(&hb_fault_off[i], 1);
		else
			hb_add_relaxed(&hb_fault_kick[i], 1);
		hb_buf_fmt(out, "ok %s %s\n", rm ? "removed" : "triggered", hb_cfg.faults[i].name);
		return 0;
	}
	hb_buf_puts(out, "error: commands are list, add RULE, remove NAME, trigger NAME\n");
	return -EINVAL;
}

static void serve(int fd)
{
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	char line[1024], reply[8192];
	struct hb_buf b;
	size_t got = 0;
	struct timeval tv = { 2, 0 };

	hb_buf_init(&b, reply, sizeof(reply));
	if (hb_os_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
	    (cr.uid != 0 && (int)cr.uid != hb_os_geteuid())) {
		hb_buf_puts(&b, "error: permission denied\n");
		hb_os_send(fd, b.p, b.len, MSG_NOSIGNAL);
		return;
	}
	hb_os_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < sizeof(line) - 1) {
		long r = hb_os_recv(fd, line + got, sizeof(line) - 1 - got, 0);

		if (r <= 0)
			break;
		got += (size_t)r;
		if (memchr(line, '\n', got))
			break;
	}
	line[got] = 0;
	if (memchr(line, 0, got)) {
		hb_buf_puts(&b, "error: NUL in the command\n");
	} else {
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = 0;
		hb_fault_ctl_exec(line, &b);
	}
	hb_os_setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (size_t off = 0; off < b.len;) {
		long w = hb_os_send(fd, b.p + off, b.len - off, MSG_NOSIGNAL);

		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

/* A socket file of ours at the path that nobody listens on any more (an
 * earlier program image of this process, replaced by exec, bound it). */
static int stale(const struct sockaddr_un *un)
{
	struct stat st;
	long fd, r;

	if (hb_os_stat(un->sun_path, &st, 1) < 0 || !S_ISSOCK(st.st_mode) ||
	    (int)st.st_uid != hb_os_geteuid())
		return 0;
	fd = hb_os_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	r = hb_os_connect((int)fd, (const struct sockaddr *)un, sizeof(*un));
	hb_os_close((int)fd);
	return r == -ECONNREFUSED;
}

static void *ctl_main(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		long fd = hb_os_accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (fd == -EINTR || fd == -ECONNABORTED)
				continue;
			hb_os_sleep_us(100000);
			continue;
		}
		serve((int)fd);
		hb_os_close((int)fd);
	}
	return NULL;
}

static void cleanup(void)
{
	if (hb_os_getpid() == owner_pid)
		hb_os_unlink(sock_path);
}

void hb_fault_ctl_start(void)
{
	struct sockaddr_un un;
	struct hb_buf b;
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	long fd;
	int rc;

	/* "%p" is the process id (several processes of one test). */
	hb_buf_init(&b, sock_path, sizeof(sock_path));
	for (const char *p = hb_cfg.control_path; *p; p++) {
		if (p[0] == '%' && p[1] == 'p') {
			hb_buf_putu(&b, (uint64_t)hb_os_getpid());
			p++;
		} else {
			hb_buf_putc(&b, *p);
		}
	}
	hb_buf_str(&b);
	if (b.len >= sizeof(un.sun_path)) {
		hb_log(HB_LOG_WARN, "HBSHIM_CONTROL: path longer than %zu bytes: no control",
		       sizeof(un.sun_path) - 1);
		return;
	}
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	memcpy(un.sun_path, sock_path, b.len);
	fd = hb_os_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (stale(&un))
		hb_os_unlink(sock_path); /* left by an earlier image of this pid (exec) */
	if (hb_os_bind((int)fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
		hb_log(HB_LOG_WARN, "HBSHIM_CONTROL: cannot bind %s: no control", sock_path);
		hb_os_close((int)fd);
		return;
	}
	/* The peer check below holds while the mode is still the umask's. */
	hb_os_chmod(sock_path, 0600);
	owner_pid = hb_os_getpid();
	atexit(cleanup);
	if (hb_os_listen((int)fd, 8) < 0) {
		hb_os_close((int)fd);
		return;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	rc = pthread_create(&tid, &attr, ctl_main, (void *)(intptr_t)fd);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		hb_log(HB_LOG_WARN, "HBSHIM_CONTROL: cannot start its thread: no control");
		hb_os_close((int)fd);
	}
}
