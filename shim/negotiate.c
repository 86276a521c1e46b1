/*
 * negotiate.c - the hello exchange that decides each direction's mode.
 *
 * Each direction of a connection is raw or framed on its own (PROTOCOL.md):
 *   - a client whose peer matches HBSHIM_FRAME frames its direction from
 *     the first byte (a hello) and detects the server's;
 *   - an accepting side (HBSHIM_ACCEPT=auto) detects the client's hello and
 *     frames its own direction only once that hello arrived; a server that
 *     writes first waits a short bounded time for it, then stays raw.
 * The interposers start negotiation (hb_frame_client, _server, _accepted,
 * _connected); the framed paths ask whether a direction is decided and
 * never decide it themselves. Answering may send our hello, set
 * TCP_QUICKACK and report the "framed" event: that is this file's job.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "hb.h"
#include "frame_int.h"

#define SERVER_WAIT_MAX_MS 200

#define SERVER_WAIT_MIN_MS 2

/* Both directions raw: the connection is plain keepalive mode after all. */
static void keepalive_if_both_raw(struct hb_conn *c)
{
	if (c->mode == HB_MODE_FRAME && hb_load_relaxed(&c->rxmode) == HB_RX_RAW &&
	    hb_load_relaxed(&c->txmode) == HB_TX_RAW) {
		c->mode = HB_MODE_KEEPALIVE; /* it was counted as keepalive all along */
	}
}

static void apply_frame_keepalive(int fd, struct hb_conn *c)
{
	/* The looser backstop values: kernel keepalive must never fire before
	 * the heartbeat timeout does. */
	if (!(hb_load_relaxed(&c->flags) & HB_APP_KEEPIDLE))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, hb_ka_frame_cfg.idle_s);
	if (!(hb_load_relaxed(&c->flags) & HB_APP_KEEPINTVL))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, hb_ka_frame_cfg.intvl_s);
	if (!(hb_load_relaxed(&c->flags) & HB_APP_KEEPCNT))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, hb_ka_frame_cfg.cnt);
	if (!(hb_load_relaxed(&c->flags) & HB_APP_USERTIMEOUT))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT,
				     (int)hb_ka_frame_cfg.user_timeout_ms);
}

/* Queue our hello in the encoder (txlock held); it leaves with the next
 * bytes, or now from the background thread. */
static void queue_hello(struct hb_conn *c)
{
	struct hb_hello h = { HB_PROTO_VERSION, HB_HF_PACED | HB_HF_DOWNGRADE, hb_cfg.interval_ms,
			      hb_cfg.timeout_ms };

	if (c->hello_sent)
		return;
	hb_hello_encode(c->tx.pend, &h);
	c->tx.pend_len = HB_HELLO_LEN;
	c->hello_sent = 1;
}

void hb_frame_client(int fd, struct hb_conn *c, int established)
{
	c->mode = HB_MODE_FRAME;
	c->client = 1;
	hb_store_relaxed(&hb_frame_seen, 1);
	hb_store_relaxed(&c->rxmode, HB_RX_DETECT);
	hb_store_relaxed(&c->txmode, HB_TX_FRAMED);
	apply_frame_keepalive(fd, c);
	hb_frame_set_lowat(c, fd);
	if (hb_lock(&c->txlock) == 0) {
		queue_hello(c);
		if (established)
			hb_frame_flush_pend(c, fd);
		hb_unlock(&c->txlock);
	}
}

/* The application saw its non-blocking connect complete: send our hello
 * if it is still queued. */
void hb_frame_connected(struct hb_conn *c, int fd)
{
	if (!c->tx.pend_len || hb_load_acquire(&c->txmode) != HB_TX_FRAMED || !hb_trylock(&c->txlock))
		return;
	hb_frame_flush_pend(c, fd);
	hb_unlock(&c->txlock);
}

void hb_frame_server(int fd, struct hb_conn *c)
{
	c->mode = HB_MODE_FRAME;
	hb_store_relaxed(&c->rxmode, HB_RX_DETECT);
	hb_store_relaxed(&c->txmode, HB_TX_UNDECIDED);
	hb_store_relaxed(&hb_frame_seen, 1);
}

static int detect(struct hb_conn *c, int fd, int wait);

