/*
 * test_deadline.c - the deadline module (shim/deadline.c): the reason table
 * (event name, counter, errno, whether the shim shuts the socket down), the
 * one declare-dead path on a real loopback connection (set once, the bytes
 * of its "dead" event line, the FIN its shutdown sends, the counter of the
 * Prometheus output), the connect deadline (the due time, the dissolve of
 * an attempt through AF_UNSPEC, the blocking connect bounded against a
 * listener whose accept queue is full, so SYNs vanish; a deadline past
 * INT_MAX ms waits in bounded steps) and the idle
 * silence arithmetic.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <cmocka.h>

#include "hb.h"

/* ------------------------------------------------------------ helpers */

static char events_path[64];

struct pair {
	int lfd, cfd, sfd; /* listener, client, accepted server side */
	struct sockaddr_in la;
};

static void listen_lo(struct pair *p, int backlog)
{
	socklen_t len = sizeof(p->la);

	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(p->lfd >= 0);
	memset(&p->la, 0, sizeof(p->la));
	p->la.sin_family = AF_INET;
	p->la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&p->la, sizeof(p->la)), 0);
	assert_int_equal(listen(p->lfd, backlog), 0);
	assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&p->la, &len), 0);
}

static void pair_open(struct pair *p)
{
	listen_lo(p, 4);
	p->cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(p->cfd >= 0);
	assert_int_equal(connect(p->cfd, (struct sockaddr *)&p->la, sizeof(p->la)), 0);
	p->sfd = accept(p->lfd, NULL, NULL);
	assert_true(p->sfd >= 0);
	{
		/* A FIN that never comes fails the test, not hangs it. */
		struct timeval tv = { .tv_sec = 2 };

		assert_int_equal(setsockopt(p->sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	}
}

static void pair_close(struct pair *p)
{
	close(p->cfd);
	close(p->sfd);
	close(p->lfd);
}

static void addr_str(int fd, int peer, char *out, size_t cap)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	char ip[INET_ADDRSTRLEN];

	assert_int_equal(peer ? getpeername(fd, (struct sockaddr *)&a, &len)
			      : getsockname(fd, (struct sockaddr *)&a, &len),
			 0);
	assert_non_null(inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip)));
	snprintf(out, cap, "%s:%u", ip, ntohs(a.sin_port));
}

