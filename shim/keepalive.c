/*
 * keepalive.c - keepalive mode: kernel keepalive and TCP_USER_TIMEOUT
 * derived from HBSHIM_INTERVAL (I) and HBSHIM_TIMEOUT (T).
 *
 * The kernel's keepalive timer fires at idle, idle + intvl, idle + 2 intvl,
 * ... after the last segment received; with TCP_USER_TIMEOUT (U) set it
 * resets the connection at the first firing where an unanswered probe is
 * out and the silence is >= U (TCP_KEEPCNT is then ignored: Cloudflare,
 * "When TCP sockets refuse to die"). So we choose
 *
 *     idle  = max(1 s, ceil(I))          probe after one quiet interval
 *     cnt   = ceil((T - idle) / idle)    probes spaced about one interval
 *     intvl = ceil((T - idle) / cnt)     so the last firing lands near T
 *     U     = min(T, last firing - 2 %)  just under idle + intvl x cnt
 *
 * TCP_KEEPCNT is at most 127: when T > 128 I, intvl = ceil((T - idle) /
 * 127), cnt = as many whole intvl as fit, and idle grows by the remainder,
 * so the last firing still lands at ceil(T).
 *
 * A silent peer is declared dead at the last firing (about T after the last
 * byte or probe answer; never more than I + T). Data left unanswered fails
 * after T and one look of ours (hb_ka_window below). Kernel options are
 * whole seconds: sub-second I or T round up to 1 s for the probe schedule,
 * so detection of an idle dead peer takes at least 2 s in keepalive mode; U
 * keeps millisecond precision.
 *
 * To avoid synchronised probe bursts across thousands of connections opened
 * together, SO_KEEPALIVE itself is switched on by the background thread at
 * a random offset in [0, jitter) after the connection opened; the kernel
 * then keeps each connection's own phase.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "hb.h"

struct hb_ka hb_ka_cfg;
struct hb_ka hb_ka_frame_cfg;

void hb_ka_init(uint32_t interval_ms, uint32_t timeout_ms)
{
	hb_ka_derive(interval_ms, timeout_ms, &hb_ka_cfg);
	hb_ka_derive(interval_ms, timeout_ms * 2, &hb_ka_frame_cfg);
}

static uint32_t ceil_div(uint32_t a, uint32_t b)
{
	return a / b + (a % b != 0); /* (a + b - 1) / b overflows near 2^32 */
}

void hb_ka_derive(uint32_t interval_ms, uint32_t timeout_ms, struct hb_ka *out)
{
	uint32_t idle = ceil_div(interval_ms ? interval_ms : 1, 1000);
	uint32_t rem_ms, cnt, intvl, last_ms, u, jitter;

	if (idle < 1)
		idle = 1;
	if (idle > 32767)
		idle = 32767;
	jitter = idle * 1000 / 4;
	rem_ms = timeout_ms > idle * 1000 ? timeout_ms - idle * 1000 : 0;
	if (!rem_ms) {
		cnt = 1;
		intvl = 1;
	} else {
		uint32_t rem_s = ceil_div(rem_ms, 1000);

		cnt = ceil_div(rem_ms, idle * 1000);
		if (cnt > 127) {
			/* T > 128 I: at most 127 probes (TCP_KEEPCNT), spaced
			 * wider. Rounding intvl up would push the last firing
			 * up to 127 s past T, so take whole intervals that fit
			 * and start probing later by what is left (< intvl):
			 * the last firing stays at idle + rem_s. */
			intvl = ceil_div(rem_s, 127);
			if (intvl > 32767)
				intvl = 32767;
			cnt = rem_s / intvl;
			if (cnt > 127)
				cnt = 127;
			idle += rem_s - intvl * cnt;
			if (idle > 32767)
				idle = 32767;
		} else {
			intvl = ceil_div(rem_s, cnt);
		}
		if (intvl < 1)
			intvl = 1;
		if (intvl > 32767)
			intvl = 32767;
	}
	last_ms = (idle + intvl * cnt) * 1000;
	u = last_ms - last_ms / 50;
	if (u > timeout_ms)
		u = timeout_ms;
	out->idle_s = (int)idle;
	out->intvl_s = (int)intvl;
	out->cnt = (int)cnt;
	out->user_timeout_ms = u;
	out->jitter_ms = jitter;
	if (out->jitter_ms > 1000)
		out->jitter_ms = 1000;
}