void hb_frame_accepted(int fd, struct hb_conn *c)
{
	/* A shimmed client's hello is usually there already: decide now, so
	 * that it never wakes the application on its own. */
	if (hb_lock(&c->rxlock) == 0) {
		detect(c, fd, 0);
		hb_frame_set_lowat(c, fd);
		hb_unlock(&c->rxlock);
	}
}

/* The peer's direction turned out raw or framed; decide ours if it still
 * waits (server side). tx is try-locked: a writer holding it has already
 * decided. */
static void decide_tx(struct hb_conn *c, int fd, int framed)
{
	if (hb_load_acquire(&c->txmode) != HB_TX_UNDECIDED || !hb_trylock(&c->txlock))
		return;
	if (hb_load_relaxed(&c->txmode) == HB_TX_UNDECIDED) {
		if (framed) {
			queue_hello(c);
			hb_frame_flush_pend(c, fd);
			hb_frame_quickack(fd);
			hb_store_release(&c->txmode, HB_TX_FRAMED);
		} else {
			hb_store_release(&c->txmode, HB_TX_RAW);
		}
	}
	hb_unlock(&c->txlock);
}

/* The peer's direction is raw (rxlock held). */
static int peer_raw(struct hb_conn *c, int fd)
{
	hb_store_release(&c->rxmode, HB_RX_RAW);
	decide_tx(c, fd, 0);
	keepalive_if_both_raw(c);
	hb_frame_set_lowat(c, fd);
	return 0;
}

static _Atomic int slow_peer_warned, strict_peer_warned;

/* Settings that cannot keep an idle connection alive: said once per process
 * (a server may accept thousands of connections from the same peer). */
static void warn_mismatch(struct hb_conn *c, int fd, const struct hb_hello *h)
{
	if (2ull * c->peer_interval_ms > hb_cfg.timeout_ms && !hb_xchg_acq_rel(&slow_peer_warned, 1))
		hb_log(HB_LOG_WARN,
		       "fd %d: the peer heartbeats every %u ms%s, our timeout is %u ms: "
		       "an idle peer may be declared dead",
		       fd, c->peer_interval_ms,
		       (h->flags & HB_HF_PACED) ? "" : " (an hbshim that does not pace)",
		       hb_cfg.timeout_ms);
	if ((uint64_t)HB_PACE_DIV * hb_pace_interval(hb_cfg.interval_ms, h->timeout_ms) >
	    h->timeout_ms && !hb_xchg_acq_rel(&strict_peer_warned, 1))
		hb_log(HB_LOG_WARN,
		       "fd %d: the peer's timeout is %u ms, we heartbeat every %u ms: "
		       "it may declare us dead when idle",
		       fd, h->timeout_ms, hb_pace_interval(hb_cfg.interval_ms, h->timeout_ms));
}

/* The peer's direction is framed from here (rxlock held): its figures
 * (peer_interval_ms: how often it heartbeats toward us), a fresh decoder,
 * the counters, the low-water mark between frames and, on a server, the
 * framed keepalive settings. */
static void rx_framed(struct hb_conn *c, int fd, uint32_t interval_ms, uint32_t timeout_ms,
		      uint8_t dg)
{
	c->peer_interval_ms = interval_ms;
	c->peer_timeout_ms = timeout_ms;
	c->peer_dg = dg;
	memset(&c->rx, 0, sizeof(c->rx));
	if (hb_conn_public_mode(c) != HB_MODE_FRAME) {
		hb_stat_add(HB_ST_CONN_KEEPALIVE, -1);
		hb_stat_add(HB_ST_CONN_FRAME, 1);
	}
	hb_store_release(&c->rxmode, HB_RX_FRAMED);
	hb_store_relaxed(&hb_frame_seen, 1);
	hb_frame_set_lowat(c, fd);
	if (!c->client)
		apply_frame_keepalive(fd, c);
}

/* A complete hello h is at the head of the queue: take it, and the peer's
 * direction is framed; ours follows (server side). rxlock held; 0. */
