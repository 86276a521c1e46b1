/*
 * tick.c - the background step of a framed connection.
 *
 * Called by the background thread through struct hb_frame_ops (registered
 * by init.c; thread.c names no framed file). Each tick: the TCP-state gate,
 * a held-back SHUT_RD, the parent's pause after a fork, negotiation still
 * pending, the keepalive window check, our heartbeat after an interval of
 * silence, the peer's liveness, draining its heartbeats, and the time the
 * next tick is due.
 */
#include <errno.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include "hb.h"
#include "frame_int.h"

/* How long an accepted connection with no byte yet ticks at the pacing
 * floor, ready for a hello that arrives late. */
#define LATE_HELLO_MS 10000

/* Our heartbeat interval on this connection: ours, shortened for a peer that
 * tolerates less silence (its hello's timeout), within the pacing floor.
 * The peer's values are read only once the framed rxmode (stored with
 * release after them) says they are there. */
static uint32_t tx_interval(const struct hb_conn *c)
{
	uint32_t pt = hb_load_acquire(&c->rxmode) == HB_RX_FRAMED ? c->peer_timeout_ms : 0;

	return hb_pace_interval(hb_cfg.interval_ms, pt);
}

/* How long the parent of a fork leaves its framed connections alone: one
 * interval, at least 500 ms (a forking server closes its copy at once, but
 * a loaded machine may take a while), at most a third of the timeout. */
static uint64_t fork_pause(void)
{
	uint64_t p = hb_cfg.interval_ms > 500 ? hb_cfg.interval_ms : 500;

	if (p > hb_cfg.timeout_ms / 3)
		p = hb_cfg.timeout_ms / 3;
	return p;
}

/* The heartbeat tick's drain when at most 4 bytes arrived since the last
 * drain, which on an idle connection is the peer's heartbeat or two: one
 * read of that many bytes instead of a peek and a read. Taking up to 4
 * bytes at a frame boundary is always safe, whatever they are: no frame's
 * payload starts before its 5th byte, and the decoder keeps a partial
 * header (the next read completes it). rxlock held. */
static void drain_few(struct hb_conn *c, int fd, size_t n)
{
	uint8_t p[4];
	long r;

	if (!hb_may_act_on_rx(c) || !hb_rx_at_boundary(&c->rx) || n > sizeof(p))
		return;
	r = hb_frame_own_recv(c, fd, p, n, MSG_DONTWAIT);
	if (r > 0 && hb_frame_decode_arrived(c, fd, NULL, 0, p, (size_t)r, 0, (size_t)r) < 0)
		return;
	c->drained_at = hb_ms32(hb_os_now_ms());
	hb_frame_set_lowat(c, fd);
}

/* A stable pseudo-random number per connection. */
static uint32_t conn_jitter(const struct hb_conn *c)
{
	uint64_t x = (c->cookie ^ ((uint64_t)c->self << 32)) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(x >> 40);
}

/* One tick of one connection: what the steps below read and the due time
 * they agree on (each only ever brings next closer). */
struct tick {
	struct hb_tcp_info x;
	const struct hb_ti *ti; /* &x.ti */
	uint64_t now, late, next;
	uint32_t interval, jitter; /* our heartbeat interval, its jitter range */
};

/* A step returns 1 when the tick ends there (*due is the tick's answer),
 * 0 when the next step goes on. */

/* Only an established connection (or one half-closed either way) ticks. */
static int tcp_state_gate(struct hb_conn *c, int fd, const struct tick *t, uint64_t *due)
{
	uint8_t st = t->ti->tcpi_state;

	if (st == TCP_ESTABLISHED || st == TCP_CLOSE_WAIT || st == TCP_FIN_WAIT1 ||
	    st == TCP_FIN_WAIT2)
		return 0;
	*due = 0;
	if (st == TCP_SYN_SENT || st == TCP_SYN_RECV) {
		/* A non-blocking connect: our hello must leave as soon as the
		 * connection is up (a server that writes first waits for it
		 * only briefly). Look every millisecond for 3 s. */
		if (st == TCP_SYN_SENT && hb_connect_expired(c, fd, t->now))
			return 1;
		*due = t->now + (t->now - c->opened_ms < 3000 ? 1 : 50);
	}
	return 1;
}