/* The events file's whole content (NUL-terminated) and its line count. */
static int read_events(char *buf, size_t cap)
{
	int fd = open(events_path, O_RDONLY), lines = 0;
	ssize_t n = 0;

	buf[0] = 0;
	if (fd < 0)
		return 0;
	n = read(fd, buf, cap - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = 0;
	for (ssize_t i = 0; i < n; i++)
		lines += buf[i] == '\n';
	return lines;
}

/* Line i of buf without its {"time":N, head: the rest must be exact. */
static const char *after_time(const char *buf, int i)
{
	const char *p = buf;

	while (i-- > 0) {
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
	assert_memory_equal(p, "{\"time\":", 8);
	p += 8;
	assert_true(*p >= '1' && *p <= '9');
	while (*p >= '0' && *p <= '9')
		p++;
	assert_int_equal(*p, ',');
	return p + 1;
}

static int setup(void **state)
{
	snprintf(events_path, sizeof(events_path), "/tmp/test_deadline.%d.ev", (int)getpid());
	unlink(events_path);
	memset(&hb_cfg, 0, sizeof(hb_cfg));
	hb_cfg.log_level = -1; /* nothing logged: stderr stays clean */
	hb_log_level = -1;
	snprintf(hb_cfg.events_file, sizeof(hb_cfg.events_file), "%s", events_path);
	return 0;
}

static int teardown(void **state)
{
	unlink(events_path);
	return 0;
}

/* ------------------------------------------------------------ the table */

static void test_policy_table(void **state)
{
	static const struct {
		enum hb_dead_reason why;
		const char *name;
		int stat, by_kernel;
	} want[] = {
		{ HB_DEAD_KEEPALIVE, "keepalive", HB_ST_DEAD_KEEPALIVE, 1 },
		{ HB_DEAD_IDLE, "idle", HB_ST_DEAD_IDLE, 0 },
		{ HB_DEAD_HEARTBEAT, "heartbeat", HB_ST_DEAD_HEARTBEAT, 0 },
		{ HB_DEAD_WRITE, "write", HB_ST_DEAD_WRITE, 0 },
	};

	assert_int_equal(sizeof(want) / sizeof(want[0]), HB_DEAD_NREASONS);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct hb_dead_policy *p = hb_dead_policy(want[i].why);

		assert_non_null(p);
		assert_string_equal(p->name, want[i].name);
		assert_int_equal(p->stat, want[i].stat);
		assert_int_equal(p->err, ETIMEDOUT); /* what the application's calls answer */
		assert_int_equal(p->by_kernel, want[i].by_kernel);
	}
	assert_null(hb_dead_policy(HB_DEAD_NREASONS));
	assert_null(hb_dead_policy((enum hb_dead_reason)-1));
}

/* Each reason's counter is the Prometheus line labelled with its name. */
static void test_policy_counter_label(void **state)
{
	for (int why = 0; why < HB_DEAD_NREASONS; why++) {
		const struct hb_dead_policy *p = hb_dead_policy((enum hb_dead_reason)why);
		char out[8192], want[128];
		struct hb_buf b;

		memset(hb_stats, 0, sizeof(hb_stats));
		hb_stat_add(p->stat, 7);
		hb_buf_init(&b, out, sizeof(out));
		hb_stats_render(&b);
		snprintf(want, sizeof(want), "\nhbshim_dead_peers_total{reason=\"%s\"} 7\n", p->name);
		if (!strstr(hb_buf_str(&b), want))
			fail_msg("no line %s in the stats", want + 1);
	}
	memset(hb_stats, 0, sizeof(hb_stats));
}

/* ------------------------------------------------------------ declare dead */

static void test_declare_dead_once(void **state)
{
	struct hb_conn c;
	struct pair p;
	char ev[4096], want[512], local[64], peer[64], byte;
	uint64_t idle0, hb0;

	pair_open(&p);
	memset(&c, 0, sizeof(c));
	c.mode = HB_MODE_KEEPALIVE;
	addr_str(p.cfd, 0, local, sizeof(local));
	addr_str(p.cfd, 1, peer, sizeof(peer));
	idle0 = hb_load_relaxed(&hb_stats[HB_ST_DEAD_IDLE]);
	hb0 = hb_load_relaxed(&hb_stats[HB_ST_DEAD_HEARTBEAT]);

	hb_conn_declare_dead(&c, p.cfd, HB_DEAD_IDLE, 1234);
	assert_int_equal(hb_load_acquire(&c.dead), ETIMEDOUT);
	assert_int_equal(hb_load_relaxed(&hb_stats[HB_ST_DEAD_IDLE]), idle0 + 1);
	/* Shut down, not closed: the peer reads our FIN, our reads end, and
	 * the number is still a socket. */
	assert_int_equal(recv(p.sfd, &byte, 1, 0), 0);
	assert_int_equal(recv(p.cfd, &byte, 1, MSG_DONTWAIT), 0);
	assert_true(fcntl(p.cfd, F_GETFD) >= 0);
	assert_int_equal(read_events(ev, sizeof(ev)), 1);
	snprintf(want, sizeof(want),
		 "\"event\":\"dead\",\"pid\":%d,\"fd\":%d,\"local\":\"%s\",\"peer\":\"%s\","
		 "\"mode\":\"keepalive\",\"reason\":\"idle\",\"silent_ms\":1234}\n",
		 (int)getpid(), p.cfd, local, peer);
	assert_string_equal(after_time(ev, 0), want);

	/* Once: a second verdict changes nothing, writes nothing. */
	hb_conn_declare_dead(&c, p.cfd, HB_DEAD_HEARTBEAT, 99);
	hb_conn_kernel_timed_out(&c, p.cfd);
	assert_int_equal(hb_load_acquire(&c.dead), ETIMEDOUT);
	assert_int_equal(hb_load_relaxed(&hb_stats[HB_ST_DEAD_HEARTBEAT]), hb0);
	assert_int_equal(read_events(ev, sizeof(ev)), 1);
	/* No reason at all: nothing. */
	memset(&c, 0, sizeof(c));
	hb_conn_declare_dead(&c, p.cfd, HB_DEAD_NREASONS, 1);
	assert_int_equal(hb_load_acquire(&c.dead), 0);
	assert_int_equal(read_events(ev, sizeof(ev)), 1);
	pair_close(&p);
}

/* The kernel's verdict: recorded, but the socket is left as the kernel
 * left it (no shutdown of ours: the peer sees no FIN from us). */
static void test_kernel_timed_out(void **state)
{
	struct hb_conn c;
	struct pair p;
	char ev[4096], byte;
	uint64_t ka0 = hb_load_relaxed(&hb_stats[HB_ST_DEAD_KEEPALIVE]);
	const char *line;

	pair_open(&p);
	memset(&c, 0, sizeof(c));
	c.mode = HB_MODE_KEEPALIVE;
	hb_conn_kernel_timed_out(&c, p.cfd);
	assert_int_equal(hb_load_acquire(&c.dead), ETIMEDOUT);
	assert_int_equal(hb_load_relaxed(&hb_stats[HB_ST_DEAD_KEEPALIVE]), ka0 + 1);
	errno = 0;
	assert_int_equal(recv(p.sfd, &byte, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(read_events(ev, sizeof(ev)), 1);
	line = after_time(ev, 0);
	assert_non_null(strstr(line, "\"mode\":\"keepalive\",\"reason\":\"keepalive\",\"silent_ms\":"));
	assert_string_equal(line + strlen(line) - 2, "}\n");
	pair_close(&p);
}

/* ------------------------------------------------------------ connect */

static void test_connect_due(void **state)
{
	struct hb_conn c;

	memset(&c, 0, sizeof(c));
	c.opened_ms = 1000;
	hb_cfg.connect_timeout_ms = 0;
	assert_int_equal(hb_connect_due(&c, 5000), 5000); /* off */
	hb_cfg.connect_timeout_ms = 300;
	assert_int_equal(hb_connect_due(&c, 5000), 1300);
	assert_int_equal(hb_connect_due(&c, 1200), 1200);
	assert_int_equal(hb_connect_due(&c, 1300), 1300);
}

static void test_connect_expired(void **state)
{
	struct hb_conn c;
	struct pair p;
	char ev[4096], want[512], local[64];
	uint64_t n0 = hb_load_relaxed(&hb_stats[HB_ST_DEADLINE_CONNECT]);
	int pipefd[2];

	pair_open(&p);
	memset(&c, 0, sizeof(c));
	c.mode = HB_MODE_KEEPALIVE;
	c.opened_ms = 1000;
	hb_cfg.connect_timeout_ms = 0;
	assert_int_equal(hb_connect_expired(&c, p.cfd, 1u << 30), 0); /* off */
	hb_cfg.connect_timeout_ms = 500;
	assert_int_equal(hb_connect_expired(&c, p.cfd, 1499), 0); /* not yet */
	assert_int_equal(hb_load_relaxed(&c.flags), 0);

	/* Dissolving fails (not a socket): nothing happened, nothing said. */
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(hb_connect_expired(&c, pipefd[0], 1500), 0);
	assert_int_equal(hb_load_relaxed(&c.flags) & HB_CF_CONN_EXPIRED, 0);
	assert_int_equal(hb_load_relaxed(&hb_stats[HB_ST_DEADLINE_CONNECT]), n0);
	close(pipefd[0]);
	close(pipefd[1]);
	assert_int_equal(read_events(ev, sizeof(ev)), 0);

	/* Due: AF_UNSPEC disconnects the socket (it has no peer after). */
	assert_int_equal(hb_connect_expired(&c, p.cfd, 1500), 1);
	assert_true(hb_load_relaxed(&c.flags) & HB_CF_CONN_EXPIRED);
	assert_int_equal(hb_load_relaxed(&hb_stats[HB_ST_DEADLINE_CONNECT]), n0 + 1);
	{
		struct sockaddr_in a;
		socklen_t len = sizeof(a);

		errno = 0;
		assert_int_equal(getpeername(p.cfd, (struct sockaddr *)&a, &len), -1);
		assert_int_equal(errno, ENOTCONN);
	}
	assert_int_equal(read_events(ev, sizeof(ev)), 1);
	/* The socket was asked for its peer: none left. */
	addr_str(p.cfd, 0, local, sizeof(local));
	snprintf(want, sizeof(want),
		 "\"event\":\"deadline\",\"pid\":%d,\"fd\":%d,\"local\":\"%s\",\"peer\":\"?\","
		 "\"mode\":\"keepalive\",\"kind\":\"connect\",\"timeout_ms\":500}\n",
		 (int)getpid(), p.cfd, local);
	assert_string_equal(after_time(ev, 0), want);
	pair_close(&p);
}

static int plain_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return connect(fd, sa, len);
}

/* A blocking connect whose SYN vanishes (the listener's accept queue is
 * full) fails ETIMEDOUT at the deadline, blocking again, the attempt
 * dissolved, the event naming the address it was connecting to. */
static void test_connect_bounded_times_out(void **state)
{
	struct pair p;
	struct hb_conn c;
	char ev[4096], want[512], peer[64], local[64];
	int filler, fd, r, err;
	uint64_t t0, took, n0 = hb_load_relaxed(&hb_stats[HB_ST_DEADLINE_CONNECT]);

	listen_lo(&p, 0);
	/* Backlog 0 holds one connection; the next SYNs are dropped. */
	filler = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(filler, (struct sockaddr *)&p.la, sizeof(p.la)), 0);
	{
		int f2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

		/* A second queued one, in case this kernel holds backlog + 1. */
		(void)connect(f2, (struct sockaddr *)&p.la, sizeof(p.la));
		usleep(50 * 1000);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		memset(&c, 0, sizeof(c));
		c.mode = HB_MODE_KEEPALIVE;
		hb_cfg.connect_timeout_ms = 300;
		t0 = hb_os_now_ms();
		r = hb_connect_bounded(fd, &c, (struct sockaddr *)&p.la, sizeof(p.la), plain_connect);
		err = errno;
		took = hb_os_now_ms() - t0;
		close(f2);
	}
	assert_int_equal(r, -1);
	assert_int_equal(err, ETIMEDOUT);
	if (took < 290 || took > 2000)
		fail_msg("gave up after %llu ms, want about 300", (unsigned long long)took);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0); /* blocking again */
	{
		/* Dissolved: no SYN_SENT attempt left behind. */
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);

		assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
		assert_int_equal(ti.tcpi_state, TCP_CLOSE);
	}
	assert_int_equal(hb_load_relaxed(&hb_stats[HB_ST_DEADLINE_CONNECT]), n0 + 1);
	assert_int_equal(read_events(ev, sizeof(ev)), 1);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", ntohs(p.la.sin_port));
	addr_str(fd, 0, local, sizeof(local));
	snprintf(want, sizeof(want),
		 "\"event\":\"deadline\",\"pid\":%d,\"fd\":%d,\"local\":\"%s\",\"peer\":\"%s\","
		 "\"mode\":\"keepalive\",\"kind\":\"connect\",\"timeout_ms\":300}\n",
		 (int)getpid(), fd, local, peer);
	assert_string_equal(after_time(ev, 0), want);
	close(fd);
	close(filler);
	close(p.lfd);
}

