/*
 * frame_int.h - what the framed-mode files share, and nothing else includes.
 *
 * Framed mode is split by concern, each file calling only the ones listed
 * before it here (none calls back up; the background thread reaches the
 * tick through struct hb_frame_ops):
 *
 *   frame.c       the framed core: the shim's own send/recv, pending
 *                 control bytes, the low-water mark, protocol errors,
 *                 notices, the iovec check and the other process's verdict
 *   downgrade.c   the downgrade frames in the stream, the fork family's
 *                 record, the leaving reader
 *   share.c       process sharing: fork marking, which side a process uses,
 *                 the fork family's record of peer hellos taken
 *   negotiate.c   the hello exchange, one entry point for the paths above
 *   frame_rx.c    the framed receive path
 *   frame_drain.c the receive side between reads: drain, poll readiness,
 *                 close, FIONREAD
 *   frame_tx.c    the framed send path and shutdown
 *   frame_xfer.c  zero-copy sends and receives (sendfile, splice)
 *   linger.c      the lingering close and the wait at exit
 *   leave.c       a process leaving framing (seccomp, fd passing)
 *   tick.c        the background step, and the ops table init.c registers
 *
 * The rx/tx locks are os_lock.c's (the OS layer); hb_lock_fd below takes
 * one for an application call on fd.
 *
 * Threads: "app" means an application thread inside an interposed call,
 * "bg" the background thread; rxlock and txlock are struct hb_conn's.
 */
#ifndef HB_FRAME_INT_H
#define HB_FRAME_INT_H

#include <errno.h>

#include "hb.h"

#define PARTIAL_WAIT_MS 200  /* a raw stream starting like our magic */

/* An accepted connection whose first bytes had not arrived at accept: for
 * this long the low-water mark keeps a lone hello from waking the
 * application, and the background thread looks every millisecond (a shimmed
 * client sends its hello right behind the handshake's last ACK). */
#define ACCEPT_HELLO_WAIT_MS 20

/* Whether an application call must not block: MSG_DONTWAIT, or the file
 * is O_NONBLOCK. */
static inline int hb_nonblocking(const struct hb_conn *c, int flags)
{
	return (flags & MSG_DONTWAIT) || (hb_load_relaxed(&c->flags) & HB_CF_NONBLOCK);
}

/* Low 32 bits of a monotonic ms time for the connection's 32-bit stamps,
 * never 0 (their "not yet"). Differences of two stamps wrap correctly. */
static inline uint32_t hb_ms32(uint64_t ms)
{
	return (uint32_t)ms ? (uint32_t)ms : 1;
}

/* The shim took bytes from the peer: its own record of the peer's last
 * sign of life, for where TCP_INFO has no tcpi_last_data_recv. */
static inline void hb_rx_seen(struct hb_conn *c)
{
	if (HB_UNLIKELY(hb_load_relaxed(&hb_os_ti_short)))
		hb_store_relaxed(&c->rx_seen, hb_ms32(hb_os_now_ms()));
}

/* Each side of a connection another process may hold too (fork, exec) is
 * owned by the process whose application uses it: the one that reads owns
 * the receive side, the one that writes the send side (rsync's receiver
 * child reads while its generator parent writes). Neither process can see
 * the other's use, so a side this process has not used since is left
 * alone: its bytes and its decoder position are the other process's.
 *
 * hb_may_act_on_rx(): this process may act on the receive side on its own
 * (detect a hello, drain control frames, linger, look at it at exit): the
 * connection is not shared, or the application read it here since. */
static inline int hb_may_act_on_rx(const struct hb_conn *c)
{
	return (hb_load_relaxed(&c->flags) & (HB_CF_SHARED | HB_CF_CLAIMED)) != HB_CF_SHARED;
}

/* This process may act on the send side on its own (heartbeats, notices,
 * pending control bytes, the half-close frame, waiting at exit): not
 * shared, or the application wrote here since (or the parent of a fork
 * took it back after its pause: see hb_frame_tick). */