/* The application's SHUT_RD, held back until our data is acknowledged
 * (hb_frame_shutdown). */
static void held_back_shut_rd(struct hb_conn *c, int fd, const struct tick *t)
{
	int outq = 1;

	if (HB_LIKELY(!(hb_load_acquire(&c->flags) & HB_CF_SHUT_RD)))
		return;
	if ((t->ti->tcpi_state == TCP_FIN_WAIT2 && hb_os_ioctl(fd, SIOCOUTQ, &outq) == 0 &&
	     outq == 0) ||
	    (t->ti->tcpi_state == TCP_FIN_WAIT1 &&
	     (uint32_t)t->now - c->shut_rd_at >= hb_cfg.timeout_ms)) {
		hb_os_shutdown(fd, SHUT_RD);
		hb_and_acq_rel(&c->flags, ~HB_CF_SHUT_RD);
	}
}

/* After a fork each side is acted on by the process that uses it
 * (hb_may_act_on_rx, hb_may_act_on_tx): a child stays passive until the
 * application uses the connection there (the wheel looks again later); the
 * parent pauses briefly, long enough for a forking server to close its
 * copy, and then takes the send side back if it still holds it unused: a
 * parent that forked a command and waits for its peer must go on sending
 * heartbeats. The receive side only ever goes to a process that reads: the
 * child may be reading it (rsync). */
static int after_fork(struct hb_conn *c, int fd, struct tick *t, uint64_t *due)
{
	uint32_t fl = hb_load_acquire(&c->flags);
	uint64_t now = t->now;

	if (fl & HB_CF_INHERITED) {
		*due = now + (t->interval > 100 ? t->interval : 100);
		return 1;
	}
	if (fl & HB_CF_FORKED) {
		uint32_t since = (uint32_t)now - c->forked_at;

		if (since >= fork_pause()) {
			hb_and_acq_rel(&c->flags, ~HB_CF_FORKED);
			if (fl & HB_CF_SHARED)
				hb_or_acq_rel(&c->flags, HB_CF_TX_CLAIMED);
		} else if (!hb_may_act_on_rx(c)) {
			*due = now + (fork_pause() - since);
			return 1;
		} else if (now + (fork_pause() - since) < t->next) {
			/* Reading here already: the receive side's work goes
			 * on; the send side's waits for the pause. */
			t->next = now + (fork_pause() - since);
		}
	}
	if (!hb_may_act_on_rx(c) && !hb_may_act_on_tx(c)) {
		*due = now + (t->interval > 100 ? t->interval : 100);
		return 1;
	}
	/* A reader that does not write here: once no other process holds the
	 * socket (a parent that exited after the fork), the send side is
	 * nobody else's and its heartbeats are this process's job, or the
	 * peer finds it dead. Looked at once per pause (reading /proc);
	 * "cannot tell" leaves it alone. */
	if ((fl & HB_CF_SHARED) && !(fl & HB_CF_FORKED) && hb_may_act_on_rx(c) &&
	    !hb_may_act_on_tx(c) && (uint32_t)now - c->forked_at >= fork_pause()) {
		c->forked_at = hb_ms32(now);
		if (hb_os_sock_shared(fd) == 0)
			hb_or_acq_rel(&c->flags, HB_CF_TX_CLAIMED);
	}
	return 0;
}

/* Our direction: a heartbeat after an interval of silence (pending control
 * bytes first). The jitter spreads connections opened together. */