struct long_connect {
	struct sockaddr_in to;
	struct hb_conn c;
	int fd, r, err;
	volatile pid_t tid;
	volatile int done;
};

static void *long_connect_thread(void *arg)
{
	struct long_connect *lc = arg;

	lc->tid = (pid_t)syscall(SYS_gettid);
	lc->r = hb_connect_bounded(lc->fd, &lc->c, (struct sockaddr *)&lc->to, sizeof(lc->to),
				   plain_connect);
	lc->err = errno;
	lc->done = 1;
	return NULL;
}

/* A deadline past INT_MAX ms (the setting goes up to UINT32_MAX): the
 * blocking connect waits in bounded steps, never with an infinite poll.
 * The waiting thread's system call and its arguments are read from
 * /proc/self/task/TID/syscall: ppoll with a timespec of INT_MAX ms (about
 * 2147483 s), not a NULL one. The attempt is then dissolved (AF_UNSPEC, as
 * the connect deadline does) to end the wait. */
static void test_connect_bounded_long_deadline(void **state)
{
	struct pair p;
	struct long_connect lc;
	struct sockaddr un = { .sa_family = AF_UNSPEC };
	pthread_t t;
	char path[64], line[256];
	unsigned long long tsp = 0;
	long nr = -1;
	int filler, f2, seen = 0;

	listen_lo(&p, 0);
	/* Backlog 0 holds one connection (or two); the next SYNs are dropped. */
	filler = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(filler, (struct sockaddr *)&p.la, sizeof(p.la)), 0);
	f2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	(void)connect(f2, (struct sockaddr *)&p.la, sizeof(p.la));
	usleep(50 * 1000);
	memset(&lc, 0, sizeof(lc));
	lc.to = p.la;
	lc.c.mode = HB_MODE_KEEPALIVE;
	lc.fd = socket(AF_INET, SOCK_STREAM, 0);
	hb_cfg.connect_timeout_ms = UINT32_MAX;
	assert_int_equal(pthread_create(&t, NULL, long_connect_thread, &lc), 0);
	for (int i = 0; i < 200 && !lc.done; i++) {
		FILE *f;

		usleep(10 * 1000);
		if (!lc.tid)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)lc.tid);
		if (!(f = fopen(path, "r")))
			break;
		if (fgets(line, sizeof(line), f) &&
		    sscanf(line, "%ld %*s %*s %llx", &nr, &tsp) == 2 && nr == SYS_ppoll)
			seen = 1;
		fclose(f);
		if (seen)
			break;
	}
	if (seen && tsp) {
		const struct timespec *ts = (const struct timespec *)(uintptr_t)tsp;

		/* Read while the thread waits on it (nothing wakes it yet). */
		if (ts->tv_sec < INT_MAX / 1000 - 5 || ts->tv_sec > INT_MAX / 1000)
			seen = 2;
	}
	assert_int_equal(connect(lc.fd, &un, sizeof(un)), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	close(lc.fd);
	close(f2);
	close(filler);
	close(p.lfd);
	assert_int_equal(lc.r, -1); /* the dissolved attempt */
	if (!seen)
		skip(); /* no per-thread syscall file (an emulator's host view) */
	if (!tsp)
		fail_msg("the connect waits in ppoll with no timeout (infinite)");
	if (seen == 2)
		fail_msg("the connect's first wait is not INT_MAX ms");
}

