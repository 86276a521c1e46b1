/*
 * deadline.c - the shim's verdicts on a connection: the connect deadline
 * (HBSHIM_CONNECT_TIMEOUT), the idle deadline (HBSHIM_IDLE_TIMEOUT) and the
 * one path that declares a peer dead, whoever found it: the kernel's
 * keepalive or user timeout, the idle deadline, a framed heartbeat timeout
 * or a write window that stopped moving.
 *
 * Declaring a peer dead is one step (hb_conn_declare_dead): the connection's
 * dead word is set once, to the errno every later call on it answers; the
 * socket is shut down (never closed: the number stays the application's, and
 * its blocked calls return now) unless the kernel already ended it; the
 * reason's counter goes up; the "dead" event and the log line are written.
 * What each reason means for those steps is one table (hb_dead_policy).
 *
 * A connect deadline dissolves the attempt with connect(AF_UNSPEC), the one
 * way to abandon a connect in progress without closing the application's
 * socket: on a blocking connect (done here as a non-blocking connect and a
 * poll) and on a non-blocking one still in SYN_SENT (the background thread
 * looks). A fired deadline writes the "deadline" event and counts it.
 *
 * Below the background thread and the interposers, which call it; it calls
 * only the OS layer, events, stats and the log. What it needs from above (the
 * framed notice sent before an idle death, the application's next connect)
 * comes in as a function argument.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "hb.h"

static const struct hb_dead_policy policies[HB_DEAD_NREASONS] = {
	[HB_DEAD_KEEPALIVE] = { "keepalive", HB_ST_DEAD_KEEPALIVE, ETIMEDOUT, 1 },
	[HB_DEAD_IDLE] = { "idle", HB_ST_DEAD_IDLE, ETIMEDOUT, 0 },
	[HB_DEAD_HEARTBEAT] = { "heartbeat", HB_ST_DEAD_HEARTBEAT, ETIMEDOUT, 0 },
	[HB_DEAD_WRITE] = { "write", HB_ST_DEAD_WRITE, ETIMEDOUT, 0 },
};

const struct hb_dead_policy *hb_dead_policy(enum hb_dead_reason why)
{
	return (unsigned)why < HB_DEAD_NREASONS ? &policies[why] : NULL;
}

void hb_conn_declare_dead(struct hb_conn *c, int fd, enum hb_dead_reason why,
			  uint64_t silent_ms)
{
	const struct hb_dead_policy *p = hb_dead_policy(why);
	int expect = 0;

	if (!p || !hb_cas_strong_acq_rel(&c->dead, &expect, p->err))
		return;
	if (!p->by_kernel)
		hb_os_shutdown(fd, SHUT_RDWR);
	hb_stat_add(p->stat, 1);
	hb_event_conn("dead", fd, c, NULL, 0,
		      HB_EV_FIELDS(HB_EV_STR("reason", p->name), HB_EV_NUM("silent_ms", silent_ms)));
	if (p->by_kernel)
		hb_log(HB_LOG_INFO, "fd %d: peer declared dead by the kernel (keepalive/user timeout)",
		       fd);
	else
		hb_log(HB_LOG_INFO, "fd %d: peer declared dead (%s, silent %llu ms)", fd, p->name,
		       (unsigned long long)silent_ms);
}

void hb_conn_kernel_timed_out(struct hb_conn *c, int fd)
{
	struct hb_tcp_info x;

	if (hb_load_acquire(&c->dead))
		return; /* recorded once; spares the TCP_INFO call */
	hb_conn_declare_dead(c, fd, HB_DEAD_KEEPALIVE,
			     hb_os_tcp_info(fd, &x) == 0 ? x.ti.tcpi_last_data_recv : 0);
}

/* ------------------------------------------------------------ connect */

uint64_t hb_connect_due(const struct hb_conn *c, uint64_t next)
{
	uint64_t dl = c->opened_ms + hb_cfg.connect_timeout_ms;

	return hb_cfg.connect_timeout_ms && dl < next ? dl : next;
}

/* Abandon the connect in progress on fd: 0, or -errno. */
static long dissolve(int fd)
{
	struct sockaddr un = { .sa_family = AF_UNSPEC };

	return hb_os_connect(fd, &un, sizeof(un));
}

/* The connect deadline fired on fd: stat, event, log. sa: the address being
 * connected to, or NULL (the socket is asked). */
static void connect_fired(struct hb_conn *c, int fd, const struct sockaddr *sa, socklen_t len)
{
	hb_stat_add(HB_ST_DEADLINE_CONNECT, 1);
	hb_event_conn("deadline", fd, c, sa, len,
		      HB_EV_FIELDS(HB_EV_STR("kind", "connect"),
				   HB_EV_NUM("timeout_ms", hb_cfg.connect_timeout_ms)));
	hb_log(HB_LOG_INFO, "fd %d: connect deadline (%llu ms) fired", fd,
	       (unsigned long long)hb_cfg.connect_timeout_ms);
}

int hb_connect_expired(struct hb_conn *c, int fd, uint64_t now)
{
	if (!hb_cfg.connect_timeout_ms || now < c->opened_ms + hb_cfg.connect_timeout_ms)
		return 0;
	/* The kernel reports ECONNRESET for the dissolved attempt; the
	 * interposers see this flag and say ETIMEDOUT. */
	hb_or_acq_rel(&c->flags, HB_CF_CONN_EXPIRED);
	if (dissolve(fd) < 0) {
		hb_and_acq_rel(&c->flags, ~HB_CF_CONN_EXPIRED);
		return 0;
	}
	connect_fired(c, fd, NULL, 0);
	return 1;
}