static void heartbeat(struct hb_conn *c, int fd, struct tick *t)
{
	static const uint8_t hb[2] = { HB_FT_CONTROL, HB_CT_HEARTBEAT };
	const struct hb_ti *ti = t->ti;
	uint64_t now = t->now;
	uint32_t quiet = ti->tcpi_last_data_sent;
	/* A fixed offset per connection: a fresh random one per tick would
	 * push the heartbeat past the tick that was due for it and cost a
	 * second wake-up. tcpi_last_data_sent counts in jiffies (up to 4 ms),
	 * and the tick's time is read once per batch (a busy or starved batch
	 * sends a little after it): up to 8 ms early is on time (one wake-up,
	 * not two). */
	uint32_t due = t->interval - (t->jitter ? conn_jitter(c) % t->jitter : 0);
	uint32_t slack = t->interval / 20 < 8 ? t->interval / 20 : 8;

	/* Not once the peer sent its FIN without a half-close frame: it
	 * closed the connection, and a heartbeat would only draw a reset that
	 * destroys what it has still to send us. */
	if (hb_load_acquire(&c->txmode) != HB_TX_FRAMED || !hb_may_act_on_tx(c) ||
	    ti->tcpi_state == TCP_FIN_WAIT1 || ti->tcpi_state == TCP_FIN_WAIT2 ||
	    (ti->tcpi_state == TCP_CLOSE_WAIT && !c->rx.halfclosed) ||
	    (HB_UNLIKELY(hb_fault_of(c)) && hb_fault_hung(c)) || /* HBSHIM_FAULTS hang */
	    !hb_trylock(&c->txlock))
		return;
	/* A short TCP_INFO has no tcpi_last_data_sent: a heartbeat every
	 * interval, data or not (2 bytes an interval more). */
	if (!HB_TI_HAS(&t->x, ti.tcpi_last_data_sent))
		quiet = c->hb_sent_at ? (uint32_t)now - c->hb_sent_at : due;
	hb_frame_flush_pend(c, fd);
	if (hb_tx_at_boundary(&c->tx) && !c->dg_sent) {
		if (quiet + slack >= due && (hb_load_relaxed(&c->flags) & HB_CF_SHARED) &&
		    HB_TI_HAS(&t->x, notsent_bytes) && t->x.notsent_bytes) {
			/* Bytes still queued: the peer hears from us when its
			 * window opens. Another process writing this connection
			 * may be inside a frame then, which our encoder cannot
			 * see: no heartbeat into it. */
			t->next = now + due;
		} else if (quiet + slack >= due) {
			long r = hb_frame_own_send(c, fd, hb, 2, MSG_DONTWAIT | MSG_NOSIGNAL);

			if (r == 1) {
				c->tx.pend[0] = hb[1];
				c->tx.pend_len = 1;
			}
			if (r > 0) {
				hb_stat_add(HB_ST_HB_SENT, 1);
				c->hb_sent_at = hb_ms32(now);
			}
			t->next = now + due;
		} else {
			t->next = now + (due - quiet);
		}
	} else {
		t->next = now + (t->interval < 10 ? t->interval : 10);
	}
	hb_unlock(&c->txlock);
}

/* How long the peer has been silent. A short TCP_INFO has no
 * tcpi_last_data_recv: the time since the shim last took bytes (its reads,
 * and the drain for an idle application), counted from the first tick. */
static uint32_t peer_silence(struct hb_conn *c, int fd, const struct tick *t, uint32_t limit)
{
	uint32_t seen;

	if (HB_TI_HAS(&t->x, ti.tcpi_last_data_recv))
		return t->ti->tcpi_last_data_recv;
	seen = hb_load_relaxed(&c->rx_seen);
	if (!seen)
		hb_store_relaxed(&c->rx_seen, seen = hb_ms32(t->now));
	if ((uint32_t)t->now - seen >= limit && hb_trylock(&c->rxlock)) {
		/* Heartbeats that wait unread (this process was itself
		 * stopped, or late) are life. */
		hb_frame_drain(c, fd);
		hb_unlock(&c->rxlock);
		seen = hb_load_relaxed(&c->rx_seen);
	}
	return (uint32_t)t->now - seen;
}

/* The peer's heartbeats, drained only when something arrived since the
 * last drain. An idle peer's heartbeats are 2 bytes each. At peer intervals
 * of a second or more the first one waits for the second: below the
 * low-water mark it wakes nobody, and then one read of 4 bytes takes both
 * (a system call per two heartbeats). Shorter intervals drain each one: a
 * thread starved for one peer interval would let three reach the mark
 * (epoll cannot be corrected after the fact). At most 4 new bytes: one read
 * of them. Anything else: peek, then read the control frames. Bytes the
 * application read first make the read come back short or EAGAIN. */