/* A reachable listener: connected, blocking again, no event. */
static void test_connect_bounded_connects(void **state)
{
	struct pair p;
	struct hb_conn c;
	char ev[256];
	int fd;

	listen_lo(&p, 4);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&c, 0, sizeof(c));
	hb_cfg.connect_timeout_ms = 2000;
	assert_int_equal(hb_connect_bounded(fd, &c, (struct sockaddr *)&p.la, sizeof(p.la),
					    plain_connect),
			 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	assert_int_equal(read_events(ev, sizeof(ev)), 0);
	close(fd);
	close(p.lfd);
}

/* ------------------------------------------------------------ idle */

static void test_idle_silence(void **state)
{
	struct hb_ti ti;

	memset(&ti, 0, sizeof(ti));
	ti.tcpi_last_data_recv = 500;
	ti.tcpi_last_data_sent = 300;
	assert_int_equal(hb_idle_silence(&ti, 10000, 0), 300); /* the later of the two */
	ti.tcpi_last_data_sent = 900;
	assert_int_equal(hb_idle_silence(&ti, 10000, 0), 500);
	/* Never longer than the connection has been open. */
	assert_int_equal(hb_idle_silence(&ti, 10000, 9800), 200);
}

/* A framed connection's idle deadline: earlier than the tick's next look,
 * later, fired (0), off, dead. */