static int peer_framed(struct hb_conn *c, int fd, const struct hb_hello *h)
{
	uint8_t p[HB_HELLO_LEN];

	if (hb_frame_own_recv(c, fd, p, HB_HELLO_LEN, MSG_DONTWAIT) != HB_HELLO_LEN) {
		hb_frame_protocol_error(c, fd, ECONNRESET, "hello");
		return 0;
	}
	/* peer_interval_ms: how often the peer heartbeats toward us. A pacing
	 * peer shortens its interval for our timeout exactly as we do for
	 * its; an older one keeps its own, and our timeout applies all the
	 * same. */
	hb_or_acq_rel(&c->flags, HB_CF_QUICKACK);
	rx_framed(c, fd,
		  (h->flags & HB_HF_PACED) ? hb_pace_interval(h->interval_ms, hb_cfg.timeout_ms)
					   : h->interval_ms,
		  h->timeout_ms, !!(h->flags & HB_HF_DOWNGRADE));
	decide_tx(c, fd, 1);
	hb_share_hello_publish(c);
	hb_log(HB_LOG_DEBUG, "fd %d: peer speaks hbshim v%u (interval %u ms)", fd, h->version,
	       h->interval_ms);
	warn_mismatch(c, fd, h);
	hb_event_conn("framed", fd, c, NULL, 0,
		      HB_EV_FIELDS(HB_EV_NUM("peer_interval_ms", h->interval_ms),
				   HB_EV_NUM("peer_timeout_ms", h->timeout_ms)));
	return 0;
}

/* The peer's hello as another process of the fork family took it
 * (share.c), for a shared copy of c whose stream that process has not
 * downgraded since: 1 and *h. */
static int family_hello(const struct hb_conn *c, struct hb_share_hello *h)
{
	return (hb_load_relaxed(&c->flags) & HB_CF_SHARED) && hb_share_hello_find(c->cookie, h) &&
	       h->txmode != HB_TX_UNDECIDED && !hb_dg_published(c->cookie);
}

/* Our direction as that process decided it; its hello went out from there
 * (txlock held, txmode undecided). */
static void tx_as_family(struct hb_conn *c, const struct hb_share_hello *h)
{
	c->hello_sent = 1;
	hb_store_release(&c->txmode, h->txmode);
}

/* Another process of the fork family took the peer's hello: the stream is
 * framed from here, whatever its next bytes look like. Our own hello went
 * out from that process with its decision (a server's answer), so it is
 * not sent again; our direction is what that process decided, set before
 * the receive side is (a writer that sees the receive side decided must
 * find ours decided too). rxlock held; 1 when decided so, 0 when there is
 * no such record or our writer holds txlock (the stream is then looked at,
 * as without the record). */
static int hello_taken_in_family(struct hb_conn *c, int fd)
{
	struct hb_share_hello h;

	if (HB_LIKELY(!(hb_load_relaxed(&c->flags) & HB_CF_SHARED)) || !family_hello(c, &h))
		return 0;
	if (hb_load_acquire(&c->txmode) == HB_TX_UNDECIDED) {
		if (!hb_trylock(&c->txlock))
			return 0;
		if (hb_load_relaxed(&c->txmode) == HB_TX_UNDECIDED)
			tx_as_family(c, &h);
		hb_unlock(&c->txlock);
	}
	rx_framed(c, fd, h.peer_interval_ms, h.peer_timeout_ms, h.peer_dg);
	hb_log(HB_LOG_DEBUG, "fd %d: peer speaks hbshim (its hello taken by another process)", fd);
	return 1;
}

/* Look at the first bytes of the peer's direction (rxlock held).
 * wait: block for the first byte. Returns 0 when decided (rxmode is RAW,
 * FRAMED or FAILED), -EAGAIN when nothing decisive arrived, or another
 * -errno from the socket (left for the real call to report). */