static void drain_heartbeats(struct hb_conn *c, int fd, const struct tick *t)
{
	uint32_t fresh;

	if (!hb_may_act_on_rx(c) ||
	    (c->drained_at && t->ti->tcpi_last_data_recv > (uint32_t)t->now - c->drained_at) ||
	    !hb_trylock(&c->rxlock))
		return;
	fresh = (uint32_t)t->x.bytes_received - c->rx_bytes;
	if (!c->drained_at || !t->x.bytes_received || fresh > 4) {
		hb_frame_drain(c, fd);
		c->rx_bytes = (uint32_t)t->x.bytes_received;
	} else if (fresh != 2 || c->peer_interval_ms < 1000 || c->lowat != FRAME_LOWAT ||
		   !hb_rx_at_boundary(&c->rx)) {
		drain_few(c, fd, fresh);
		c->rx_bytes = (uint32_t)t->x.bytes_received;
	}
	hb_unlock(&c->rxlock);
}

/* The peer's direction: any data byte (tcpi_last_data_recv counts also what
 * the application has not read yet) is life. The socket's figures are the
 * same in every process holding it: one that only writes judges the
 * silence too (it reads no byte for that), so a writer whose reader is gone
 * still learns of a dead peer. (Not with a short TCP_INFO: the shim's own
 * stamp of the peer's last bytes is the reading process's.) */
static int liveness(struct hb_conn *c, int fd, struct tick *t, uint64_t *due)
{
	uint32_t limit = hb_rx_limit(c), silent;
	uint64_t now = t->now;
	int inq = 0;

	if (hb_load_acquire(&c->rxmode) != HB_RX_FRAMED || c->rx.halfclosed ||
	    t->ti->tcpi_state == TCP_CLOSE_WAIT ||
	    !(hb_may_act_on_rx(c) || HB_TI_HAS(&t->x, ti.tcpi_last_data_recv)))
		return 0;
	silent = peer_silence(c, fd, t, limit);
	/* Bytes the application has not read yet: the peer was alive to send
	 * them, and with our receive window filling up it may not be able to
	 * send anything else, heartbeats included. Silence only counts once
	 * the application caught up. Fewer bytes than the low-water mark are
	 * no such thing: a heartbeat or two that a reader blocked below the
	 * mark cannot take, and that must not keep a dead peer alive. */
	if (silent >= limit && hb_os_ioctl(fd, SIOCINQ, &inq) == 0 && inq >= FRAME_LOWAT)
		silent = 0;
	if (silent >= limit && t->late > 20 && t->late > t->interval / 4 && !c->grace) {
		/* This thread itself woke up late: the machine is starved, and
		 * the peer's heartbeat thread likely was too. Look once more
		 * shortly before calling the peer dead. */
		c->grace = 1;
		*due = now + (t->interval < 100 ? t->interval : 100);
		return 1;
	}
	if (silent < limit)
		c->grace = 0;
	if (silent >= limit) {
		hb_frame_notice(c, fd, HB_NR_HEARTBEAT, silent);
		hb_conn_declare_dead(c, fd, HB_DEAD_HEARTBEAT, silent);
		*due = 0;
		return 1;
	}
	drain_heartbeats(c, fd, t);
	if (now + (limit - silent) < t->next)
		t->next = now + (limit - silent);
	return 0;
}

/* While the peer's direction is undecided, the tick comes back soon enough
 * to see a hello (or a raw peer's first bytes) in time; a held-back
 * SHUT_RD is looked at again soon. */