static inline int hb_may_act_on_tx(const struct hb_conn *c)
{
	return (hb_load_relaxed(&c->flags) & (HB_CF_SHARED | HB_CF_TX_CLAIMED)) != HB_CF_SHARED;
}

/* How long the peer may stay silent: our own timeout, whatever its hello
 * announced. A peer that follows the protocol paces its heartbeats to the
 * timeout our hello announced (hb_pace_interval), so a live one is never
 * silent that long; a hello cannot lengthen our detection. */
static inline uint32_t hb_rx_limit(const struct hb_conn *c)
{
	(void)c;
	return hb_cfg.timeout_ms;
}

/* Readiness that matches the application's view, for every readiness API
 * at once (poll, select, epoll in all its modes, nested or shared sets)
 * without translating anything: SO_RCVLOWAT. Every data frame is at least
 * 6 bytes, a heartbeat 2, so with a low-water mark of 6 a lone heartbeat
 * (or two) never makes the fd readable, while any data frame does. Inside a
 * frame whose tail is shorter than 6 bytes, or in a split header, the mark
 * drops to what is still owed, so a short tail is never held back.
 * The application's own SO_RCVLOWAT, if it set one, is left alone.
 * rxlock held (or the decoder otherwise not in use). */
#define FRAME_LOWAT 6

/* Frames up to this payload go through one contiguous buffer (a copy of at
 * most this many bytes) instead of an iovec array. */
#define SMALL_FRAME 256

/* Header reads in a row that found control frames only, after which a
 * peek or a zero-copy read leaves the flood budget to its caller. */
#define PEEK_HDRS 64

/* ------------------------------------------------------------ the locks */

/* Take l (rxlock or txlock of c) for an application call on fd (nb: never
 * behind another application thread): a thread that waited for the lock
 * behind one blocked in the kernel may find fd closed when it gets it.
 * 0, -EAGAIN, or -EBADF when fd was closed meanwhile (l not held then). */
static inline int hb_lock_fd(const struct hb_conn *c, int fd, _Atomic uint32_t *l, int nb)
{
	int r = hb_lock_io(l, nb);

	if (r == 0 && !hb_fd_is(c, fd)) {
		hb_unlock(l);
		r = -EBADF;
	}
	return r;
}

/* ---------------------------------------------------------------- frame.c */

/* A framed stream broke the protocol: fail c with err (once), notice to the
 * peer, shut the socket down, count and report it. rxlock held. */
void hb_frame_protocol_error(struct hb_conn *c, int fd, int err, const char *what);
/* The shim's own send/recv on fd: -errno, the connection's error kept for
 * the application (the kernel reports it to one caller only). */
long hb_frame_own_send(struct hb_conn *c, int fd, const void *b, size_t n, int flags);
long hb_frame_own_recv(struct hb_conn *c, int fd, void *b, size_t n, int flags);
/* Push pending control bytes without blocking. txlock held. */
void hb_frame_flush_pend(struct hb_conn *c, int fd);
/* Give the socket quick-ACK mode back (see frame.c). Any thread. */
void hb_frame_quickack(int fd);
/* The application's bytes went out: the one quick-ACK after our hello
 * exchange, if it is still due. App. */
void hb_frame_app_sent(struct hb_conn *c, int fd);
/* Set SO_RCVLOWAT for the decoder's state (unless the app set its own).
 * rxlock held, or the decoder otherwise not in use. */
void hb_frame_set_lowat(struct hb_conn *c, int fd);
/* The kernel's checks of m's iovec array: 0, -EMSGSIZE, -EFAULT or -EINVAL. */
long hb_frame_iov_check(const struct msghdr *m);
/* r (0 or -EPIPE) of a call on a shared connection, or the dead verdict
 * another process holding it reached. App. */
long hb_frame_other_verdict(struct hb_conn *c, int fd, long r);

/* ---------------------------------------------------------------- downgrade.c */