static int detect(struct hb_conn *c, int fd, int wait)
{
	uint8_t p[HB_HELLO_LEN];
	struct hb_hello h;

	/* Another thread may have decided while we waited for the lock: what
	 * follows a consumed hello is frames, which must never be classified
	 * as a raw stream's first bytes. */
	if (hb_load_relaxed(&c->rxmode) != HB_RX_DETECT || hello_taken_in_family(c, fd))
		return 0;
	for (;;) {
		long r;
		int cls;

		/* Block for one byte only: a short raw answer must not wait
		 * for a full hello. The kernel wakes a blocked reader only
		 * once SO_RCVLOWAT bytes are there, whatever length it asked
		 * for: the mark that keeps a lone hello from waking a poller
		 * must go first, or "hi" from a raw peer waits for the
		 * background thread (up to the first tick's jitter: a python
		 * server's recv took 500 ms). This thread handles a hello
		 * itself; the mark is set again once decided. */
		if (wait) {
			if (c->lowat > 1 && !(hb_load_relaxed(&c->flags) & HB_APP_RCVLOWAT) &&
			    hb_os_setsockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT, 1) == 0)
				c->lowat = 1;
			r = hb_frame_own_recv(c, fd, p, 1, MSG_PEEK);
			if (r < 0)
				return (int)r; /* end of stream: seen again just below */
			if (!hb_fd_is(c, fd))
				return -EBADF;
		}
		r = hb_frame_own_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);

		if (r == 0)
			return peer_raw(c, fd);
		if (r < 0)
			return (int)r;
		cls = hb_hello_classify(p, (size_t)r, &h);
		if (cls == 1)
			return peer_framed(c, fd, &h);
		if (cls == -2) {
			hb_frame_protocol_error(c, fd, EPROTO, "version");
			return 0;
		}
		if (cls == -3) {
			hb_frame_protocol_error(c, fd, EPROTO, "hello");
			return 0;
		}
		if (cls == -1)
			return peer_raw(c, fd);
		/* A prefix of our magic: wait a little for the rest (the
		 * deadline lives in the connection: the background thread looks
		 * again on later ticks). */
		if (!c->partial_at) {
			c->partial_at = hb_ms32(hb_os_now_ms());
			/* The wait ends in PARTIAL_WAIT_MS: the background
			 * thread decides then (hb_frame_tick), and must know. */
			if (hb_self_tid() != hb_load_relaxed(&hb_thread_tid))
				hb_thread_poke(c);
		}
		if ((uint32_t)hb_os_now_ms() - c->partial_at >= PARTIAL_WAIT_MS)
			return peer_raw(c, fd);
		if (!wait) {
			hb_frame_set_lowat(c, fd);
			return -EAGAIN;
		}
		hb_os_sleep_us(1000);
	}
}

/* A server about to write before the client's direction is known: give a
 * shimmed client's hello (sent at connect) a short, RTT-scaled chance. */
static void writer_decide(struct hb_conn *c, int fd)
{
	struct hb_tcp_info x;
	uint64_t wait_ms = SERVER_WAIT_MIN_MS, until;

	/* The peer's hello is the receive side's first bytes: a server that
	 * writes first takes them, and with them the receive side (the child
	 * of a forking server greets its client before it reads). */
	if (!hb_may_act_on_rx(c))
		hb_take_side(c, HB_CF_CLAIMED);
	if (hb_os_tcp_info(fd, &x) == 0)
		wait_ms += 2ull * x.ti.tcpi_rtt / 1000;
	if (wait_ms > SERVER_WAIT_MAX_MS)
		wait_ms = SERVER_WAIT_MAX_MS;
	until = hb_os_now_ms() + wait_ms;
	for (;;) {
		short rev = 0;
		uint64_t now;

		if (hb_load_acquire(&c->rxmode) != HB_RX_DETECT)
			break;
		if (hb_trylock(&c->rxlock)) {
			if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
				detect(c, fd, 0);
			hb_unlock(&c->rxlock);
			if (hb_load_acquire(&c->rxmode) != HB_RX_DETECT)
				break;
		}
		/* The look above comes after every wait, the last one included. */
		now = hb_os_now_ms();
		if (now >= until)
			break;
		/* A lone hello (14 bytes) stays below the low-water mark of 15
		 * that a fresh accepted socket holds, so poll does not report
		 * it: wait in slices of a millisecond and look again. */
		hb_os_poll1(fd, POLLIN, 1, &rev);
		if (rev & POLLIN)
			hb_os_sleep_us(200); /* let a reader thread see it too */
	}
	/* Still unknown (or raw): our direction stays raw, unless another
	 * process of the family took the peer's hello and sent ours (the
	 * receive side then follows at its next look). */
	if (hb_load_acquire(&c->txmode) == HB_TX_UNDECIDED && hb_lock(&c->txlock) == 0) {
		if (hb_load_relaxed(&c->txmode) == HB_TX_UNDECIDED) {
			struct hb_share_hello h;

			if (family_hello(c, &h))
				tx_as_family(c, &h);
			else
				hb_store_release(&c->txmode, HB_TX_RAW);
		}
		hb_unlock(&c->txlock);
	}
	keepalive_if_both_raw(c);
}

/* The background thread's look at a peer's direction still undecided
 * (hb_negotiate's HB_NEG_BACKGROUND): decide it when rxlock is free. When
 * an application thread holds it, that thread is blocked in detect(), and
 * the kernel wakes a reader only once SO_RCVLOWAT bytes are there: bytes
 * that are no hello (or a magic prefix that stayed one too long) get the
 * mark lowered, which wakes it; the reader then decides under its lock. */