int hb_connect_bounded(int fd, struct hb_conn *c, const struct sockaddr *sa, socklen_t len,
		       hb_connect_fn *next_connect)
{
	long fl = hb_os_fcntl(fd, F_GETFL, 0);
	uint64_t start = hb_os_now_ms(), limit = hb_cfg.connect_timeout_ms, app_limit = 0;
	int r, err;

	if (fl < 0 || (fl & O_NONBLOCK))
		return next_connect(fd, sa, len);
	if (hb_load_relaxed(&c->flags) & HB_APP_SNDTIMEO)
		app_limit = hb_load_relaxed(&c->sndtimeo_ms);
	hb_os_fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	r = next_connect(fd, sa, len);
	if (r == 0 || (errno != EINPROGRESS && errno != EALREADY)) {
		err = errno;
		hb_os_fcntl(fd, F_SETFL, fl);
		errno = err;
		return r;
	}
	for (;;) {
		uint64_t now = hb_os_now_ms(), until = start + limit;
		short rev = 0;
		long pr;

		if (app_limit && start + app_limit < until)
			until = start + app_limit;
		/* A wait past INT_MAX ms is made in steps: poll would read
		 * its negative int as "forever". */
		pr = hb_os_poll1(fd, POLLOUT,
				 now >= until ? 0 : until - now > INT_MAX ? INT_MAX : (int)(until - now),
				 &rev);
		if (pr > 0) {
			socklen_t el = sizeof(err);

			err = 0;
			hb_os_getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
			hb_os_fcntl(fd, F_SETFL, fl);
			if (err) {
				errno = err;
				return -1;
			}
			return 0;
		}
		if (pr == -EINTR) {
			if (hb_proc_handlers_restart())
				continue;
			hb_os_fcntl(fd, F_SETFL, fl);
			errno = EINTR;
			return -1;
		}
		if (pr < 0 && pr != -EAGAIN) {
			hb_os_fcntl(fd, F_SETFL, fl);
			errno = (int)-pr;
			return -1;
		}
		if (hb_os_now_ms() < until)
			continue;
		hb_os_fcntl(fd, F_SETFL, fl);
		if (app_limit && app_limit < limit) {
			/* The application's own SO_SNDTIMEO expired first: the
			 * kernel answers EINPROGRESS in that case. */
			errno = EINPROGRESS;
			return -1;
		}
		/* Our deadline: abandon the attempt. */
		dissolve(fd);
		connect_fired(c, fd, sa, len);
		errno = ETIMEDOUT;
		return -1;
	}
}

/* ------------------------------------------------------------ idle */

uint64_t hb_idle_silence(const struct hb_ti *ti, uint64_t now, uint64_t opened_ms)
{
	uint64_t idle = ti->tcpi_last_data_recv < ti->tcpi_last_data_sent ? ti->tcpi_last_data_recv
									   : ti->tcpi_last_data_sent;

	return now - opened_ms < idle ? now - opened_ms : idle;
}

/* The idle deadline fired after idle ms of silence: stat, event, the framed
 * notice (sent before the shutdown that declaring dead does), then dead. */
static void idle_fired(struct hb_conn *c, int fd, uint64_t idle, hb_notice_fn *notice)
{
	hb_stat_add(HB_ST_DEADLINE_IDLE, 1);
	hb_event_conn("deadline", fd, c, NULL, 0,
		      HB_EV_FIELDS(HB_EV_STR("kind", "idle"), HB_EV_NUM("silent_ms", idle)));
	if (c->mode == HB_MODE_FRAME && notice)
		notice(c, fd, HB_NR_IDLE, (uint32_t)idle);
	hb_conn_declare_dead(c, fd, HB_DEAD_IDLE, idle);
}

uint64_t hb_idle_check(struct hb_conn *c, int fd, uint64_t now, hb_notice_fn *notice)
{
	struct hb_tcp_info x;
	const struct hb_ti *ti = &x.ti;
	uint64_t idle, limit = hb_cfg.idle_timeout_ms;

	if (hb_os_tcp_info(fd, &x) < 0)
		return 0;
	if (ti->tcpi_state != TCP_ESTABLISHED && ti->tcpi_state != TCP_CLOSE_WAIT)
		return 0; /* closing or closed: nothing left to guard */
	idle = hb_idle_silence(ti, now, c->opened_ms);
	if (idle >= limit) {
		idle_fired(c, fd, idle, notice);
		return 0;
	}
	return now + (limit - idle);
}

uint64_t hb_idle_frame(struct hb_conn *c, int fd, uint64_t now, uint64_t next,
		       hb_notice_fn *notice)
{
	uint64_t last, idle, limit = hb_cfg.idle_timeout_ms;

	if (!next || !limit || hb_load_acquire(&c->dead))
		return next;
	last = c->last_app_ms > c->opened_ms ? c->last_app_ms : c->opened_ms;
	idle = now > last ? now - last : 0;
	if (idle >= limit) {
		idle_fired(c, fd, idle, notice);
		return 0;
	}
	return last + limit < next ? last + limit : next;
}