static uint64_t next_due(const struct hb_conn *c, const struct tick *t)
{
	uint64_t now = t->now, next = t->next;
	int detecting = hb_load_acquire(&c->rxmode) == HB_RX_DETECT;

	if (!c->client && detecting && now < c->opened_ms + ACCEPT_HELLO_WAIT_MS + 1) {
		/* Accepted, nothing decisive yet: look every millisecond until
		 * the hello's window closes (the mark drops to 1 then). */
		if (now + 1 < next)
			next = now + 1;
	} else if (!c->client && detecting && now < c->opened_ms + LATE_HELLO_MS &&
		   now + HB_PACE_FLOOR_MS < next) {
		/* A hello that comes later may be read by the application, and
		 * ask for heartbeats sooner than our own interval: the tick
		 * that paces them is never further than the floor away. Only
		 * for a while: a shimmed client sends its hello at connect,
		 * and a peer that sends nothing must not cost 10 ticks a
		 * second for ever. */
		next = now + HB_PACE_FLOOR_MS;
	}
	if (hb_load_acquire(&c->rxmode) == HB_RX_DETECT && c->partial_at) {
		/* A prefix of the magic: decide when its wait ends. */
		uint32_t since = (uint32_t)now - c->partial_at;
		uint64_t at = now + (since < PARTIAL_WAIT_MS ? PARTIAL_WAIT_MS - since : 1);

		if (at < next)
			next = at;
	}
	if (c->client && hb_load_acquire(&c->rxmode) == HB_RX_DETECT) {
		/* The server's first bytes are due: look often (1 ms for the
		 * first 2 s, then every 100 ms at most), so that a short raw
		 * answer held back by the low-water mark is released at once. */
		uint64_t step = now - c->opened_ms < 2000 ? 1 : 100;

		if (now + step < next)
			next = now + step;
	}
	if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_SHUT_RD) && now + 5 < next &&
	    (t->ti->tcpi_state == TCP_FIN_WAIT1 || t->ti->tcpi_state == TCP_FIN_WAIT2))
		next = now + 5; /* a held-back SHUT_RD: look again soon */
	return next;
}

uint64_t hb_frame_tick(struct hb_conn *c, int fd, uint64_t now, uint64_t late)
{
	struct tick t;
	uint64_t due = 0;

	t.ti = &t.x.ti;
	t.now = now;
	t.late = late;
	t.interval = tx_interval(c);
	t.jitter = t.interval / 10;
	t.next = now + t.interval;
	if (hb_os_tcp_info(fd, &t.x) < 0)
		return 0;
	if (tcp_state_gate(c, fd, &t, &due))
		return due;
	held_back_shut_rd(c, fd, &t);
	if (after_fork(c, fd, &t, &due))
		return due;
	hb_dg_follow_family(c, fd);
	if (HB_UNLIKELY(hb_load_relaxed(&c->dg_want)) &&
	    hb_load_acquire(&c->txmode) == HB_TX_FRAMED && hb_trylock(&c->txlock)) {
		hb_dg_tx_downgrade(c, fd, 0);
		hb_unlock(&c->txlock);
	}
	if (hb_load_acquire(&c->rxmode) == HB_RX_DETECT)
		hb_negotiate(c, fd, HB_NEG_BACKGROUND);
	if (c->mode != HB_MODE_FRAME)
		return 0; /* settled as plain keepalive */
	/* The peer's hello may have just arrived: pace for it from now on. */
	t.interval = tx_interval(c);
	t.jitter = t.interval / 10;
	if (now + t.interval < t.next)
		t.next = now + t.interval;
	if (hb_ka_window(c, fd, &t.x, hb_ka_frame_cfg.user_timeout_ms, now, 0) < 0) {
		hb_conn_declare_dead(c, fd, HB_DEAD_WRITE, t.ti->tcpi_last_ack_recv);
		return 0;
	}
	/* The peer sent its FIN. After a half-close frame it still reads and
	 * expects our heartbeats; without one it closed the connection: drain
	 * what it sent before (heartbeat() sends it nothing more). */
	if (t.ti->tcpi_state == TCP_CLOSE_WAIT && !c->rx.halfclosed && hb_may_act_on_rx(c) &&
	    hb_load_acquire(&c->rxmode) == HB_RX_FRAMED && hb_trylock(&c->rxlock)) {
		hb_frame_drain(c, fd);
		hb_unlock(&c->rxlock);
	}
	heartbeat(c, fd, &t);
	if (liveness(c, fd, &t, &due))
		return due;
	return next_due(c, &t);
}

const struct hb_frame_ops hb_frame_ops = {
	.tick = hb_frame_tick,
	.linger_tick = hb_frame_linger_tick,
	.notice = hb_frame_notice,
	.atfork_prepare = hb_frame_fork_prepare,
	.atfork_child = hb_frame_atfork_child,
	.linger_drop_all = hb_frame_linger_drop_all,
};
