/*
 * linger.c - the lingering close and the wait at exit.
 *
 * A closed framed socket would answer the peer's late heartbeats with a
 * reset that destroys our unsent data: the close keeps it open on a
 * private duplicate that the background thread drains until the peer
 * stopped (hb_frame_linger_tick). A process that exits with data still
 * queued waits, bounded, until it is acknowledged (hb_frame_at_exit).
 */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include "hb.h"
#include "frame_int.h"

/* Reads per lingering-close tick (of 2 KiB each): a peer that sends control
 * frames as fast as it can must not hold the background thread here. */
#define LINGER_READS 16

int hb_frame_linger(struct hb_conn *c, int fd)
{
	unsigned long nofile;
	struct hb_conn *l;
	long nfd, base = 256;

	/* Our FIN must go out with the close, so the shim shuts the socket
	 * down itself; that is only right when no other process holds it. */
	if ((hb_load_relaxed(&c->flags) & HB_APP_LINGER) || !hb_may_act_on_rx(c) || !hb_enabled)
		return 0;
	if (hb_load_acquire(&c->rxmode) == HB_RX_FAILED || hb_load_acquire(&c->dead))
		return 0;
	/* Another thread inside a call on the connection (blocked in the
	 * kernel, typically): the kernel keeps the socket open until that
	 * call returns, and its close sends no FIN meanwhile. Ours would
	 * wake a blocked writer with EPIPE (and cut its frame short): the
	 * close is the kernel's own. */
	if (hb_load_acquire(&c->users))
		return 0;
	/* Only a peer that speaks hbshim sends heartbeats that could reach a
	 * closed socket. Toward any other peer the close is the kernel's own:
	 * no FIN of ours that a process forked without our knowledge (a raw
	 * clone, as vsftpd makes) would see on a socket it still uses. */
	if (hb_load_acquire(&c->rxmode) != HB_RX_FRAMED &&
	    !(hb_load_acquire(&c->rxmode) == HB_RX_DETECT && c->client &&
	      hb_load_acquire(&c->txmode) == HB_TX_FRAMED))
		return 0;
	/* (A client whose hello went out closes before the peer's came: a
	 * server busy with other connections accepts it later, and its hello
	 * and heartbeats would meet a closed socket, whose reset destroys
	 * what the server has not read yet. The lingering socket takes that
	 * hello: linger_hello.) */
	/* Whatever is still queued (a heartbeat that came after the close's
	 * drain, or unread application bytes) goes to the lingering socket:
	 * heartbeats are absorbed there, application bytes reset the
	 * connection as the kernel's close would have. Deciding here on the
	 * queue's length made a heartbeat arriving in between turn a clean
	 * close into a reset (curl lost the end of a 5 MB answer at 1 ms
	 * heartbeats, under load). */
	/* Out of the application's epoll sets, as its close would have
	 * taken it: our duplicate keeps the socket alive. (A socket another
	 * process holds too stays in them after a close anyway.) */
	if (!(hb_load_relaxed(&c->flags) & HB_CF_SHARED) && hb_epoll_detach(fd) < 0)
		return 0;
	/* A number far from the low ones the application expects to get
	 * back from its next open() or socket(). */
	if (hb_os_nofile_limit(&nofile) == 0 && nofile > 512)
		base = (long)(nofile / 2);
	nfd = hb_os_fcntl(fd, F_DUPFD_CLOEXEC, base);
	if (nfd < 0)
		return 0;
	l = hb_conn_alloc();
	if (!l) {
		hb_os_close((int)nfd);
		return 0;
	}
	l->mode = HB_MODE_FRAME;
	l->kind = HB_KIND_LINGER;
	l->cookie = c->cookie;
	l->family = c->family;
	l->rx = c->rx;
	l->peer_interval_ms = c->peer_interval_ms;
	hb_store_relaxed(&l->rxmode, hb_load_relaxed(&c->rxmode));
	hb_store_relaxed(&l->txmode, HB_TX_RAW);
	l->opened_ms = hb_os_now_ms();
	if (hb_fd_install((int)nfd, l) < 0) {
		hb_conn_free(l);
		hb_os_close((int)nfd);
		return 0;
	}
	/* Our FIN goes now, behind whatever is still queued, exactly as the
	 * application's close would have sent it. The encoder's pending
	 * bytes are txlock's (the background thread may be sending a
	 * heartbeat); an application writer that started after the check
	 * above is inside a frame: they cannot go then. */
	if (hb_may_act_on_tx(c) && hb_lock_unless_app(&c->txlock)) {
		hb_frame_flush_pend(c, fd);
		hb_unlock(&c->txlock);
	}
	hb_os_shutdown((int)nfd, SHUT_WR);
	hb_thread_schedule(l);
	return 1;
}

/* A lingering client's socket whose peer's hello had not come at the
 * close: 1 when a complete hello was queued (now consumed), 0 when only a
 * prefix of one is (or nothing), -1 when the bytes are something else.
 * Background thread, the private fd. */
static int linger_hello(int fd)
{
	uint8_t p[HB_HELLO_LEN];
	long r = hb_os_recv(fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);
	int cls;

	if (r <= 0)
		return r == 0 ? -1 : 0; /* the FIN (the loop below sees it), or nothing yet */
	cls = hb_hello_classify(p, (size_t)r, NULL);
	if (cls == 1)
		return hb_os_recv(fd, p, sizeof(p), MSG_DONTWAIT) == HB_HELLO_LEN ? 1 : -1;
	return cls == 0 ? 0 : -1;
}