/* Map the fork family's record of downgraded connections. Start-up. */
void hb_dg_record_init(void);
/* The downgraded event and log line (by: "local", "peer" or "family"). */
void hb_dg_event(struct hb_conn *c, int fd, const char *by, uint8_t reason);
/* The peer's downgrade frame was decoded: its direction is raw, ours
 * follows when asked. rxlock held. */
void hb_dg_rx_downgraded(struct hb_conn *c, int fd, const struct hb_rx_info *info);
/* Our direction's downgrade frame, when due (wait_ms: -1 as a blocking
 * write, 0 never): 1 raw now, 0 not yet, or -errno. txlock held. */
int hb_dg_tx_downgrade(struct hb_conn *c, int fd, int wait_ms);
/* Another process of the fork family downgraded c: raw both ways here
 * too (when both locks are free). Any thread, no lock held. */
void hb_dg_follow_family(struct hb_conn *c, int fd);

/* ---------------------------------------------------------------- share.c */

/* This process uses one side of c (HB_CF_CLAIMED: receive, HB_CF_TX_CLAIMED:
 * send): that side's background work is its job from now on. App. */
void hb_take_side(struct hb_conn *c, uint32_t side);
/* The fork family's record of peer hellos taken (share.c): mapped at
 * start-up; a copy of c that took the peer's hello lists it (rxlock held,
 * after the hello left the socket); a copy still undecided finds it there
 * (1, with what the hello said and the txmode that copy decided). */
struct hb_share_hello {
	uint32_t peer_interval_ms, peer_timeout_ms;
	uint8_t peer_dg, txmode;
};
void hb_share_record_init(void);
void hb_share_hello_publish(const struct hb_conn *c);
int hb_share_hello_find(uint64_t cookie, struct hb_share_hello *h);
/* The connection went raw (a downgrade, ours or the peer's): its entry, if
 * any, goes, so that no copy takes the stream for framed from here. Any
 * thread. */
void hb_share_hello_forget(uint64_t cookie);

/* ---------------------------------------------------------------- negotiate.c */

/* What a framed path needs decided before it goes on (hb_negotiate). */
enum hb_neg_need {
	HB_NEG_RX,         /* the peer's direction, without waiting; rxlock held */
	HB_NEG_RX_WAIT,    /* the same, blocking for the peer's first byte */
	HB_NEG_TX,         /* our direction, before a write; no lock held */
	HB_NEG_BACKGROUND, /* the peer's direction, bg thread; no lock held */
	HB_NEG_LOOK,       /* before a hand-over: our queued hello out, one look at
			    * the peer's direction; rxlock unless an application
			    * thread holds it; fd checked by cookie (a vfork
			    * child's own number for the socket will do) */
	HB_NEG_UNDECIDED,  /* the same, and a hand-over goes ahead with it still
			    * undecided: no hello mark from then on */
};
/* Negotiation's one entry point: 0 when the direction is decided (read
 * rxmode or txmode for how), -EAGAIN while pending, or another -errno from
 * the socket (HB_NEG_RX*, left for the caller's call to report). Deciding
 * may send our hello and report the "framed" event: only here. */
int hb_negotiate(struct hb_conn *c, int fd, enum hb_neg_need need);

/* ---------------------------------------------------------------- frame_rx.c */

/* Decode got bytes that arrived through the (buf[0..alen), scratch[0..slen),
 * buf + boff) layout: the application's bytes (moved to buf[0..)), or
 * -EPROTO (the connection failed). rxlock held. */
long hb_frame_decode_arrived(struct hb_conn *c, int fd, uint8_t *buf, size_t alen,
			     uint8_t *scratch, size_t slen, size_t boff, size_t got);
/* Make the kernel signal readiness anew (after a read gave up on a flood
 * of control frames with bytes still queued). rxlock held. */
void hb_frame_rearm(struct hb_conn *c, int fd);

/* ---------------------------------------------------------------- frame_drain.c */

/* Drop the complete control frames waiting at the head of the receive
 * queue. rxlock held. */
void hb_frame_drain(struct hb_conn *c, int fd);

#endif
