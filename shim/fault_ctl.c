/*
 * fault_ctl.c - HBSHIM_CONTROL: live control of the fault rules.
 *
 * A UNIX stream socket at the configured path ("%p" = the process id),
 * mode 0600, made by the constructor and served by the background thread:
 * init.c registers hb_fault_ctl_step as its periodic step, which never
 * waits (a non-blocking listener and clients, a bounded amount of work per
 * step), so a slow or silent client cannot delay a heartbeat. Each
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

/*
 * The clients being served: at most CLIENTS at a time, each with its command
 * line as read so far and its answer as written so far. Background thread
 * only (the step below); nothing here ever waits on a client.
 */
#define CLIENTS 4
#define CLIENT_SILENCE_MS 2000 /* a client that makes no progress this long is dropped */
#define ACCEPTS_PER_STEP 4

struct client {
	int fd;           /* -1: slot free */
	dev_t dev;        /* the accepted socket's identity: never touch a */
	ino_t ino;        /* number the application may have reused */
	uint64_t last_ms; /* last progress (accept, bytes read or written) */
	size_t got;       /* command bytes read */
	size_t sent;      /* answer bytes written; the answer is complete when answering */
	int answering;
	struct hb_buf out;
	char line[1024];
	char reply[8192];
};

static struct client clients[CLIENTS];
static int listen_fd = -1;
static dev_t listen_dev;
static ino_t listen_ino;

static int still_ours(int fd, dev_t dev, ino_t ino)
{
	struct stat st;

	return hb_os_fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

static void drop(struct client *cl)
{
	if (still_ours(cl->fd, cl->dev, cl->ino))
		hb_os_close(cl->fd);
	cl->fd = -1;
}

/* The command line is complete (a newline, EOF or a full buffer): run it. */
static void answer(struct client *cl)
{
	cl->line[cl->got] = 0;
	if (memchr(cl->line, 0, cl->got)) {
		hb_buf_puts(&cl->out, "error: NUL in the command\n");
	} else {
		char *nl = strchr(cl->line, '\n');

		if (nl)
			*nl = 0;
		hb_fault_ctl_exec(cl->line, &cl->out);
	}
	cl->answering = 1;
}

/* Read what is there and write what fits, without waiting. */
static void progress(struct client *cl, uint64_t now)
{
	if (!still_ours(cl->fd, cl->dev, cl->ino)) {
		cl->fd = -1; /* closed under us (close_range): the number is not ours */
		return;
	}
	while (!cl->answering) {
		long r = hb_os_recv(cl->fd, cl->line + cl->got, sizeof(cl->line) - 1 - cl->got,
				    MSG_DONTWAIT);

		if (r == -EINTR)
			continue;
		if (r == -EAGAIN) {
			if (now - cl->last_ms >= CLIENT_SILENCE_MS)
				drop(cl);
			return;
		}
		if (r > 0) {
			cl->got += (size_t)r;
			cl->last_ms = now;
		}
		if (r <= 0 || memchr(cl->line, '\n', cl->got) || cl->got == sizeof(cl->line) - 1)
			answer(cl);
	}
	while (cl->sent < cl->out.len) {
		long w = hb_os_send(cl->fd, cl->out.p + cl->sent, cl->out.len - cl->sent,
				    MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w == -EINTR)
			continue;
		if (w == -EAGAIN) {
			if (now - cl->last_ms >= CLIENT_SILENCE_MS)
				drop(cl); /* not reading its answer: it has what was sent */
			return;
		}
		if (w <= 0)
			break;
		cl->sent += (size_t)w;
		cl->last_ms = now;
	}
	drop(cl);
}

static void admit(int fd, uint64_t now)
{
	struct client *cl = NULL;
	struct ucred cr;
	socklen_t crl = sizeof(cr);
	struct stat st;

	for (int i = 0; i < CLIENTS && !cl; i++)
		if (clients[i].fd < 0)
			cl = &clients[i];
	if (!cl || hb_os_fstat(fd, &st) < 0) {
		hb_os_close(fd);
		return;
	}
	cl->fd = fd;
	cl->dev = st.st_dev;
	cl->ino = st.st_ino;
	cl->last_ms = now;
	cl->got = cl->sent = 0;
	cl->answering = 0;
	hb_buf_init(&cl->out, cl->reply, sizeof(cl->reply));
	if (hb_os_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0 ||
	    (cr.uid != 0 && (int)cr.uid != hb_os_geteuid())) {
		hb_buf_puts(&cl->out, "error: permission denied\n");
		cl->answering = 1;
	}
	progress(cl, now);
}

void hb_fault_ctl_step(uint64_t now)
{
	int busy = 0;

	/* A forked child: the socket is its parent's to serve (and this
	 * process writes nothing here: it may share the parent's memory). */
	if (listen_fd < 0 || hb_os_getpid() != owner_pid)
		return;
	if (!still_ours(listen_fd, listen_dev, listen_ino)) {
		listen_fd = -1; /* the application closed our descriptor: serve no more */
		return;
	}
	for (int i = 0; i < CLIENTS; i++)
		if (clients[i].fd >= 0)
			progress(&clients[i], now);
	for (int i = 0; i < CLIENTS; i++)
		busy += clients[i].fd >= 0;
	/* New clients only while a slot is free: the rest wait in the backlog. */
	for (int n = 0; n < ACCEPTS_PER_STEP && busy < CLIENTS; n++) {
		long fd = hb_os_accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd == -EINTR || fd == -ECONNABORTED)
			continue;
		if (fd < 0)
			break;
		admit((int)fd, now);
		busy = 0;
		for (int i = 0; i < CLIENTS; i++)
			busy += clients[i].fd >= 0;
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

static void cleanup(void)
{
	if (hb_os_getpid() == owner_pid)
		hb_os_unlink(sock_path);
}

int hb_fault_ctl_start(void)
{
	struct sockaddr_un un;
	struct hb_buf b;
	struct stat st;
	long fd;

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
		return -1;
	}
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	memcpy(un.sun_path, sock_path, b.len);
	fd = hb_os_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (stale(&un))
		hb_os_unlink(sock_path); /* left by an earlier image of this pid (exec) */
	if (hb_os_bind((int)fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
		hb_log(HB_LOG_WARN, "HBSHIM_CONTROL: cannot bind %s: no control", sock_path);
		hb_os_close((int)fd);
		return -1;
	}
	/* admit()'s peer check holds while the mode is still the umask's. */
	hb_os_chmod(sock_path, 0600);
	owner_pid = hb_os_getpid();
	atexit(cleanup);
	if (hb_os_listen((int)fd, 8) < 0 || hb_os_fstat((int)fd, &st) < 0) {
		hb_os_close((int)fd);
		return -1;
	}
	for (int i = 0; i < CLIENTS; i++)
		clients[i].fd = -1;
	listen_dev = st.st_dev;
	listen_ino = st.st_ino;
	listen_fd = (int)fd;
	return 0;
}