uint64_t hb_frame_linger_tick(struct hb_conn *c, int fd, uint64_t now)
{
	uint8_t buf[2048];
	struct hb_tcp_info x;
	uint64_t cap = 2ull * hb_cfg.timeout_ms;

	if (cap < 1000)
		cap = 1000;
	/* At most LINGER_READS reads per tick (32 KiB every 10 ms, far more
	 * than any peer's heartbeats): a peer that keeps sending control
	 * frames as fast as the network allows must not hold the background
	 * thread (every other connection's heartbeats) here; its window
	 * closes instead, and the limits below are checked on every tick. */
	for (int reads = 0; reads < LINGER_READS; reads++) {
		long r;
		ssize_t app;

		if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT) {
			int cls = linger_hello(fd);

			if (cls == 0)
				break; /* a prefix of a hello: more is due */
			if (cls > 0) {
				memset(&c->rx, 0, sizeof(c->rx));
				hb_store_relaxed(&c->rxmode, HB_RX_FRAMED);
				continue;
			}
			/* Not a hello: the bytes are application data. */
		}
		r = hb_os_recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r == 0) {
			hb_log(HB_LOG_DEBUG, "fd %d: linger ends: peer's FIN", fd);
			return 0; /* the peer's FIN: done */
		}
		if (r < 0)
			break;
		app = hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED
			      ? hb_rx_decode(&c->rx, buf, (size_t)r, NULL)
			      : r;
		if (app != 0) {
			/* Application data for a closed socket: reset, as the
			 * kernel would have. */
			struct linger lg = { 1, 0 };

			hb_log(HB_LOG_DEBUG, "fd %d: linger ends: %ld application bytes after close",
			       fd, (long)app);
			hb_os_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			return 0;
		}
	}
	if (hb_os_tcp_info(fd, &x) < 0 || x.ti.tcpi_state == TCP_CLOSE || x.ti.tcpi_state == TCP_TIME_WAIT)
		return 0;
	/* Done when the peer's FIN came (above), or when our FIN has been
	 * acknowledged for longer than the peer needs to notice it and stop
	 * its heartbeats: one of its intervals plus a few round trips. */
	{
		int outq = 1;
		uint64_t quiet = 2ull * (c->peer_interval_ms ? c->peer_interval_ms : hb_cfg.interval_ms) +
				 4ull * x.ti.tcpi_rtt / 1000 + 20;

		hb_os_ioctl(fd, SIOCOUTQ, &outq); /* unacknowledged + unsent */
		if (outq)
			c->last_app_ms = 0;
		else if (!c->last_app_ms)
			c->last_app_ms = now; /* our FIN acknowledged from here */
		else if (now - c->last_app_ms > quiet) {
			hb_log(HB_LOG_DEBUG, "fd %d: linger ends: FIN acknowledged %llu ms ago", fd,
			       (unsigned long long)(now - c->last_app_ms));
			return 0;
		}
		if (now - c->opened_ms > cap && !outq && now - c->last_app_ms > quiet / 2)
			return 0;
	}
	if (now - c->opened_ms > 60000)
		return 0;
	return now + 10;
}

static void drop_linger(int fd, struct hb_conn *c, void *arg)
{
	if (c->kind == HB_KIND_LINGER && hb_fd_forget(fd))
		hb_os_close(fd);
}

void hb_frame_linger_drop_all(void)
{
	hb_fd_foreach(drop_linger, NULL);
}

struct exit_ctx {
	int pending;
	uint64_t now;
	uint32_t rtt_ms;
};

static void exit_visit(int fd, struct hb_conn *c, void *arg)
{
	struct exit_ctx *x = arg;
	int outq = 0;

	hb_dg_follow_family(c, fd);
	if (c->mode != HB_MODE_FRAME || (hb_load_relaxed(&c->flags) & HB_CF_LOST) ||
	    (!hb_may_act_on_rx(c) && !hb_may_act_on_tx(c)) ||
	    (c->kind != HB_KIND_CONNECTED && c->kind != HB_KIND_LINGER) ||
	    hb_load_relaxed(&c->dead))
		return;
	/* Data of ours still queued is what the wait is for: only the process
	 * that writes waits; only the one that reads drains. */
	if (!hb_may_act_on_tx(c) || hb_os_ioctl(fd, SIOCOUTQ, &outq) < 0)
		outq = 0;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED && hb_may_act_on_rx(c) && hb_trylock(&c->rxlock)) {
		hb_frame_drain(c, fd);
		hb_unlock(&c->rxlock);
	}
	if (outq > 0) {
		struct hb_tcp_info ti;

		x->pending++;
		if (hb_os_tcp_info(fd, &ti) == 0 && ti.ti.tcpi_rtt / 1000 > x->rtt_ms)
			x->rtt_ms = ti.ti.tcpi_rtt / 1000;
	}
}

void hb_frame_at_exit(void)
{
	uint64_t start = hb_os_now_ms(), done_at = 0;
	uint64_t limit = hb_cfg.timeout_ms < 3000 ? hb_cfg.timeout_ms : 3000;
	uint32_t rtt = 0;

	/* A process that exits with data still queued on a framed connection
	 * leaves an orphaned socket that the kernel keeps sending from; a
	 * heartbeat the peer sends meanwhile would draw a reset that destroys
	 * the rest. Stay until it is all acknowledged (bounded by the
	 * timeout, and by 3 s), then a few round trips more for heartbeats
	 * in flight. */
	for (;;) {
		struct exit_ctx x = { 0, hb_os_now_ms(), 0 };

		hb_fd_foreach(exit_visit, &x);
		if (x.rtt_ms > rtt)
			rtt = x.rtt_ms;
		if (x.pending)
			done_at = 0;
		else if (!done_at)
			done_at = x.now;
		if (!x.pending && (!done_at || x.now - start == 0 || x.now >= done_at + 2 * rtt + 5))
			break;
		if (x.now - start >= limit)
			break;
		hb_os_sleep_us(1000);
	}
}