void hb_ka_apply(int fd, struct hb_conn *c)
{
	uint32_t app = hb_load_acquire(&c->flags);
	const struct hb_ka *k = &hb_ka_cfg;

	if (!(app & HB_APP_KEEPIDLE))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, k->idle_s);
	if (!(app & HB_APP_KEEPINTVL))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, k->intvl_s);
	if (!(app & HB_APP_KEEPCNT))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, k->cnt);
	if (!(app & HB_APP_USERTIMEOUT))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)k->user_timeout_ms);
}

void hb_ka_arm(int fd, struct hb_conn *c)
{
	uint32_t fl = hb_load_acquire(&c->flags);

	if (fl & (HB_APP_KEEPALIVE | HB_CF_KA_ARMED))
		return;
	if (hb_os_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) == 0)
		hb_or_acq_rel(&c->flags, HB_CF_KA_ARMED);
}

/*
 * The rule: while data of ours waits to be sent or acknowledged, our
 * TCP_USER_TIMEOUT is off; it is on again once all is acknowledged. The
 * reason: a peer that stops reading shuts its receive window and answers
 * the kernel's window probes, yet since Linux 5.11 the kernel aborts a
 * connection whose window stayed shut for TCP_USER_TIMEOUT. With ours at
 * about T, any consumer pausing its reading for T (a pager, a pipe into a
 * slow program) would lose the connection, where RFC 1122 4.2.2.17 keeps it
 * open as long as the probes are answered: a peer that answers is not
 * dead. Any stall counts as waiting, not only a shut window: a slow reader
 * opens its window a little at a time and its kernel drops what overflows,
 * so its stall shows as retransmissions as often.
 *
 * The verdict on the peer is ours meanwhile: it is dead when something we
 * sent after its last acknowledgement of any kind (data, a retransmission,
 * a window probe) stays unanswered, with nothing at all heard from it for
 * T. Silence alone is not enough: the kernel backs its retransmissions and
 * window probes off exponentially while the peer's window stays shut, so a
 * live reader paused for long is asked, and answers, less than once per T.
 * A dead path answers nothing: found within T + one look.
 */

/* A live peer answers within its round trip plus a delayed ACK (200 ms in
 * Linux, up to 500 ms by RFC 1122): what we sent is owed an answer after
 * twice the kernel's own retransmission timeout, and never before 500 ms. */
static uint32_t answer_ms(const struct hb_ti *ti)
{
	uint32_t rto = (uint32_t)(((uint64_t)ti->tcpi_rtt + 4ull * ti->tcpi_rttvar) / 1000);

	if (rto < 200)
		rto = 200;
	return 2 * rto > 500 ? 2 * rto : 500;
}

/* Two computations of the time of one acknowledgement differ by the
 * kernel's jiffy and our clock reads: closer than this is the same one. */
#define ACK_SLOP_MS 20

/* Low 32 bits of a monotonic ms time, never 0 (the stamps' "not yet"). */
static uint32_t stamp(uint64_t ms)
{
	return (uint32_t)ms ? (uint32_t)ms : 1;
}