static void test_idle_frame(void **state)
{
	struct hb_conn c;
	struct pair p;
	char ev[4096];

	pair_open(&p);
	memset(&c, 0, sizeof(c));
	c.mode = HB_MODE_KEEPALIVE;
	c.opened_ms = 1000;
	c.last_app_ms = 2000;
	hb_cfg.idle_timeout_ms = 0;
	assert_int_equal(hb_idle_frame(&c, p.cfd, 2500, 9000, NULL), 9000); /* off */
	hb_cfg.idle_timeout_ms = 1000;
	assert_int_equal(hb_idle_frame(&c, p.cfd, 2500, 0, NULL), 0);      /* no next look */
	assert_int_equal(hb_idle_frame(&c, p.cfd, 2500, 9000, NULL), 3000); /* due first */
	assert_int_equal(hb_idle_frame(&c, p.cfd, 2500, 2800, NULL), 2800);
	assert_int_equal(read_events(ev, sizeof(ev)), 0);
	assert_int_equal(hb_idle_frame(&c, p.cfd, 3000, 9000, NULL), 0); /* fired */
	assert_int_equal(hb_load_acquire(&c.dead), ETIMEDOUT);
	assert_int_equal(read_events(ev, sizeof(ev)), 2);
	assert_non_null(strstr(after_time(ev, 0),
			       "\"mode\":\"keepalive\",\"kind\":\"idle\",\"silent_ms\":1000}\n"));
	assert_non_null(strstr(after_time(ev, 1),
			       "\"mode\":\"keepalive\",\"reason\":\"idle\",\"silent_ms\":1000}\n"));
	assert_memory_equal(after_time(ev, 0), "\"event\":\"deadline\"", 18);
	assert_memory_equal(after_time(ev, 1), "\"event\":\"dead\"", 14);
	/* Dead already: the tick's look stands. */
	assert_int_equal(hb_idle_frame(&c, p.cfd, 5000, 9000, NULL), 9000);
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_policy_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_counter_label, setup, teardown),
		cmocka_unit_test_setup_teardown(test_declare_dead_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_timed_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_due, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_expired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_bounded_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_bounded_connects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_bounded_long_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_silence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_frame, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