static int look_in_background(struct hb_conn *c, int fd)
{
	uint64_t now = hb_os_now_ms();
	uint8_t p[HB_HELLO_LEN];
	long r;
	int cls;

	if (hb_load_acquire(&c->rxmode) != HB_RX_DETECT || !hb_may_act_on_rx(c))
		return hb_load_acquire(&c->rxmode) == HB_RX_DETECT ? -EAGAIN : 0;
	if (hb_trylock(&c->rxlock)) {
		if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
			detect(c, fd, 0);
		hb_frame_set_lowat(c, fd);
		hb_unlock(&c->rxlock);
	} else if (c->lowat > 1) {
		r = hb_frame_own_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);
		cls = r > 0 ? hb_hello_classify(p, (size_t)r, NULL) : 1;
		if (cls == 0 && !c->bg_partial_at)
			c->bg_partial_at = hb_ms32(now);
		if (cls == -1 || cls <= -2 || r == 0 ||
		    (cls == 0 && (uint32_t)now - c->bg_partial_at >= PARTIAL_WAIT_MS) ||
		    (!c->client && now >= c->opened_ms + ACCEPT_HELLO_WAIT_MS))
			hb_os_setsockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT, 1);
	}
	return hb_load_acquire(&c->rxmode) == HB_RX_DETECT ? -EAGAIN : 0;
}

/* fd is still c's socket: by cookie where the kernel gives one (in a
 * vfork child the table is the parent's, and fd may be the child's own
 * number for it). */
static int still_socket(const struct hb_conn *c, int fd)
{
	return c->cookie ? hb_os_cookie(fd) == c->cookie : hb_fd_is(c, fd);
}

/* A hand-over's look (leave.c, before fork, exec, posix_spawn, SCM_RIGHTS
 * or a seccomp filter): our hello still queued (connect in progress) goes
 * first, then the peer's first bytes are looked at once, without waiting;
 * the caller waits between looks, for all its connections at once. A
 * connection that the hand-over leaves undecided (HB_NEG_UNDECIDED) holds
 * no hello mark from then on (hb_frame_set_lowat): the mark keeps a lone
 * hello from waking the application while this process's background
 * thread looks behind it, and after the hand-over no process may be
 * looking (the connection is shared; the process that reads, a forking
 * server's child in select() or the command it execs, may have no thread
 * yet), so a hello that came alone would wake nobody. */
static int look_before_handover(struct hb_conn *c, int fd, int undecided)
{
	if (hb_load_acquire(&c->rxmode) != HB_RX_DETECT)
		return 0;
	if (!hb_lock_unless_app(&c->rxlock))
		return -EAGAIN; /* an application thread is deciding it now */
	if (c->tx.pend_len && hb_load_acquire(&c->txmode) == HB_TX_FRAMED &&
	    hb_trylock(&c->txlock)) {
		hb_frame_flush_pend(c, fd);
		hb_unlock(&c->txlock);
	}
	if (still_socket(c, fd)) {
		detect(c, fd, 0);
		if (undecided && hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
			c->handed_undecided = 1;
		if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
			hb_frame_set_lowat(c, fd);
	}
	hb_unlock(&c->rxlock);
	return hb_load_acquire(&c->rxmode) == HB_RX_DETECT ? -EAGAIN : 0;
}

int hb_negotiate(struct hb_conn *c, int fd, enum hb_neg_need need)
{
	int r;

	switch (need) {
	case HB_NEG_TX:
		if (hb_load_acquire(&c->txmode) == HB_TX_UNDECIDED)
			writer_decide(c, fd);
		return hb_load_acquire(&c->txmode) == HB_TX_UNDECIDED ? -EAGAIN : 0;
	case HB_NEG_BACKGROUND:
		return look_in_background(c, fd);
	case HB_NEG_LOOK:
		return look_before_handover(c, fd, 0);
	case HB_NEG_UNDECIDED:
		return look_before_handover(c, fd, 1);
	case HB_NEG_RX_WAIT:
		/* A blocking read waits until decided; an EAGAIN (its
		 * SO_RCVTIMEO) looks again. */
		while ((r = detect(c, fd, 1)) == -EAGAIN)
			;
		return r;
	case HB_NEG_RX:
	default:
		return detect(c, fd, 0);
	}
}