int hb_ka_window(struct hb_conn *c, int fd, const struct hb_tcp_info *x, unsigned uto,
		 uint64_t now_ms, uint64_t since_ms)
{
	const struct hb_ti *ti = &x->ti;
	uint32_t fl = hb_load_acquire(&c->flags), now = stamp(now_ms), ack_at, silent;
	int waiting, owed, data_owed;

	if (!HB_TI_HAS(x, notsent_bytes) || (fl & HB_APP_USERTIMEOUT) || !uto)
		return 0;
	waiting = (ti->tcpi_state == TCP_ESTABLISHED || ti->tcpi_state == TCP_CLOSE_WAIT) &&
		  (ti->tcpi_unacked || x->notsent_bytes);
	if (!waiting) {
		/* Everything acknowledged: our user timeout is back. */
		if ((fl & HB_CF_UTO_OFF) &&
		    hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)uto) == 0)
			hb_log(HB_LOG_DEBUG, "fd %d: all acknowledged: user timeout on again", fd);
		if (fl & (HB_CF_UTO_OFF | HB_CF_ZW_SUSPECT))
			hb_and_acq_rel(&c->flags, ~(HB_CF_UTO_OFF | HB_CF_ZW_SUSPECT));
		c->ka_wait_at = 0;
		return 0;
	}
	if (!c->ka_wait_at)
		c->ka_wait_at = since_ms && since_ms < now_ms ? stamp(since_ms) : now;
	if (!(fl & HB_CF_UTO_OFF) &&
	    hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 0) == 0) {
		/* Data in flight: off until all is acknowledged. A shut window
		 * is the case that matters, but a slow reader's window opens a
		 * little at a time and its kernel drops what overflows it, so
		 * the stall shows as retransmissions with the window open as
		 * often: any stall counts. */
		hb_or_acq_rel(&c->flags, HB_CF_UTO_OFF);
		hb_log(HB_LOG_DEBUG, "fd %d: data in flight: user timeout off", fd);
	}
	/* Sent after the peer's last acknowledgement: data while data is
	 * unacknowledged (tcpi_last_data_sent counts every data segment,
	 * retransmissions too; both times are jiffies before the same now), or
	 * two window probes (counted until any ACK comes). One is not enough:
	 * Linux answers segments without data outside its window at most
	 * every 500 ms (tcp_invalid_ratelimit), and the probes' spacing starts
	 * at 200 ms, so a live reader leaves one unanswered now and then,
	 * never two in a row. */
	data_owed = ti->tcpi_unacked && ti->tcpi_last_data_sent < ti->tcpi_last_ack_recv;
	owed = data_owed || ti->tcpi_probes >= 2;
	if (!owed) {
		if (fl & HB_CF_ZW_SUSPECT)
			hb_and_acq_rel(&c->flags, ~HB_CF_ZW_SUSPECT);
		return 1;
	}
	ack_at = now - ti->tcpi_last_ack_recv;
	if (!(fl & HB_CF_ZW_SUSPECT) || (int32_t)(ack_at - c->ka_ack_at) > ACK_SLOP_MS) {
		/* First seen owed, or the peer answered since: an answer is
		 * owed since the last data segment (an older one may be owed
		 * longer), or since this look for probes. */
		c->ka_ack_at = ack_at;
		c->ka_owed_at = data_owed ? now - ti->tcpi_last_data_sent : now;
		if (!(fl & HB_CF_ZW_SUSPECT))
			hb_or_acq_rel(&c->flags, HB_CF_ZW_SUSPECT);
	}
	/* The silence that counts began when the peer last answered, or when
	 * data began to wait (an idle connection's last ACK may be old when
	 * the application writes again). */
	silent = ti->tcpi_last_ack_recv;
	if (silent > now - c->ka_wait_at)
		silent = now - c->ka_wait_at;
	if (silent < hb_cfg.timeout_ms || now - c->ka_owed_at < answer_ms(ti))
		return 1;
	/* Nothing heard for T, and what we sent went unanswered: the path or
	 * the peer is dead. Our user timeout back on for the kernel to drop
	 * the socket; the caller declares it dead. */
	hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)uto);
	hb_and_acq_rel(&c->flags, ~(HB_CF_UTO_OFF | HB_CF_ZW_SUSPECT));
	return -1;
}
