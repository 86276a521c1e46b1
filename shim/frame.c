/*
 * frame.c - framed mode: negotiation, the framed read and write paths, and
 * the background step that sends heartbeats and watches the peer.
 *
 * Each direction of a connection is raw or framed on its own (PROTOCOL.md):
 *   - a client whose peer matches HBSHIM_FRAME frames its direction from
 *     the first byte (a hello) and detects the server's;
 *   - an accepting side (HBSHIM_ACCEPT=auto) detects the client's hello and
 *     frames its own direction only once that hello arrived; a server that
 *     writes first waits a short bounded time for it, then stays raw.
 *
 * Locks. rxlock serialises the decoder state, txlock the encoder state, so
 * two application threads never interleave inside a frame. Both are small
 * futex locks taken by application threads; the background thread only
 * ever try-locks them, so it never waits behind a blocked application call
 * and never blocks one. Lock order is rx before tx; a writer never waits for
 * rxlock while holding txlock.
 *
 * The read path never buffers application bytes: it reads with an iovec
 * that puts the next frame header into a 5-byte scratch area and payload
 * straight into the application's buffer (no copy in the steady state), and
 * keeps at most one partial frame header per connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <stddef.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include "hb.h"

#define LOCK_WAITERS 0x80000000u
#define PARTIAL_WAIT_MS 200  /* a raw stream starting like our magic */
#define SERVER_WAIT_MAX_MS 200
#define SERVER_WAIT_MIN_MS 2
/* An accepted connection whose first bytes had not arrived at accept: for
 * this long the low-water mark keeps a lone hello from waking the
 * application, and the background thread looks every millisecond (a shimmed
 * client sends its hello right behind the handshake's last ACK). */
#define ACCEPT_HELLO_WAIT_MS 20
/* How long an accepted connection with no byte yet ticks at the pacing
 * floor, ready for a hello that arrives late. */
#define LATE_HELLO_MS 10000
/* Bounds on the work a peer's control frames can cause, however fast it
 * sends them: reads per lingering-close tick (of 2 KiB each), and per
 * non-blocking application read the reads in a row that returned control
 * frames only (each takes at most the receive buffer's bytes; reading and
 * decoding 64 KiB of heartbeats takes about 0.1 ms). A peer that follows
 * the protocol sends a heartbeat per interval and never comes near them. */
#define LINGER_READS 16
#define FLOOD_READS 8


static void send_notice(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent);
static void rx_downgraded(struct hb_conn *c, int fd, const struct hb_rx_info *info);
static int tx_downgrade(struct hb_conn *c, int fd, int wait_ms);
static void elsewhere(struct hb_conn *c, int fd);

/* ---------------------------------------------------------------- locks */

/* The calling thread's id, the owner value of our locks. Cached per thread;
 * a forked child's only thread starts with its parent's cache and resets it
 * (hb_frame_atfork_child): a stale id would let that thread and a later
 * thread that gets the parent's id after it exits both "own" a lock. */
static __thread uint32_t cached_tid __attribute__((tls_model("initial-exec")));

static uint32_t self_tid(void)
{
	if (!cached_tid)
		cached_tid = (uint32_t)hb_os_gettid();
	return cached_tid;
}

/* 0, or -EDEADLK when this thread already holds it (a signal handler
 * re-entering the shim on the same connection). */
static int lock(_Atomic uint32_t *l)
{
	uint32_t me = self_tid(), cur = 0;

	for (int spin = 0;; spin++) {
		cur = 0;
		if (hb_cas_acq_rel(l, &cur, me))
			return 0;
		if ((cur & ~LOCK_WAITERS) == me)
			return -EDEADLK;
		if (spin < 100) {
			hb_cpu_relax();
			continue;
		}
		if (!(cur & LOCK_WAITERS) && !hb_cas_acq_rel(l, &cur, cur | LOCK_WAITERS))
			continue;
		hb_os_futex_wait(l, cur | LOCK_WAITERS, 50);
	}
}

static int trylock(_Atomic uint32_t *l)
{
	uint32_t cur = 0;

	return hb_cas_strong_acq_rel(l, &cur, self_tid());
}

/* Whether an application thread holds the lock (the caller's own included):
 * one blocked in the kernel may hold it for as long as it waits. */
static int app_holds(_Atomic uint32_t *l)
{
	uint32_t cur = hb_load_relaxed(l) & ~LOCK_WAITERS;

	return cur && cur != hb_load_relaxed(&hb_thread_tid);
}

/* The lock, unless an application thread holds it (one blocked in a read
 * may hold it for long); the background thread holds it for microseconds
 * only, and is waited for (at most a few milliseconds). */
static int lock_unless_app(_Atomic uint32_t *l)
{
	for (int spin = 0; spin < 2000; spin++) {
		if (trylock(l))
			return 1;
		if (app_holds(l))
			return 0;
		if (spin < 100)
			hb_cpu_relax();
		else
			hb_os_sleep_us(1);
	}
	return 0;
}

/* For the application's calls: a non-blocking one never waits behind
 * another application thread (one blocked in the kernel holds the lock for
 * as long as it waits); it fails with EAGAIN as the kernel would have had
 * nothing for it. 0 or -EAGAIN. */
static int lock_io(_Atomic uint32_t *l, int nb)
{
	if (nb)
		return lock_unless_app(l) ? 0 : -EAGAIN;
	return lock(l) < 0 ? -EAGAIN : 0;
}

static void unlock(_Atomic uint32_t *l)
{
	if (hb_xchg_acq_rel(l, 0) & LOCK_WAITERS)
		hb_os_futex_wake(l);
}

/* Whether fd still refers to c. A close from another application thread
 * does not wait for a call blocked in the kernel (the kernel's close does
 * not either), so once a blocking system call returned, the number may
 * have been closed and reused for another file: an application thread
 * looks before it makes another system call on fd, and a framed call
 * then ends with what it has, or EBADF. (The use count keeps c itself
 * alive.) */
static int fd_is(const struct hb_conn *c, int fd)
{
	return hb_fd_conn(fd) == c;
}

/* lock_io for a call on fd: a thread that waited for the lock behind one
 * blocked in the kernel may find fd closed when it gets it. 0, -EAGAIN or
 * -EBADF (the lock not held then). */
static int lock_fd(const struct hb_conn *c, int fd, _Atomic uint32_t *l, int nb)
{
	int r = lock_io(l, nb);

	if (r == 0 && !fd_is(c, fd)) {
		unlock(l);
		r = -EBADF;
	}
	return r;
}

/* ---------------------------------------------------------------- helpers */

/* glibc's struct tcp_info stops at tcpi_total_retrans; the kernel's goes on
 * (Linux 4.1+ for bytes_received). The heartbeat tick reads the count of
 * bytes received to know when exactly one heartbeat's worth arrived. */
static int nonblocking(const struct hb_conn *c, int flags)
{
	return (flags & MSG_DONTWAIT) || (hb_load_relaxed(&c->flags) & HB_CF_NONBLOCK);
}

/* Low 32 bits of a monotonic ms time for the connection's 32-bit stamps,
 * never 0 (their "not yet"). Differences of two stamps wrap correctly. */
static inline uint32_t ms32(uint64_t ms)
{
	return (uint32_t)ms ? (uint32_t)ms : 1;
}

/* The shim took bytes from the peer: its own record of the peer's last
 * sign of life, for where TCP_INFO has no tcpi_last_data_recv. */
static inline void rx_seen(struct hb_conn *c)
{
	if (HB_UNLIKELY(hb_load_relaxed(&hb_os_ti_short)))
		hb_store_relaxed(&c->rx_seen, ms32(hb_os_now_ms()));
}

/* Each side of a connection another process may hold too (fork, exec) is
 * owned by the process whose application uses it: the one that reads owns
 * the receive side, the one that writes the send side (rsync's receiver
 * child reads while its generator parent writes). Neither process can see
 * the other's use, so a side this process has not used since is left
 * alone: its bytes and its decoder position are the other process's.
 *
 * owner(): this process may act on the receive side on its own (detect a
 * hello, drain control frames, linger, look at it at exit): the
 * connection is not shared, or the application read it here since. */
static int owner(const struct hb_conn *c)
{
	return (hb_load_relaxed(&c->flags) & (HB_CF_SHARED | HB_CF_CLAIMED)) != HB_CF_SHARED;
}

/* This process may act on the send side on its own (heartbeats, notices,
 * pending control bytes, the half-close frame, waiting at exit): not
 * shared, or the application wrote here since (or the parent of a fork
 * took it back after its pause: see hb_frame_tick). */
static int tx_owner(const struct hb_conn *c)
{
	return (hb_load_relaxed(&c->flags) & (HB_CF_SHARED | HB_CF_TX_CLAIMED)) != HB_CF_SHARED;
}

/* How long the peer may stay silent: our own timeout, whatever its hello
 * announced. A peer that follows the protocol paces its heartbeats to the
 * timeout our hello announced (hb_pace_interval), so a live one is never
 * silent that long; a hello cannot lengthen our detection. */
static uint32_t rx_limit(const struct hb_conn *c)
{
	(void)c;
	return hb_cfg.timeout_ms;
}

/* Our heartbeat interval on this connection: ours, shortened for a peer that
 * tolerates less silence (its hello's timeout), within the pacing floor.
 * The peer's values are read only once the framed rxmode (stored with
 * release after them) says they are there. */
static uint32_t tx_interval(const struct hb_conn *c)
{
	uint32_t pt = hb_load_acquire(&c->rxmode) == HB_RX_FRAMED ? c->peer_timeout_ms : 0;

	return hb_pace_interval(hb_cfg.interval_ms, pt);
}

/* Both directions raw: the connection is plain keepalive mode after all. */
static void settle(struct hb_conn *c)
{
	if (c->mode == HB_MODE_FRAME && hb_load_relaxed(&c->rxmode) == HB_RX_RAW &&
	    hb_load_relaxed(&c->txmode) == HB_TX_RAW) {
		c->mode = HB_MODE_KEEPALIVE; /* it was counted as keepalive all along */
	}
}

/* A framed stream broke the protocol: fail the connection. */
static void fail(struct hb_conn *c, int fd, int err, const char *what)
{
	int expect = 0;
	char extra[160];
	struct hb_buf b;

	hb_store_relaxed(&c->rxmode, HB_RX_FAILED);
	if (!hb_cas_strong_acq_rel(&c->dead, &expect, err))
		return;
	send_notice(c, fd, HB_NR_PROTOCOL, 0);
	hb_os_shutdown(fd, SHUT_RDWR);
	hb_stat_add(HB_ST_PROTO_ERR, 1);
	hb_buf_init(&b, extra, sizeof(extra));
	hb_buf_fmt(&b, ",\"reason\":\"%s\"", what);
	hb_event("protocol_error", fd, c, hb_buf_str(&b));
	hb_log(HB_LOG_WARN, "fd %d: protocol error from peer (%s): connection failed", fd, what);
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

/* The shim's own send/recv. The kernel reports a connection's error
 * (a reset, its own timeout) to the first call that asks, and takes it
 * back then: when that call is ours, the application's next read would
 * see a plain end of stream. Keep it for the application (i_io.c). */
static void keep_err(struct hb_conn *c, long r)
{
	if (r == -ECONNRESET && (hb_load_relaxed(&c->flags) & HB_CF_RD_DOWN))
		return; /* drawn by a heartbeat after our SHUT_RD (hb_frame_shutdown) */
	if (r == -ECONNRESET || r == -ETIMEDOUT || r == -EHOSTUNREACH || r == -ENETUNREACH ||
	    r == -ECONNREFUSED || r == -ECONNABORTED)
		hb_store_relaxed(&c->stolen_err, (uint8_t)-r);
}

static long sh_send(struct hb_conn *c, int fd, const void *b, size_t n, int flags)
{
	long r = hb_os_send(fd, b, n, flags);

	if (r < 0)
		keep_err(c, r);
	return r;
}

static long sh_recv(struct hb_conn *c, int fd, void *b, size_t n, int flags)
{
	long r = hb_os_recv(fd, b, n, flags);

	if (r < 0)
		keep_err(c, r);
	return r;
}

/* Try to push pending control bytes without blocking (txlock held). */
static void flush_pend(struct hb_conn *c, int fd)
{
	long r;

	if (!c->tx.pend_len)
		return;
	r = sh_send(c, fd, c->tx.pend, c->tx.pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r > 0) {
		memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
		c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
	}
	if (HB_UNLIKELY(c->dg_sent) && !c->tx.pend_len)
		hb_store_release(&c->txmode, HB_TX_RAW); /* our downgrade frame is out */
}

/* Delayed ACKs. A send soon after a receive (within the kernel's ACK
 * timeout, 40 ms or more) puts the socket in "interactive" mode, where it
 * delays ACKs; without the shim, a connection's first sends follow no
 * received data and leave it in quick-ACK mode. Our hello exchange is
 * received data: the server's hello answering the client's, or the
 * application's first bytes after the peer's hello, would make the peer's
 * small writes without TCP_NODELAY wait up to 40 ms for the ACK of their
 * first piece (Nagle). Once per connection, after such a send, give the
 * mode back. Harmless if the application already set TCP_QUICKACK: it
 * asks for the same thing. */
static void quickack(int fd)
{
	hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_QUICKACK, 1);
}

static void app_sent(struct hb_conn *c, int fd)
{
	if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_QUICKACK)) {
		hb_and_acq_rel(&c->flags, ~HB_CF_QUICKACK);
		if (fd_is(c, fd))
			quickack(fd);
	}
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
static uint32_t partial_mark(int fd)
{
	int inq = 0;

	if (hb_os_ioctl(fd, SIOCINQ, &inq) < 0 || inq <= 0 || inq >= HB_HELLO_LEN)
		return 1;
	return (uint32_t)inq + 1;
}

static void set_lowat(struct hb_conn *c, int fd)
{
	uint32_t want;

	if (hb_load_relaxed(&c->flags) & HB_APP_RCVLOWAT)
		return;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT &&
	    (c->client || hb_os_now_ms() < c->opened_ms + ACCEPT_HELLO_WAIT_MS))
		/* A client waiting for the server's hello, or a server in the
		 * first moments after accept: the hello alone must not wake the
		 * application; the background thread looks for it every
		 * millisecond or so while it is due (hb_frame_tick). */
		want = HB_HELLO_LEN + 1;
	else if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT && c->partial_at)
		/* A prefix of the magic is queued and may be a raw stream's
		 * first bytes: the application hears of it when a byte more
		 * arrives (which may decide), or when the background thread
		 * decides "raw" at the end of the wait (the mark drops to 1),
		 * never over and over while nothing changes. */
		want = partial_mark(fd);
	else if (hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED)
		want = 1;
	else if (c->rx.remaining)
		want = c->rx.remaining < FRAME_LOWAT ? c->rx.remaining : FRAME_LOWAT;
	else if (c->rx.hdr_len)
		want = 1;
	else
		want = FRAME_LOWAT;
	if (want == (c->lowat ? c->lowat : 1u))
		return;
	if (hb_os_setsockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT, (int)want) == 0)
		c->lowat = (uint8_t)want;
}

static void drain(struct hb_conn *c, int fd);
static int detect(struct hb_conn *c, int fd, int wait);
static void claim(struct hb_conn *c, uint32_t side);

/* ---------------------------------------------------------------- negotiation */

void hb_frame_client(int fd, struct hb_conn *c, int established)
{
	c->mode = HB_MODE_FRAME;
	c->client = 1;
	hb_store_relaxed(&hb_frame_seen, 1);
	hb_store_relaxed(&c->rxmode, HB_RX_DETECT);
	hb_store_relaxed(&c->txmode, HB_TX_FRAMED);
	apply_frame_keepalive(fd, c);
	set_lowat(c, fd);
	if (lock(&c->txlock) == 0) {
		queue_hello(c);
		if (established)
			flush_pend(c, fd);
		unlock(&c->txlock);
	}
}

_Atomic int hb_frame_seen;

/* For the poll family: may the application read now? Control frames at the
 * head are consumed first. 1 when application bytes (or the end of the
 * stream, or an error) are there, 0 when only control frames were. Any
 * doubt (another thread reading) says 1: a readiness report is never
 * withheld wrongly. An application that waits here for the connection to
 * become readable is its reader: it claims the receive side as its read
 * would (a parent that forked a command and polls its connection again
 * is not woken by heartbeats into a read that blocks). */
int hb_frame_app_readable(struct hb_conn *c, int fd)
{
	uint8_t p[2];
	int inq = 0, ready = 1;
	long r;

	elsewhere(c, fd);
	if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_SHARED))
		claim(c, HB_CF_CLAIMED);
	if (hb_load_acquire(&c->rxmode) == HB_RX_RAW || hb_load_relaxed(&c->dead) || !owner(c) ||
	    !lock_unless_app(&c->rxlock))
		return 1;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT) {
		/* The peer's hello (and heartbeats behind it) may be all there
		 * is: decide now. Still undecided = nothing, or a prefix of
		 * the magic that the background thread resolves in time. */
		if (detect(c, fd, 0) == -EAGAIN) {
			unlock(&c->rxlock);
			return 0;
		}
		set_lowat(c, fd);
	}
	if (hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED) {
		unlock(&c->rxlock);
		return 1;
	}
	if (!hb_rx_at_boundary(&c->rx)) {
		unlock(&c->rxlock);
		return 1; /* inside a data frame: what is queued is the application's */
	}
	for (int round = 0; round < 4; round++) {
		drain(c, fd);
		if (hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED) {
			/* Downgraded by what the drain took: whatever is queued
			 * behind it is the application's (or the end of the
			 * stream). */
			r = sh_recv(c, fd, p, 1, MSG_PEEK | MSG_DONTWAIT);
			ready = r != -EAGAIN;
			break;
		}
		if (hb_os_ioctl(fd, SIOCINQ, &inq) != 0)
			break;
		if (inq == 0) {
			/* Nothing queued: the end of the stream, or no reason. */
			r = sh_recv(c, fd, p, 1, MSG_PEEK | MSG_DONTWAIT);
			ready = r != -EAGAIN;
			break;
		}
		/* A control frame at the head: the start of one still arriving
		 * (below the mark), or whole ones that arrived after the
		 * drain's peek (a peer's heartbeats held back by Nagle come
		 * three at once): drain again. */
		r = sh_recv(c, fd, p, 1, MSG_PEEK | MSG_DONTWAIT);
		ready = !(r == 1 && p[0] == HB_FT_CONTROL);
		if (ready || inq < FRAME_LOWAT)
			break;
		ready = 1;
	}
	unlock(&c->rxlock);
	return ready;
}

/* The application saw its non-blocking connect complete: send our hello
 * if it is still queued. */
void hb_frame_connected(struct hb_conn *c, int fd)
{
	if (!c->tx.pend_len || hb_load_acquire(&c->txmode) != HB_TX_FRAMED || !trylock(&c->txlock))
		return;
	flush_pend(c, fd);
	unlock(&c->txlock);
}

void hb_frame_server(int fd, struct hb_conn *c)
{
	c->mode = HB_MODE_FRAME;
	hb_store_relaxed(&c->rxmode, HB_RX_DETECT);
	hb_store_relaxed(&c->txmode, HB_TX_UNDECIDED);
	hb_store_relaxed(&hb_frame_seen, 1);
}

void hb_frame_accepted(int fd, struct hb_conn *c)
{
	/* A shimmed client's hello is usually there already: decide now, so
	 * that it never wakes the application on its own. */
	if (lock(&c->rxlock) == 0) {
		detect(c, fd, 0);
		set_lowat(c, fd);
		unlock(&c->rxlock);
	}
}

/* The peer's direction turned out raw or framed; decide ours if it still
 * waits (server side). tx is try-locked: a writer holding it has already
 * decided. */
static void decide_tx(struct hb_conn *c, int fd, int framed)
{
	if (hb_load_acquire(&c->txmode) != HB_TX_UNDECIDED || !trylock(&c->txlock))
		return;
	if (hb_load_relaxed(&c->txmode) == HB_TX_UNDECIDED) {
		if (framed) {
			queue_hello(c);
			flush_pend(c, fd);
			quickack(fd);
			hb_store_release(&c->txmode, HB_TX_FRAMED);
		} else {
			hb_store_release(&c->txmode, HB_TX_RAW);
		}
	}
	unlock(&c->txlock);
}

static _Atomic int slow_peer_warned, strict_peer_warned;

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
	if (hb_load_relaxed(&c->rxmode) != HB_RX_DETECT)
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
			r = sh_recv(c, fd, p, 1, MSG_PEEK);
			if (r < 0)
				return (int)r; /* end of stream: seen again just below */
			if (!fd_is(c, fd))
				return -EBADF;
		}
		r = sh_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);

		if (r == 0) {
			hb_store_release(&c->rxmode, HB_RX_RAW);
			decide_tx(c, fd, 0);
			settle(c);
			set_lowat(c, fd);
			return 0;
		}
		if (r < 0)
			return (int)r;
		cls = hb_hello_classify(p, (size_t)r, &h);
		if (cls == 1) {
			r = sh_recv(c, fd, p, HB_HELLO_LEN, MSG_DONTWAIT);
			if (r != HB_HELLO_LEN) {
				fail(c, fd, ECONNRESET, "hello");
				return 0;
			}
			/* peer_interval_ms: how often the peer heartbeats toward
			 * us. A pacing peer shortens its interval for our
			 * timeout exactly as we do for its; an older one keeps
			 * its own, and our timeout applies all the same. */
			c->peer_interval_ms = (h.flags & HB_HF_PACED)
						      ? hb_pace_interval(h.interval_ms, hb_cfg.timeout_ms)
						      : h.interval_ms;
			c->peer_timeout_ms = h.timeout_ms;
			c->peer_dg = !!(h.flags & HB_HF_DOWNGRADE);
			memset(&c->rx, 0, sizeof(c->rx));
			if (hb_conn_public_mode(c) != HB_MODE_FRAME) {
				hb_stat_add(HB_ST_CONN_KEEPALIVE, -1);
				hb_stat_add(HB_ST_CONN_FRAME, 1);
			}
			hb_or_acq_rel(&c->flags, HB_CF_QUICKACK);
			hb_store_release(&c->rxmode, HB_RX_FRAMED);
			hb_store_relaxed(&hb_frame_seen, 1);
			set_lowat(c, fd);
			if (!c->client)
				apply_frame_keepalive(fd, c);
			decide_tx(c, fd, 1);
			hb_log(HB_LOG_DEBUG, "fd %d: peer speaks hbshim v%u (interval %u ms)", fd,
			       h.version, h.interval_ms);
			/* Settings that cannot keep an idle connection alive:
			 * said once per process (a server may accept thousands
			 * of connections from the same peer). */
			if (2ull * c->peer_interval_ms > hb_cfg.timeout_ms &&
			    !hb_xchg_acq_rel(&slow_peer_warned, 1))
				hb_log(HB_LOG_WARN,
				       "fd %d: the peer heartbeats every %u ms%s, our timeout is %u ms: "
				       "an idle peer may be declared dead",
				       fd, c->peer_interval_ms,
				       (h.flags & HB_HF_PACED) ? "" : " (an hbshim that does not pace)",
				       hb_cfg.timeout_ms);
			if ((uint64_t)HB_PACE_DIV * hb_pace_interval(hb_cfg.interval_ms, h.timeout_ms) >
			    h.timeout_ms && !hb_xchg_acq_rel(&strict_peer_warned, 1))
				hb_log(HB_LOG_WARN,
				       "fd %d: the peer's timeout is %u ms, we heartbeat every %u ms: "
				       "it may declare us dead when idle",
				       fd, h.timeout_ms, hb_pace_interval(hb_cfg.interval_ms, h.timeout_ms));
			if (hb_events_on()) {
				char extra[96];
				struct hb_buf b;

				hb_buf_init(&b, extra, sizeof(extra));
				hb_buf_fmt(&b, ",\"peer_interval_ms\":%u,\"peer_timeout_ms\":%u",
					   h.interval_ms, h.timeout_ms);
				hb_event("framed", fd, c, hb_buf_str(&b));
			}
			return 0;
		}
		if (cls == -2) {
			fail(c, fd, EPROTO, "version");
			return 0;
		}
		if (cls == -3) {
			fail(c, fd, EPROTO, "hello");
			return 0;
		}
		if (cls == -1) {
			hb_store_release(&c->rxmode, HB_RX_RAW);
			decide_tx(c, fd, 0);
			settle(c);
			set_lowat(c, fd);
			return 0;
		}
		/* A prefix of our magic: wait a little for the rest (the
		 * deadline lives in the connection: the background thread looks
		 * again on later ticks). */
		if (!c->partial_at) {
			c->partial_at = ms32(hb_os_now_ms());
			/* The wait ends in PARTIAL_WAIT_MS: the background
			 * thread decides then (hb_frame_tick), and must know. */
			if (self_tid() != hb_load_relaxed(&hb_thread_tid))
				hb_thread_poke(c);
		}
		if ((uint32_t)hb_os_now_ms() - c->partial_at >= PARTIAL_WAIT_MS) {
			hb_store_release(&c->rxmode, HB_RX_RAW);
			decide_tx(c, fd, 0);
			settle(c);
			set_lowat(c, fd);
			return 0;
		}
		if (!wait) {
			set_lowat(c, fd);
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
	if (!owner(c))
		claim(c, HB_CF_CLAIMED);
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
		if (trylock(&c->rxlock)) {
			if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
				detect(c, fd, 0);
			unlock(&c->rxlock);
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
	/* Still unknown (or raw): our direction stays raw. */
	if (hb_load_acquire(&c->txmode) == HB_TX_UNDECIDED && lock(&c->txlock) == 0) {
		if (hb_load_relaxed(&c->txmode) == HB_TX_UNDECIDED)
			hb_store_release(&c->txmode, HB_TX_RAW);
		unlock(&c->txlock);
	}
	settle(c);
}

/* ---------------------------------------------------------------- read path */

/* Decode got bytes that arrived through the (a, scratch, b) layout. */
static long absorb(struct hb_conn *c, int fd, uint8_t *buf, size_t alen, uint8_t *scratch,
		   size_t slen, size_t boff, size_t got)
{
	struct hb_rx_info info = { 0 };
	size_t app = 0, take;
	ssize_t r;

	if (got)
		rx_seen(c);
	take = got < alen ? got : alen;
	if (take) {
		r = hb_rx_decode(&c->rx, buf, take, &info);
		if (r < 0)
			goto bad;
		app += (size_t)r;
		got -= take;
	}
	take = got < slen ? got : slen;
	if (take) {
		r = hb_rx_decode(&c->rx, scratch, take, &info);
		if (r != 0) {
			/* By construction the scratch area holds header bytes only. */
			if (r > 0)
				r = -EPROTO;
			goto bad;
		}
		got -= take;
	}
	if (got) {
		r = hb_rx_decode(&c->rx, buf + boff, got, &info);
		if (r < 0)
			goto bad;
		if (boff != app && r > 0)
			memmove(buf + app, buf + boff, (size_t)r);
		app += (size_t)r;
	}
	if (info.heartbeats)
		hb_stat_add(HB_ST_HB_RECV, info.heartbeats);
	if (HB_UNLIKELY(info.downgrade))
		rx_downgraded(c, fd, &info);
	if (c->rx.notice_reason) {
		hb_log(HB_LOG_INFO, "fd %d: peer declared the connection dead (reason %u)", fd,
		       c->rx.notice_reason);
		c->rx.notice_reason = 0;
	}
	return (long)app;
bad:
	fail(c, fd, EPROTO, r == -EMSGSIZE ? "length" : "frame");
	return -EPROTO;
}

/*
 * Bulk reads. A reader with room for several frames, while the sender keeps
 * writing one size, would get one frame per recvmsg: each read stops at the
 * next header, which must not land in the application's buffer. So the
 * next frames are predicted to be data frames of the last length P: one
 * recvmsg scatters their headers into slots and their payloads back to back
 * into buf (the layout never exceeds n bytes in all). A header that is what
 * was predicted costs nothing more. At the first one that is not (a
 * heartbeat, another size, a partial header), everything from there on is
 * put back in stream order inside buf (it fits: it is at most what landed
 * there plus the slots' bytes, and the layout was at most n) and decoded in
 * place by the general decoder. rxlock held; returns as read_once.
 */
#define PRED_MAX 8
#define PRED_MIN_LEN 1024

static long read_predicted(struct hb_conn *c, int fd, uint8_t *buf, size_t n, int flags)
{
	uint8_t slot[PRED_MAX][HB_DATA_HDR_LEN];
	struct iovec v[2 * PRED_MAX + 1];
	struct msghdr m;
	size_t rem = c->rx.remaining, P = c->rx.last_len, tot = 0, pos[PRED_MAX];
	size_t app = 0, left;
	int k = 0, ns = 0, j;
	long got;

	if (rem) {
		v[k++] = (struct iovec){ buf, rem };
		tot = rem;
	}
	while (ns < PRED_MAX && tot + HB_DATA_HDR_LEN + P <= n) {
		pos[ns] = rem + (size_t)ns * P; /* where slot ns's payload goes */
		v[k++] = (struct iovec){ slot[ns], HB_DATA_HDR_LEN };
		v[k++] = (struct iovec){ buf + pos[ns], P };
		tot += HB_DATA_HDR_LEN + P;
		ns++;
	}
	memset(&m, 0, sizeof(m));
	m.msg_iov = v;
	m.msg_iovlen = (size_t)k;
	got = hb_next_recvmsg(fd, &m, flags & ~MSG_WAITALL);
	if (got <= 0)
		return got == 0 ? -ENODATA : got;
	rx_seen(c);
	/* The rest of the current frame. */
	left = (size_t)got;
	if (rem) {
		size_t t = left < rem ? left : rem;

		c->rx.remaining -= (uint32_t)t;
		app = t;
		left -= t;
	}
	/* Predicted frames, as long as they are what was predicted. */
	for (j = 0; j < ns && left; j++) {
		size_t r;

		if (left < HB_DATA_HDR_LEN)
			break;
		r = left - HB_DATA_HDR_LEN < P ? left - HB_DATA_HDR_LEN : P;
		if (!hb_rx_data_fast(&c->rx, slot[j], r))
			break;
		left -= HB_DATA_HDR_LEN + r;
		app += r;
		if (c->rx.remaining) {
			/* A longer frame: its payload goes on into slot j + 1. */
			j++;
			break;
		}
	}
	if (!left)
		return (long)app;
	/* From slot j on: back in stream order at buf + app (= pos[j]), the
	 * payload areas moved right past the slot bytes that precede them,
	 * last first, then the slot bytes copied in; then decoded in place. */
	{
		size_t seglen[2 * PRED_MAX], rest = left, dst = app;
		int nseg = 0;

		for (int i = j; i < ns && rest; i++) {
			size_t h = rest < HB_DATA_HDR_LEN ? rest : HB_DATA_HDR_LEN, p;

			seglen[nseg++] = h;
			rest -= h;
			p = rest < P ? rest : P;
			seglen[nseg++] = p;
			rest -= p;
		}
		for (int s2 = nseg - 1; s2 >= 0; s2--) {
			int i = j + s2 / 2;
			size_t d = dst;

			for (int q = 0; q < s2; q++)
				d += seglen[q];
			if (s2 & 1) {
				if (seglen[s2] && d != pos[i])
					memmove(buf + d, buf + pos[i], seglen[s2]);
			} else {
				memcpy(buf + d, slot[i], seglen[s2]);
			}
		}
		got = absorb(c, fd, buf + app, 0, NULL, 0, 0, left);
		if (got < 0)
			return got;
		return (long)(app + (size_t)got);
	}
}

/* One recvmsg on a framed direction into buf[0..n). Returns application
 * bytes (0 = only control frames arrived), -ENODATA at end of stream, or
 * -errno. rxlock held. */
static long read_once(struct hb_conn *c, int fd, uint8_t *buf, size_t n, int flags,
		      struct msghdr *am)
{
	uint8_t scratch[HB_HDR_MAX], one[HB_NOTICE_LEN + SMALL_FRAME];
	struct iovec v[3];
	struct msghdr m;
	size_t alen = 0, slen, boff = 0;
	uint32_t rem = c->rx.remaining;
	int k = 0;
	long got;

	if (HB_UNLIKELY(c->rx.raw)) {
		/* The peer downgraded within this call: the rest is raw. */
		got = hb_next_recv(fd, buf, n, flags & ~MSG_WAITALL);
		return got == 0 ? -ENODATA : got;
	}
	/* (A tail below the low-water mark is read alone, as below.) */
	if (c->rx.last_len >= PRED_MIN_LEN && !c->rx.hdr_len &&
	    (!rem || rem >= FRAME_LOWAT) && rem < n &&
	    n - rem >= 2 * ((size_t)c->rx.last_len + HB_DATA_HDR_LEN) &&
	    (!am || (!am->msg_name && !am->msg_control))) {
		if (am)
			am->msg_flags = 0;
		return read_predicted(c, fd, buf, n, flags);
	}

	if (rem) {
		if (rem >= n || rem < FRAME_LOWAT) {
			/* A tail shorter than the low-water mark is read alone:
			 * the kernel's wait target is min(SO_RCVLOWAT, length). */
			if (rem < n)
				n = rem;
			v[k++] = (struct iovec){ buf, n };
			alen = n;
			slen = 0;
		} else {
			v[k++] = (struct iovec){ buf, rem };
			alen = rem;
			slen = HB_DATA_HDR_LEN;
			v[k++] = (struct iovec){ scratch, slen };
			boff = rem;
			v[k++] = (struct iovec){ buf + rem, n - rem };
		}
	} else {
		/* The rest of a header, never a payload byte: a data header is
		 * 5 bytes, a partial notice may need up to 7. */
		slen = (c->rx.hdr_len < HB_DATA_HDR_LEN ? HB_DATA_HDR_LEN : HB_NOTICE_LEN) -
		       c->rx.hdr_len;
		v[k++] = (struct iovec){ scratch, slen };
		v[k++] = (struct iovec){ buf, n };
	}
	if (!am || (!am->msg_name && !am->msg_control)) {
		size_t want = 0;

		if (am)
			am->msg_flags = 0;

		for (int i = 0; i < k; i++)
			want += v[i].iov_len;
		if (k == 1) {
			got = hb_next_recv(fd, v[0].iov_base, v[0].iov_len, flags & ~MSG_WAITALL);
			goto got;
		}
		if (want <= sizeof(one)) {
			/* Small: one buffer, then spread as recvmsg would. */
			got = hb_next_recv(fd, one, want, flags & ~MSG_WAITALL);
			for (size_t i = 0, at = 0; got > 0 && at < (size_t)got; i++) {
				size_t t = (size_t)got - at < v[i].iov_len ? (size_t)got - at : v[i].iov_len;

				memcpy(v[i].iov_base, one + at, t);
				at += t;
			}
			goto got;
		}
	}
	memset(&m, 0, sizeof(m));
	m.msg_iov = v;
	m.msg_iovlen = (size_t)k;
	if (am) {
		m.msg_name = am->msg_name;
		m.msg_namelen = am->msg_namelen;
		m.msg_control = am->msg_control;
		m.msg_controllen = am->msg_controllen;
	}
	got = hb_next_recvmsg(fd, &m, flags & ~MSG_WAITALL);
	if (am) {
		am->msg_namelen = m.msg_namelen;
		am->msg_controllen = m.msg_controllen;
		am->msg_flags = m.msg_flags;
	}
got:
	if (got < 0)
		return got;
	if (got == 0)
		return -ENODATA;
	/* The common case: one data header, then only its payload. */
	if (!alen && slen == HB_DATA_HDR_LEN && (size_t)got >= HB_DATA_HDR_LEN &&
	    hb_rx_data_fast(&c->rx, scratch, (size_t)got - HB_DATA_HDR_LEN)) {
		rx_seen(c);
		return (long)((size_t)got - HB_DATA_HDR_LEN);
	}
	return absorb(c, fd, buf, alen, scratch, slen, boff, (size_t)got);
}

/* MSG_PEEK: consume control frames at the head for real, then peek into the
 * current data frame only (a peek may return fewer bytes than are queued).
 * 0 after PEEK_HDRS header reads that found control frames only (the
 * caller's flood budget decides). rxlock held. */
#define PEEK_HDRS 64
static long peek_framed(struct hb_conn *c, int fd, uint8_t *buf, size_t n, int flags)
{
	for (int hdrs = 0; hdrs < PEEK_HDRS; hdrs++) {
		uint8_t scratch[HB_HDR_MAX];
		long r;

		if (HB_UNLIKELY(c->rx.raw)) {
			r = hb_os_recv(fd, buf, n, flags & ~MSG_WAITALL);
			return r == 0 ? -ENODATA : r;
		}
		if (c->rx.remaining) {
			size_t want = n < c->rx.remaining ? n : c->rx.remaining;

			r = hb_os_recv(fd, buf, want, flags & ~MSG_WAITALL);
			if (r > 0)
				rx_seen(c);
			return r == 0 ? -ENODATA : r;
		}
		r = hb_os_recv(fd, scratch,
			       (c->rx.hdr_len < HB_DATA_HDR_LEN ? HB_DATA_HDR_LEN : HB_NOTICE_LEN) -
				       c->rx.hdr_len,
			       (flags & ~(MSG_PEEK | MSG_WAITALL)));
		if (r <= 0)
			return r == 0 ? -ENODATA : r;
		r = absorb(c, fd, NULL, 0, scratch, (size_t)r, 0, (size_t)r);
		if (r < 0)
			return r;
		if (!fd_is(c, fd))
			return -EBADF;
		set_lowat(c, fd);
	}
	return 0;
}

/* A non-blocking read that gives up on a stream of control frames says
 * EAGAIN while bytes are queued: an edge-triggered poller would not hear of
 * them again until more arrive. Setting SO_RCVLOWAT (to the value it has)
 * makes the kernel signal readiness anew when enough is queued. */
static void rearm(struct hb_conn *c, int fd)
{
	int v = c->lowat ? c->lowat : 1;
	socklen_t l = sizeof(v);

	if ((hb_load_relaxed(&c->flags) & HB_APP_RCVLOWAT) &&
	    hb_os_getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &l) < 0)
		return;
	hb_os_setsockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT, v);
}

/*
 * Signals in a blocking read that drains a flood of control frames. The
 * kernel would have put the reader to sleep (nothing for the application),
 * where a signal whose handler lacks SA_RESTART, or any handler when
 * SO_RCVTIMEO is set, ends the read with EINTR; but our reads keep
 * returning control frames and never sleep, and a handler that runs on the
 * way out of one of them leaves no trace we could see. So after the first
 * slice of such reads, signals are blocked while we drain (reads are then
 * non-blocking), and after each slice the pending ones are delivered under
 * the application's own mask, their handlers run, and the read ends with
 * EINTR where the kernel's would have. SIGKILL and SIGSTOP cannot be
 * blocked; glibc's internal signals (32, 33) are left alone.
 */
struct flood_sig {
	uint64_t old;
	int masked;
};

#define SIGBIT(s) (1ull << ((s) - 1))

static void flood_mask(struct flood_sig *f)
{
	uint64_t all = ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP) | SIGBIT(32) | SIGBIT(33));

	if (!f->masked && hb_os_sigmask(SIG_BLOCK, &all, &f->old) == 0)
		f->masked = 1;
}

/* 1 when every signal in set has a handler with SA_RESTART, or none. */
static int restartable(uint64_t set)
{
	for (int sig = 1; sig <= 64; sig++) {
		struct sigaction sa;

		if (!(set & SIGBIT(sig)) || sigaction(sig, NULL, &sa) < 0)
			continue;
		if (!(sa.sa_flags & SA_SIGINFO) &&
		    (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return 0;
	}
	return 1;
}

/* Deliver the signals that came during the slice; -EINTR when the read
 * ends with it. keep: stay masked for another slice (unless it ends). */
static int flood_signals(struct flood_sig *f, int keep, int timeo)
{
	uint64_t pend = 0;
	int r = 0;

	if (!f->masked)
		return 0;
	if (hb_os_sigpending(&pend) == 0 && (pend & ~f->old) &&
	    hb_os_sigdeliver(&f->old) == -EINTR && (timeo || !restartable(pend & ~f->old)))
		r = -EINTR;
	if (!keep || r) {
		hb_os_sigmask(SIG_SETMASK, &f->old, NULL);
		f->masked = 0;
	}
	return r;
}

/* Wait for readability within the app's SO_RCVTIMEO, after control frames
 * were consumed. 0 = go on, -EAGAIN = timed out, -EINTR. */
static int wait_readable(int fd, uint64_t deadline)
{
	uint64_t now = hb_os_now_ms();
	short rev;
	long r;

	if (now >= deadline)
		return -EAGAIN;
	r = hb_os_poll1(fd, POLLIN, (int)(deadline - now), &rev);
	if (r == 0)
		return -EAGAIN;
	return r < 0 ? (int)r : 0;
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

/* The parent's pause starts at the first fork that finds the connection
 * settled: a process forking more often than the pause (a client running
 * a command every half second) would otherwise never send a heartbeat or
 * look at its peer again, and its live connections were declared dead. */
void hb_frame_mark_shared(struct hb_conn *c, uint64_t now)
{
	if (!(hb_load_acquire(&c->flags) & HB_CF_FORKED))
		c->forked_at = ms32(now);
	hb_and_acq_rel(&c->flags, ~(HB_CF_CLAIMED | HB_CF_TX_CLAIMED));
	hb_or_acq_rel(&c->flags, HB_CF_FORKED | HB_CF_SHARED);
}

static void mark_parent(int fd, struct hb_conn *c, void *arg)
{
	if (c->mode == HB_MODE_FRAME && c->kind == HB_KIND_CONNECTED)
		hb_frame_mark_shared(c, *(uint64_t *)arg);
}

void hb_frame_atfork_prepare(void)
{
	uint64_t now = hb_os_now_ms();

	hb_fd_foreach(mark_parent, &now);
}

/* Every connection that is or may become framed (an accepted one still
 * waiting for a hello included). The child starts owning neither side,
 * whatever the parent's flags were when it forked (a thread of the parent
 * may have used the connection after the prepare handler cleared them),
 * and the parent's take-back of the send side (FORKED) is not its own. */
static void mark_child(int fd, struct hb_conn *c, void *arg)
{
	(void)arg;
	if (c->mode == HB_MODE_FRAME && c->kind == HB_KIND_CONNECTED) {
		hb_and_acq_rel(&c->flags, ~(HB_CF_CLAIMED | HB_CF_TX_CLAIMED | HB_CF_FORKED));
		hb_or_acq_rel(&c->flags, HB_CF_INHERITED | HB_CF_SHARED);
	}
}

void hb_frame_atfork_child(void)
{
	cached_tid = 0;
	hb_fd_foreach(mark_child, NULL);
}

/* This process uses one side of the connection (side: HB_CF_CLAIMED for
 * the receive side, HB_CF_TX_CLAIMED for the send side): that side's
 * background work is its job from now on. A side claimed after a fork
 * starts from the decoder or encoder state the fork copied, which is
 * where the stream is: the other process has not used that side since,
 * or it would own it. Both processes reading, or both writing, is a
 * race of the application's that the frames do not survive (README). */
static void claim(struct hb_conn *c, uint32_t side)
{
	uint32_t fl;

	/* Adopted across exec: timers start with the first use. */
	if (HB_UNLIKELY(!(hb_load_relaxed(&c->flags) & HB_CF_SCHEDULED)))
		hb_thread_schedule(c);
	fl = hb_load_relaxed(&c->flags);
	if (HB_UNLIKELY(fl & (HB_CF_FORKED | HB_CF_INHERITED | HB_CF_SHARED))) {
		/* FORKED is the parent's pending take-back of the send side
		 * (hb_frame_tick): only a write settles it. */
		uint32_t clear = HB_CF_INHERITED | (side == HB_CF_TX_CLAIMED ? HB_CF_FORKED : 0);
		uint32_t set = (fl & HB_CF_SHARED) ? side : 0;

		if ((fl & clear) || (set & ~fl)) {
			if (fl & clear)
				hb_and_acq_rel(&c->flags, ~clear);
			if (set & ~fl)
				hb_or_acq_rel(&c->flags, set);
			hb_thread_ensure();
		}
	}
}

static long frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags);
static long frame_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags);

/* The kernel's checks of a message's iovec array, made before the shim
 * reads or sums it: more than IOV_MAX entries is EMSGSIZE (readv and writev
 * answer EINVAL before calling here); a length above SSIZE_MAX, or lengths
 * whose sum passes SSIZE_MAX, is EINVAL. (Linux answers EFAULT for such a
 * sum, as no buffer that long can exist; POSIX names EINVAL.) This check
 * bounds every sum of the lengths the framed paths make. */
static long iov_check(const struct msghdr *m)
{
	size_t t = 0;

	if ((size_t)m->msg_iovlen > IOV_MAX) /* an int on musl: negative is too many */
		return -EMSGSIZE;
	if (!m->msg_iovlen)
		return 0;
	if (!m->msg_iov)
		return -EFAULT;
	for (size_t i = 0; i < (size_t)m->msg_iovlen; i++) {
		size_t l = m->msg_iov[i].iov_len;

		if (l > (size_t)SSIZE_MAX || l > (size_t)SSIZE_MAX - t)
			return -EINVAL;
		t += l;
	}
	return 0;
}

/* A call on a connection another process holds too ended with the end of
 * the stream (r == 0) or a broken pipe, while the peer has sent nothing
 * for our timeout and no FIN of its own (the socket is in FIN_WAIT: our
 * side was shut, here or in the other process): the other process's
 * background thread found the peer dead and shut the socket down, which
 * only its own memory records. Each process holds its own view of the
 * connection: report the same verdict here, never a clean end. */
static __attribute__((noinline, cold)) long other_verdict(struct hb_conn *c, int fd, long r)
{
	struct hb_tcp_info x;
	uint32_t fl = hb_load_relaxed(&c->flags);

	/* A writer that never read here may not have seen the peer's hello
	 * (the reader did): undecided counts, a raw peer never heartbeats. */
	if (HB_LIKELY(!(fl & HB_CF_SHARED)) || (fl & (HB_CF_SHUT_RD | HB_CF_RD_DOWN)) ||
	    hb_load_acquire(&c->rxmode) == HB_RX_RAW || hb_load_acquire(&c->rxmode) == HB_RX_FAILED ||
	    hb_load_relaxed(&c->dead) || hb_os_tcp_info(fd, &x) < 0)
		return r;
	if ((x.ti.tcpi_state != TCP_FIN_WAIT1 && x.ti.tcpi_state != TCP_FIN_WAIT2) ||
	    !HB_TI_HAS(&x, ti.tcpi_last_data_recv) || x.ti.tcpi_last_data_recv < rx_limit(c))
		return r;
	hb_conn_declare_dead(c, fd, HB_DEAD_HEARTBEAT, x.ti.tcpi_last_data_recv);
	return -(long)hb_load_acquire(&c->dead);
}

/* The entry points hold a use count so that the background thread never
 * recycles a connection another thread still works on (a close racing a
 * blocked read in another thread). */
long hb_frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	long r;

	if ((r = iov_check(m)) < 0)
		return r;
	hb_add_acq_rel(&c->users, 1);
	elsewhere(c, fd);
	claim(c, HB_CF_CLAIMED);
	if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_SHUT_RD)) {
		/* Read side shut down, the kernel's not yet: what is queued,
		 * then the end of the stream, never a wait. */
		r = frame_recv(c, fd, m, flags | MSG_DONTWAIT);
		if (r == -EAGAIN)
			r = 0;
	} else {
		r = frame_recv(c, fd, m, flags);
	}
	if (HB_UNLIKELY(r == -ECONNRESET) && (hb_load_relaxed(&c->flags) & HB_CF_RD_DOWN))
		r = 0; /* a heartbeat after our SHUT_RD (hb_frame_shutdown) */
	if (HB_UNLIKELY(r == 0) && m->msg_iovlen) {
		size_t want = 0;

		for (size_t i = 0; i < m->msg_iovlen; i++)
			want += m->msg_iov[i].iov_len;
		if (want)
			r = other_verdict(c, fd, r);
	}
	hb_sub_acq_rel(&c->users, 1);
	return r;
}

long hb_frame_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags)
{
	long r;

	if ((r = iov_check(m)) < 0)
		return r;
	hb_add_acq_rel(&c->users, 1);
	elsewhere(c, fd);
	claim(c, HB_CF_TX_CLAIMED);
	r = frame_send(c, fd, m, flags);
	if (HB_UNLIKELY(r == -EPIPE))
		r = other_verdict(c, fd, r);
	hb_sub_acq_rel(&c->users, 1);
	return r;
}

/* MSG_TRUNC on a stream socket: the kernel drops the bytes (or, with
 * MSG_PEEK, counts them) without copying; the buffer may be NULL
 * (lighttpd drains a lingering close with recv(fd, NULL, n, MSG_TRUNC)).
 * Passed down, it would leave the decoder parsing header bytes the kernel
 * never wrote. Read through a scratch buffer instead and count the
 * application bytes: n at most, frames as always. rxlock not held. */
static long frame_discard(struct hb_conn *c, int fd, size_t n, int flags)
{
	uint8_t scratch[4096];
	size_t total = 0;

	flags &= ~MSG_TRUNC;
	while (total < n && (!total || fd_is(c, fd))) {
		size_t want = n - total < sizeof(scratch) ? n - total : sizeof(scratch);
		struct iovec v = { scratch, want };
		struct msghdr mm;
		long r;

		memset(&mm, 0, sizeof(mm));
		mm.msg_iov = &v;
		mm.msg_iovlen = 1;
		r = frame_recv(c, fd, &mm, total && !(flags & MSG_WAITALL) ? flags | MSG_DONTWAIT : flags);
		if (r <= 0)
			return total ? (long)total : r;
		total += (size_t)r;
		if ((flags & MSG_PEEK) || (size_t)r < want)
			break; /* a peek sees one frame's bytes at most; short: all there was */
	}
	return (long)total;
}

static long frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	uint8_t *buf = NULL;
	size_t n = 0, total = 0;
	uint64_t deadline = 0;
	int nb = nonblocking(c, flags), r, wait_all, ctl_reads = 0;
	struct flood_sig fs = { 0, 0 };
	int masked = 0; /* fs.masked when this round's read began */
	long got;

	if (HB_UNLIKELY(flags & MSG_TRUNC)) {
		for (size_t i = 0; m->msg_iov && i < (size_t)m->msg_iovlen; i++)
			n += m->msg_iov[i].iov_len;
		return frame_discard(c, fd, n, flags);
	}

	for (size_t i = 0; m->msg_iov && i < (size_t)m->msg_iovlen; i++) {
		if (m->msg_iov[i].iov_len) {
			buf = m->msg_iov[i].iov_base;
			n = m->msg_iov[i].iov_len;
			break;
		}
	}
	if ((r = lock_fd(c, fd, &c->rxlock, nb)) < 0)
		return r;
	while (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT) {
		r = detect(c, fd, !nb);
		if (r == -EAGAIN && nb) {
			unlock(&c->rxlock);
			return -EAGAIN;
		}
		if (r < 0 && r != -EAGAIN) {
			unlock(&c->rxlock);
			return r;
		}
	}
	switch (hb_load_relaxed(&c->rxmode)) {
	case HB_RX_RAW:
		unlock(&c->rxlock);
		got = hb_next_recvmsg(fd, m, flags);
		return got;
	case HB_RX_FAILED:
		unlock(&c->rxlock);
		return -(long)(hb_load_relaxed(&c->dead) ? hb_load_relaxed(&c->dead) : EPROTO);
	default:
		break;
	}
	if (!n) {
		unlock(&c->rxlock);
		return 0;
	}
	if (hb_load_relaxed(&c->flags) & HB_APP_RCVTIMEO) {
		uint32_t t = hb_load_relaxed(&c->rcvtimeo_ms);

		if (t)
			deadline = hb_os_now_ms() + t;
	}
	/* A blocking MSG_WAITALL waits for all n bytes, as the kernel's does
	 * (a signal, the end of the stream, an error or SO_RCVTIMEO end it
	 * early with what came); any other read returns what one call got. */
	wait_all = (flags & MSG_WAITALL) && !nb && !(flags & MSG_PEEK);
	for (int again = 0;; again = 1) {
		if (again && !fd_is(c, fd)) {
			got = -EBADF;
			break;
		}
		if (flags & MSG_PEEK)
			got = peek_framed(c, fd, buf, n, flags | (masked ? MSG_DONTWAIT : 0));
		else
			got = read_once(c, fd, buf + total, n - total,
					flags | ((total && !wait_all) || (deadline && !nb) || masked
							 ? MSG_DONTWAIT : 0),
					m);
		if (masked && got != 0) {
			/* The flood ended (data, the end, an error or nothing
			 * queued): the application's mask again. Nothing
			 * queued is where the kernel's reader would sleep. */
			r = flood_signals(&fs, 0, deadline != 0);
			if (got == -EAGAIN && r < 0) {
				got = r;
				break;
			}
			if (got == -EAGAIN && !deadline && (!total || wait_all)) {
				masked = fs.masked;
				continue; /* a read we made non-blocking: now it waits */
			}
		}
		masked = fs.masked;
		if (got == -ENODATA) {
			got = 0;
			break; /* end of stream (also inside a frame: bytes so far stand) */
		}
		if (got == -EAGAIN && !nb && deadline && (!total || wait_all)) {
			r = wait_readable(fd, deadline);
			if (r < 0) {
				got = r;
				break;
			}
			continue;
		}
		if (got < 0)
			break;
		total += (size_t)got;
		if ((flags & MSG_PEEK) && got)
			break;
		if (total == n)
			break;
		if (got > 0 && !(flags & MSG_WAITALL))
			break;
		if (got == 0 && nb && !total) {
			/* Only control frames: maybe more is queued behind them,
			 * but a peer may send them faster than we decode. Each
			 * read takes at most what the receive buffer holds, so
			 * counting reads bounds the work (counting the length
			 * asked for would give up after one read of a large
			 * buffer, with data queued behind a heartbeat). */
			if (++ctl_reads < FLOOD_READS)
				continue;
			rearm(c, fd);
			got = -EAGAIN;
			break;
		}
		if (got > 0 && (flags & MSG_WAITALL) && !nb)
			continue;
		if (got == 0 && !nb) {
			/* A heartbeat is not end of stream: keep waiting, within
			 * SO_RCVTIMEO even while control frames keep coming. */
			if (deadline && hb_os_now_ms() >= deadline) {
				got = -EAGAIN;
				break;
			}
			if (++ctl_reads % FLOOD_READS == 0) {
				if ((r = flood_signals(&fs, 1, deadline != 0)) < 0) {
					got = r;
					break;
				}
				flood_mask(&fs);
				masked = fs.masked;
			}
			continue;
		}
		break;
	}
	flood_signals(&fs, 0, 0);
	if (fd_is(c, fd))
		set_lowat(c, fd);
	unlock(&c->rxlock);
	if (total) {
		/* The application received data: its own sends answer it now,
		 * and the kernel's mode is theirs to set. */
		if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_QUICKACK))
			hb_and_acq_rel(&c->flags, ~HB_CF_QUICKACK);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
		return (long)total;
	}
	return got;
}

/* ---------------------------------------------------------------- write path */

/* Append app bytes [off, off + len) of the iovec list to out[]. */
static int map_iov(struct iovec *out, int k, int max, const struct iovec *iov, size_t niov,
		   size_t off, size_t len)
{
	for (size_t i = 0; i < niov && len && k < max; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		{
			size_t take = l - off < len ? l - off : len;

			out[k++] = (struct iovec){ (char *)iov[i].iov_base + off, take };
			len -= take;
			off = 0;
		}
	}
	return k;
}

#define TX_IOV_MAX 64

static long frame_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags)
{
	size_t n = 0, total = 0;
	int nb = nonblocking(c, flags), closed = 0, again = 0;
	long r;

	if (hb_load_acquire(&c->txmode) == HB_TX_UNDECIDED)
		writer_decide(c, fd);
	if (hb_load_acquire(&c->txmode) != HB_TX_FRAMED)
		return hb_next_sendmsg(fd, m, flags | MSG_NOSIGNAL);
	for (size_t i = 0; m->msg_iov && i < (size_t)m->msg_iovlen; i++)
		n += m->msg_iov[i].iov_len;
	if ((r = lock_fd(c, fd, &c->txlock, nb)) < 0)
		return r;
	if (HB_UNLIKELY(c->dg_sent || hb_load_relaxed(&c->dg_want))) {
		/* A downgrade of our direction is due: its frame first. */
		r = tx_downgrade(c, fd, nb ? 0 : -1);
		if (r < 0 || r == 1 || c->dg_sent) {
			unlock(&c->txlock);
			if (r == 1)
				return hb_next_sendmsg(fd, m, flags | MSG_NOSIGNAL);
			return r < 0 ? r : -EAGAIN;
		}
		/* Inside a frame: it is finished first (below). */
	}
	if (HB_LIKELY(!c->tx.pend_len && !c->tx.remaining && n && n <= HB_MAX_FRAME &&
		      m->msg_iovlen < TX_IOV_MAX)) {
		/* The common case, one whole frame: its header and the
		 * application's iovecs in one call, no plan. What a short
		 * count leaves (a partial header, owed payload) is the
		 * encoder's state as after any other send. */
		uint8_t hdr[HB_DATA_HDR_LEN];
		struct iovec out[TX_IOV_MAX];
		struct hb_tx_seg seg[4] = { { hdr, 0, HB_DATA_HDR_LEN }, { NULL, 0, n } };
		struct msghdr om;

		hb_data_hdr(hdr, (uint32_t)n);
		if (n <= SMALL_FRAME && !m->msg_name && !m->msg_controllen) {
			/* Small: header and payload copied into one buffer. */
			uint8_t one[HB_DATA_HDR_LEN + SMALL_FRAME];
			size_t at = HB_DATA_HDR_LEN;

			memcpy(one, hdr, HB_DATA_HDR_LEN);
			for (size_t i = 0; i < (size_t)m->msg_iovlen; i++) {
				memcpy(one + at, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
				at += m->msg_iov[i].iov_len;
			}
			r = hb_next_send(fd, one, at, flags | MSG_NOSIGNAL);
		} else {
			out[0] = (struct iovec){ hdr, HB_DATA_HDR_LEN };
			for (size_t i = 0; i < (size_t)m->msg_iovlen; i++)
				out[i + 1] = m->msg_iov[i];
			om = *m;
			om.msg_iov = out;
			om.msg_iovlen = m->msg_iovlen + 1;
			om.msg_flags = 0;
			r = hb_next_sendmsg(fd, &om, flags | MSG_NOSIGNAL);
		}
		if (r < 0) {
			unlock(&c->txlock);
			return r;
		}
		again = 1;
		total = (size_t)r == n + HB_DATA_HDR_LEN ? n : hb_tx_commit(&c->tx, seg, 2, (size_t)r);
		if (total || nb)
			goto sent; /* whole, or short: report what went */
		/* Blocking, and only header bytes went (a signal): go on. */
	}
	for (; total < n || c->tx.pend_len; again = 1) {
		struct hb_tx_seg seg[4];
		uint8_t hdr[HB_DATA_HDR_LEN];
		struct iovec out[TX_IOV_MAX];
		struct msghdr om;
		size_t planned = 0, app_planned = 0;
		int ns, k = 0;

		if (again && !fd_is(c, fd)) {
			closed = 1;
			break;
		}
		ns = hb_tx_plan(&c->tx, n - total, hdr, seg);
		for (int i = 0; i < ns && k < TX_IOV_MAX; i++) {
			if (seg[i].base) {
				out[k++] = (struct iovec){ (void *)seg[i].base, seg[i].len };
				planned += seg[i].len;
			} else {
				int k0 = k;
				size_t mapped = 0;

				k = map_iov(out, k, TX_IOV_MAX, m->msg_iov, m->msg_iovlen,
					    total + seg[i].off, seg[i].len);
				for (int j = k0; j < k; j++)
					mapped += out[j].iov_len;
				if (mapped < seg[i].len) {
					/* Too many iovecs: send what fits; the plan's
					 * accounting handles a short count. */
					seg[i].len = mapped;
					ns = i + 1;
				}
				planned += mapped;
				app_planned += mapped;
			}
		}
		memset(&om, 0, sizeof(om));
		om.msg_iov = out;
		om.msg_iovlen = (size_t)k;
		om.msg_name = m->msg_name;
		om.msg_namelen = m->msg_namelen;
		om.msg_control = total ? NULL : m->msg_control;
		om.msg_controllen = total ? 0 : m->msg_controllen;
		r = hb_next_sendmsg(fd, &om, (flags | MSG_NOSIGNAL) |
						     (total && nb ? MSG_DONTWAIT : 0));
		if (r < 0) {
			if (total)
				break;
			unlock(&c->txlock);
			return r;
		}
		total += hb_tx_commit(&c->tx, seg, ns, (size_t)r);
		if ((size_t)r < planned && (total || nb || !app_planned))
			break; /* short: buffer full or a signal; report what went */
		if (!app_planned && !c->tx.pend_len && total == n)
			break;
		(void)app_planned;
	}
sent:
	if (HB_UNLIKELY(hb_load_relaxed(&c->dg_want)) && !c->dg_sent)
		tx_downgrade(c, fd, 0);
	unlock(&c->txlock);
	if (!total && n)
		return closed ? -EBADF : -EAGAIN;
	if (total) {
		app_sent(c, fd);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
	}
	return (long)total;
}

void hb_frame_close(struct hb_conn *c, int fd)
{
	/* Control frames left unread would make the kernel answer our close
	 * with a reset instead of a FIN, and a reset throws away what we
	 * still have to send: drop them first. Application bytes left unread
	 * reset the connection exactly as they would without the shim. Not
	 * behind a reader blocked in the kernel (another thread): the close
	 * returns at once, as the kernel's does, and the socket stays open
	 * until that read returns (hb_frame_linger leaves it alone then). */
	elsewhere(c, fd);
	if (hb_load_acquire(&c->rxmode) == HB_RX_RAW || !owner(c) || !lock_unless_app(&c->rxlock))
		return;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
		detect(c, fd, 0);
	if (hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED)
		drain(c, fd);
	unlock(&c->rxlock);
}

/* The kernel answers any byte that arrives after shutdown(SHUT_RD) on a
 * socket whose FIN is out (FIN_WAIT1/2) with a reset, and a reset throws
 * away our data and FIN not yet acknowledged. Without the shim nothing
 * arrives there (the peer's application is done writing); with it, the
 * peer's heartbeats do. So the kernel's SHUT_RD waits until our FIN is
 * acknowledged with everything before it (FIN_WAIT2: every heartbeat the
 * peer sent before it saw our FIN has arrived by then); the background
 * thread applies it, or after the timeout in FIN_WAIT1. Meanwhile reads
 * see the end of the stream at once, as after a real SHUT_RD. A reader
 * blocked in the kernel in another thread (the usual reason for a shutdown
 * from another thread) is woken only by the kernel's SHUT_RD: it goes at
 * once then. A heartbeat already on its way may then draw that reset; the
 * reads on this side still report the end of the stream (HB_CF_RD_DOWN),
 * as the kernel's would have. A writer blocked in the kernel is woken by
 * the kernel's SHUT_WR (EPIPE), which goes at once either way. */
int hb_frame_shutdown(struct hb_conn *c, int fd, int how)
{
	static const uint8_t hc[2] = { HB_FT_CONTROL, HB_CT_HALFCLOSE };

	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return how; /* EINVAL from the kernel */
	elsewhere(c, fd);
	/* Ending our direction is a use of the send side. */
	if (how != SHUT_RD)
		claim(c, HB_CF_TX_CLAIMED);
	/* Pending control bytes go before our FIN; a half-close frame tells
	 * the peer we still read: not for SHUT_RDWR, where a plain FIN also
	 * stops the peer's heartbeats sooner. Never behind a writer in
	 * another thread: blocked in the kernel, it holds txlock until the
	 * kernel's shutdown wakes it (EPIPE), and it is inside a frame, so
	 * neither could go out anyway; the plain FIN follows its bytes. */
	if (how != SHUT_RD && hb_load_acquire(&c->txmode) == HB_TX_FRAMED &&
	    lock_unless_app(&c->txlock)) {
		flush_pend(c, fd);
		if (how == SHUT_WR && hb_tx_at_boundary(&c->tx) &&
		    hb_load_relaxed(&c->txmode) == HB_TX_FRAMED &&
		    sh_send(c, fd, hc, sizeof(hc), MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(hc) &&
		    hb_os_shutdown(fd, SHUT_WR) == 0) {
			/* The FIN goes under the lock: no frame (a heartbeat, a
			 * racing write) can slip in behind the half-close, which
			 * the peer takes for a protocol error. */
			unlock(&c->txlock);
			return -1;
		}
		unlock(&c->txlock);
	}
	if (how == SHUT_WR || hb_load_acquire(&c->rxmode) == HB_RX_RAW ||
	    hb_load_acquire(&c->rxmode) == HB_RX_FAILED || !owner(c))
		return how;
	if (app_holds(&c->rxlock)) {
		hb_or_acq_rel(&c->flags, HB_CF_RD_DOWN);
		return how;
	}
	c->shut_rd_at = (uint32_t)hb_os_now_ms();
	hb_or_acq_rel(&c->flags, HB_CF_SHUT_RD);
	hb_thread_wake();
	return how == SHUT_RDWR ? SHUT_WR : -1;
}

int hb_frame_inq(struct hb_conn *c, int fd, int *out)
{
	int inq = 0;
	uint8_t p[256];
	struct hb_rx copy;
	long r;
	long app;

	if (hb_load_acquire(&c->rxmode) == HB_RX_DETECT && owner(c) && trylock(&c->rxlock)) {
		detect(c, fd, 0);
		unlock(&c->rxlock);
	}
	if (hb_os_ioctl(fd, SIOCINQ, &inq) < 0)
		return -1;
	/* Another process reads it: our decoder's position is stale there,
	 * the kernel's count (headers included) is all we know. */
	if (hb_load_acquire(&c->rxmode) != HB_RX_FRAMED || !owner(c)) {
		*out = inq;
		return 0;
	}
	if (!lock_unless_app(&c->rxlock))
		return -1; /* a reader is blocked: the kernel's count, headers included */
	copy = c->rx;
	if (copy.remaining && (uint32_t)inq <= copy.remaining) {
		*out = inq;
	} else {
		r = sh_recv(c, fd, p, sizeof(p) < (size_t)inq ? sizeof(p) : (size_t)inq,
			       MSG_PEEK | MSG_DONTWAIT);
		app = r > 0 ? hb_rx_decode(&copy, p, (size_t)r, NULL) : 0;
		if (app < 0)
			app = 0;
		if (r > 0 && inq > r && copy.remaining)
			app += (inq - r) < (long)copy.remaining ? (inq - r) : (long)copy.remaining;
		*out = (int)app;
	}
	unlock(&c->rxlock);
	return 0;
}

/* ---------------------------------------------------------------- background */

/* Drop control frames waiting at the head of the receive queue while the
 * application is not reading, so heartbeats never pile up. rxlock held. */
static void drain(struct hb_conn *c, int fd)
{
	/* Another process may be reading this stream (fork, exec): our
	 * decoder's idea of the frame boundary can be stale there, and bytes
	 * taken here would be taken from it. */
	if (!owner(c))
		return;
	/* One peek, then one read of exactly the complete control frames at
	 * the head (two system calls however many heartbeats piled up). */
	for (int rounds = 0; rounds < 16 && hb_rx_at_boundary(&c->rx) && !c->rx.raw; rounds++) {
		uint8_t p[64];
		long r = sh_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);
		size_t take = 0;

		while (r > 0 && take + 2 <= (size_t)r && p[take] == HB_FT_CONTROL) {
			size_t need = p[take + 1] == HB_CT_NOTICE	 ? HB_NOTICE_LEN
				      : p[take + 1] == HB_CT_DOWNGRADE ? HB_DOWNGRADE_LEN
									 : 2;

			if (take + need > (size_t)r)
				break;
			take += need;
			if (p[take - need + 1] == HB_CT_DOWNGRADE)
				break; /* raw bytes behind it: the application's */
		}
		if (!take)
			break;
		r = sh_recv(c, fd, p, take, MSG_DONTWAIT);
		if (r != (long)take || absorb(c, fd, NULL, 0, p, take, 0, take) < 0)
			return;
		if (take + HB_NOTICE_LEN < sizeof(p))
			break; /* the peek saw everything there was */
	}
	c->drained_at = ms32(hb_os_now_ms());
	set_lowat(c, fd);
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

	if (!owner(c) || !hb_rx_at_boundary(&c->rx) || n > sizeof(p))
		return;
	r = sh_recv(c, fd, p, n, MSG_DONTWAIT);
	if (r > 0 && absorb(c, fd, NULL, 0, p, (size_t)r, 0, (size_t)r) < 0)
		return;
	c->drained_at = ms32(hb_os_now_ms());
	set_lowat(c, fd);
}

static void send_notice(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent)
{
	uint8_t n[HB_NOTICE_LEN];

	if (hb_load_acquire(&c->txmode) != HB_TX_FRAMED || !tx_owner(c) || !trylock(&c->txlock))
		return;
	if (hb_tx_at_boundary(&c->tx)) {
		hb_notice_encode(n, reason, silent);
		sh_send(c, fd, n, sizeof(n), MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	unlock(&c->txlock);
}

/* A stable pseudo-random number per connection. */
static uint32_t conn_jitter(const struct hb_conn *c)
{
	uint64_t x = (c->cookie ^ ((uint64_t)c->self << 32)) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(x >> 40);
}

uint64_t hb_frame_tick(struct hb_conn *c, int fd, uint64_t now, uint64_t late)
{
	static const uint8_t hb[2] = { HB_FT_CONTROL, HB_CT_HEARTBEAT };
	uint32_t interval = tx_interval(c), jitter = interval / 10;
	uint64_t next = now + interval;
	struct hb_tcp_info x;
	const struct hb_ti *ti = &x.ti;
	int open_rx;

	if (hb_os_tcp_info(fd, &x) < 0)
		return 0;
	if (ti->tcpi_state != TCP_ESTABLISHED && ti->tcpi_state != TCP_CLOSE_WAIT &&
	    ti->tcpi_state != TCP_FIN_WAIT1 && ti->tcpi_state != TCP_FIN_WAIT2) {
		if (ti->tcpi_state == TCP_SYN_SENT || ti->tcpi_state == TCP_SYN_RECV) {
			/* A non-blocking connect: our hello must leave as soon as
			 * the connection is up (a server that writes first waits
			 * for it only briefly). Look every millisecond for 3 s. */
			if (ti->tcpi_state == TCP_SYN_SENT && hb_connect_expired(c, fd, now))
				return 0;
			return now + (now - c->opened_ms < 3000 ? 1 : 50);
		}
		return 0;
	}
	if (HB_UNLIKELY(hb_load_acquire(&c->flags) & HB_CF_SHUT_RD)) {
		/* The application's SHUT_RD, held back until our data is
		 * acknowledged (hb_frame_shutdown). */
		int outq = 1;

		if ((ti->tcpi_state == TCP_FIN_WAIT2 && hb_os_ioctl(fd, SIOCOUTQ, &outq) == 0 &&
		     outq == 0) ||
		    (ti->tcpi_state == TCP_FIN_WAIT1 && (uint32_t)now - c->shut_rd_at >= hb_cfg.timeout_ms)) {
			hb_os_shutdown(fd, SHUT_RD);
			hb_and_acq_rel(&c->flags, ~HB_CF_SHUT_RD);
		}
	}
	{
		uint32_t fl = hb_load_acquire(&c->flags);

		/* After a fork each side is acted on by the process that
		 * uses it (owner, tx_owner): a child stays passive until the
		 * application uses the connection there (the wheel looks
		 * again later); the parent pauses briefly, long enough for a
		 * forking server to close its copy, and then takes the send
		 * side back if it still holds it unused: a parent that forked
		 * a command and waits for its peer must go on sending
		 * heartbeats. The receive side only ever goes to a process
		 * that reads: the child may be reading it (rsync). */
		if (fl & HB_CF_INHERITED)
			return now + (interval > 100 ? interval : 100);
		if (fl & HB_CF_FORKED) {
			uint32_t since = (uint32_t)now - c->forked_at;

			if (since >= fork_pause()) {
				hb_and_acq_rel(&c->flags, ~HB_CF_FORKED);
				if (fl & HB_CF_SHARED)
					hb_or_acq_rel(&c->flags, HB_CF_TX_CLAIMED);
			} else if (!owner(c)) {
				return now + (fork_pause() - since);
			} else if (now + (fork_pause() - since) < next) {
				/* Reading here already: the receive side's work
				 * goes on; the send side's waits for the pause. */
				next = now + (fork_pause() - since);
			}
		}
		if (!owner(c) && !tx_owner(c))
			return now + (interval > 100 ? interval : 100);
		/* A reader that does not write here: once no other process
		 * holds the socket (a parent that exited after the fork), the
		 * send side is nobody else's and its heartbeats are this
		 * process's job, or the peer finds it dead. Looked at once per
		 * pause (reading /proc); "cannot tell" leaves it alone. */
		if ((fl & HB_CF_SHARED) && !(fl & HB_CF_FORKED) && owner(c) && !tx_owner(c) &&
		    (uint32_t)now - c->forked_at >= fork_pause()) {
			c->forked_at = ms32(now);
			if (hb_os_sock_shared(fd) == 0)
				hb_or_acq_rel(&c->flags, HB_CF_TX_CLAIMED);
		}
	}
	elsewhere(c, fd);
	if (HB_UNLIKELY(hb_load_relaxed(&c->dg_want)) &&
	    hb_load_acquire(&c->txmode) == HB_TX_FRAMED && trylock(&c->txlock)) {
		tx_downgrade(c, fd, 0);
		unlock(&c->txlock);
	}
	if (hb_load_acquire(&c->rxmode) == HB_RX_DETECT && owner(c)) {
		if (trylock(&c->rxlock)) {
			if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
				detect(c, fd, 0);
			set_lowat(c, fd);
			unlock(&c->rxlock);
		} else if (c->lowat > 1) {
			/* The application is blocked inside detect(), and the
			 * kernel wakes a reader only once SO_RCVLOWAT bytes are
			 * there. Bytes that are no hello (or a magic prefix that
			 * stayed one too long) get the mark lowered, which wakes
			 * it; the reader then decides under its lock. */
			uint8_t p[HB_HELLO_LEN];
			long r = sh_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);
			int cls = r > 0 ? hb_hello_classify(p, (size_t)r, NULL) : 1;

			if (cls == 0 && !c->bg_partial_at)
				c->bg_partial_at = ms32(now);
			if (cls == -1 || cls <= -2 || r == 0 ||
			    (cls == 0 && (uint32_t)now - c->bg_partial_at >= PARTIAL_WAIT_MS) ||
			    (!c->client && now >= c->opened_ms + ACCEPT_HELLO_WAIT_MS))
				hb_os_setsockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT, 1);
		}
	}
	if (c->mode != HB_MODE_FRAME)
		return 0; /* settled as plain keepalive */
	/* The peer's hello may have just arrived: pace for it from now on. */
	interval = tx_interval(c);
	jitter = interval / 10;
	if (now + interval < next)
		next = now + interval;
	if (hb_ka_window(c, fd, &x, hb_ka_frame_cfg.user_timeout_ms, now, 0) < 0) {
		hb_conn_declare_dead(c, fd, HB_DEAD_WRITE, ti->tcpi_last_ack_recv);
		return 0;
	}
	/* Our direction: hello, then a heartbeat after an interval of silence.
	 * The jitter spreads connections opened together. */
	/* The peer sent its FIN. After a half-close frame it still reads and
	 * expects our heartbeats; without one it closed the connection, and a
	 * heartbeat would only draw a reset that destroys what it has still
	 * to send us. */
	if (ti->tcpi_state == TCP_CLOSE_WAIT && !c->rx.halfclosed && owner(c) &&
	    hb_load_acquire(&c->rxmode) == HB_RX_FRAMED && trylock(&c->rxlock)) {
		drain(c, fd);
		unlock(&c->rxlock);
	}
	if (hb_load_acquire(&c->txmode) == HB_TX_FRAMED && tx_owner(c) &&
	    ti->tcpi_state != TCP_FIN_WAIT1 && ti->tcpi_state != TCP_FIN_WAIT2 &&
	    !(ti->tcpi_state == TCP_CLOSE_WAIT && !c->rx.halfclosed) &&
	    !(HB_UNLIKELY(hb_fault_of(c)) && hb_fault_hung(c)) && /* HBSHIM_FAULTS hang */
	    trylock(&c->txlock)) {
		uint32_t quiet = ti->tcpi_last_data_sent;
		/* A fixed offset per connection: a fresh random one per tick
		 * would push the heartbeat past the tick that was due for it
		 * and cost a second wake-up. tcpi_last_data_sent counts in
		 * jiffies (up to 4 ms), and the tick's time is read once per
		 * batch (a busy or starved batch sends a little after it): up
		 * to 8 ms early is on time (one wake-up, not two). */
		uint32_t due = interval - (jitter ? conn_jitter(c) % jitter : 0);
		uint32_t slack = interval / 20 < 8 ? interval / 20 : 8;

		/* A short TCP_INFO has no tcpi_last_data_sent: a heartbeat
		 * every interval, data or not (2 bytes an interval more). */
		if (!HB_TI_HAS(&x, ti.tcpi_last_data_sent))
			quiet = c->hb_sent_at ? (uint32_t)now - c->hb_sent_at : due;
		flush_pend(c, fd);
		if (hb_tx_at_boundary(&c->tx) && !c->dg_sent) {
			if (quiet + slack >= due && (hb_load_relaxed(&c->flags) & HB_CF_SHARED) &&
			    HB_TI_HAS(&x, notsent_bytes) && x.notsent_bytes) {
				/* Bytes still queued: the peer hears from us when its
				 * window opens. Another process writing this
				 * connection may be inside a frame then, which our
				 * encoder cannot see: no heartbeat into it. */
				next = now + due;
			} else if (quiet + slack >= due) {
				long r = sh_send(c, fd, hb, 2, MSG_DONTWAIT | MSG_NOSIGNAL);

				if (r == 1) {
					c->tx.pend[0] = hb[1];
					c->tx.pend_len = 1;
				}
				if (r > 0) {
					hb_stat_add(HB_ST_HB_SENT, 1);
					c->hb_sent_at = ms32(now);
				}
				next = now + due;
			} else {
				next = now + (due - quiet);
			}
		} else {
			next = now + (interval < 10 ? interval : 10);
		}
		unlock(&c->txlock);
	}
	/* The peer's direction: any data byte (tcpi_last_data_recv counts also
	 * what the application has not read yet) is life. The socket's
	 * figures are the same in every process holding it: one that only
	 * writes judges the silence too (it reads no byte for that), so a
	 * writer whose reader is gone still learns of a dead peer. (Not with
	 * a short TCP_INFO: the shim's own stamp of the peer's last bytes is
	 * the reading process's.) */
	open_rx = hb_load_acquire(&c->rxmode) == HB_RX_FRAMED && !c->rx.halfclosed &&
		  ti->tcpi_state != TCP_CLOSE_WAIT &&
		  (owner(c) || HB_TI_HAS(&x, ti.tcpi_last_data_recv));
	if (open_rx) {
		uint32_t limit = rx_limit(c), silent = ti->tcpi_last_data_recv;
		int inq = 0;

		if (!HB_TI_HAS(&x, ti.tcpi_last_data_recv)) {
			/* A short TCP_INFO: the time since the shim last took
			 * bytes (its reads, and the drain below for an idle
			 * application), counted from the first tick. */
			uint32_t seen = hb_load_relaxed(&c->rx_seen);

			if (!seen)
				hb_store_relaxed(&c->rx_seen, seen = ms32(now));
			if ((uint32_t)now - seen >= limit && trylock(&c->rxlock)) {
				/* Heartbeats that wait unread (this process
				 * was itself stopped, or late) are life. */
				drain(c, fd);
				unlock(&c->rxlock);
				seen = hb_load_relaxed(&c->rx_seen);
			}
			silent = (uint32_t)now - seen;
		}

		/* Bytes the application has not read yet: the peer was alive to
		 * send them, and with our receive window filling up it may not
		 * be able to send anything else, heartbeats included. Silence
		 * only counts once the application caught up. Fewer bytes than
		 * the low-water mark are no such thing: a heartbeat or two
		 * that a reader blocked below the mark cannot take, and that
		 * must not keep a dead peer alive. */
		if (silent >= limit && hb_os_ioctl(fd, SIOCINQ, &inq) == 0 && inq >= FRAME_LOWAT)
			silent = 0;
		if (silent >= limit && late > 20 && late > interval / 4 && !c->grace) {
			/* This thread itself woke up late: the machine is starved,
			 * and the peer's heartbeat thread likely was too. Look
			 * once more shortly before calling the peer dead. */
			c->grace = 1;
			return now + (interval < 100 ? interval : 100);
		}
		if (silent < limit)
			c->grace = 0;
		if (silent >= limit) {
			send_notice(c, fd, HB_NR_HEARTBEAT, silent);
			hb_conn_declare_dead(c, fd, HB_DEAD_HEARTBEAT, silent);
			return 0;
		}
		/* Drain only when something arrived since the last drain. */
		if (owner(c) &&
		    (!c->drained_at || ti->tcpi_last_data_recv <= (uint32_t)now - c->drained_at) &&
		    trylock(&c->rxlock)) {
			/* An idle peer's heartbeats, 2 bytes each. At peer
			 * intervals of a second or more the first one waits for
			 * the second: below the low-water mark it wakes nobody,
			 * and then one read of 4 bytes takes both (a system call
			 * per two heartbeats). Shorter intervals drain each one:
			 * a thread starved for one peer interval would let
			 * three reach the mark (epoll cannot be corrected after
			 * the fact). At most 4 new bytes: one read of them.
			 * Anything else: peek, then read the control frames.
			 * Bytes the application read first make the read come
			 * back short or EAGAIN. */
			uint32_t fresh = (uint32_t)x.bytes_received - c->rx_bytes;

			if (!c->drained_at || !x.bytes_received || fresh > 4) {
				drain(c, fd);
				c->rx_bytes = (uint32_t)x.bytes_received;
			} else if (fresh != 2 || c->peer_interval_ms < 1000 ||
				   c->lowat != FRAME_LOWAT || !hb_rx_at_boundary(&c->rx)) {
				drain_few(c, fd, fresh);
				c->rx_bytes = (uint32_t)x.bytes_received;
			}
			unlock(&c->rxlock);
		}
		if (now + (limit - silent) < next)
			next = now + (limit - silent);
	}
	if (!c->client && hb_load_acquire(&c->rxmode) == HB_RX_DETECT &&
	    now < c->opened_ms + ACCEPT_HELLO_WAIT_MS + 1) {
		/* Accepted, nothing decisive yet: look every millisecond until
		 * the hello's window closes (the mark drops to 1 then). */
		if (now + 1 < next)
			next = now + 1;
	} else if (!c->client && hb_load_acquire(&c->rxmode) == HB_RX_DETECT &&
		   now < c->opened_ms + LATE_HELLO_MS && now + HB_PACE_FLOOR_MS < next) {
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
	    (ti->tcpi_state == TCP_FIN_WAIT1 || ti->tcpi_state == TCP_FIN_WAIT2))
		next = now + 5; /* a held-back SHUT_RD: look again soon */
	return next;
}

/* ---------------------------------------------------------------- zero-copy paths */

long hb_frame_xfer_out(struct hb_conn *c, int fd, size_t len, size_t avail, int nb,
		       long (*xfer)(void *ctx, size_t len), void *ctx)
{
	uint8_t hdr[HB_DATA_HDR_LEN];
	long r, s;
	int sflags = MSG_NOSIGNAL | (nb ? MSG_DONTWAIT : 0);

	if (hb_load_acquire(&c->txmode) == HB_TX_UNDECIDED)
		writer_decide(c, fd);
	if (hb_load_acquire(&c->txmode) != HB_TX_FRAMED)
		return xfer(ctx, len);
	if (!len)
		return xfer(ctx, 0);
	hb_add_acq_rel(&c->users, 1);
	claim(c, HB_CF_TX_CLAIMED);
	if ((r = lock_fd(c, fd, &c->txlock, nb)) < 0) {
		hb_sub_acq_rel(&c->users, 1);
		return r;
	}
	if (HB_UNLIKELY(c->dg_sent || hb_load_relaxed(&c->dg_want))) {
		r = tx_downgrade(c, fd, nb ? 0 : -1);
		if (r < 0 || r == 1 || c->dg_sent) {
			unlock(&c->txlock);
			hb_sub_acq_rel(&c->users, 1);
			return r == 1 ? xfer(ctx, len) : r < 0 ? r : -EAGAIN;
		}
	}
	while (c->tx.pend_len) {
		r = hb_os_send(fd, c->tx.pend, c->tx.pend_len, sflags);
		if (r < 0)
			goto out;
		memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
		c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
	}
	if (!c->tx.remaining) {
		size_t l = len < avail ? len : avail;

		if (l > HB_MAX_FRAME)
			l = HB_MAX_FRAME;
		if (!l) {
			r = 0; /* the source is at its end: nothing to frame */
			goto out;
		}
		hb_data_hdr(hdr, (uint32_t)l);
		/* The header rides with the payload that follows (MSG_MORE). */
		r = hb_os_send(fd, hdr, sizeof(hdr), sflags | MSG_MORE);
		if (r < 0)
			goto out;
		c->tx.remaining = (uint32_t)l;
		if (r < (long)sizeof(hdr)) {
			memcpy(c->tx.pend, hdr + r, sizeof(hdr) - (size_t)r);
			c->tx.pend_len = (uint8_t)(sizeof(hdr) - (size_t)r);
			while (!nb && c->tx.pend_len) {
				r = hb_os_send(fd, c->tx.pend, c->tx.pend_len, sflags);
				if (r < 0)
					goto out;
				memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
				c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
			}
			if (c->tx.pend_len) {
				r = -EAGAIN;
				goto out;
			}
		}
	}
	if (!fd_is(c, fd)) {
		r = -EBADF; /* closed while a header waited for room */
		goto out;
	}
	s = xfer(ctx, len < c->tx.remaining ? len : c->tx.remaining);
	if (s > 0) {
		c->tx.remaining -= (uint32_t)s;
		app_sent(c, fd);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
	}
	r = s;
out:
	unlock(&c->txlock);
	hb_sub_acq_rel(&c->users, 1);
	return r;
}

long hb_frame_xfer_in(struct hb_conn *c, int fd, size_t len, int nb,
		      long (*xfer)(void *ctx, size_t len), void *ctx)
{
	long r;

	hb_add_acq_rel(&c->users, 1);
	claim(c, HB_CF_CLAIMED);
	if ((r = lock_fd(c, fd, &c->rxlock, nb)) < 0) {
		hb_sub_acq_rel(&c->users, 1);
		return r;
	}
	while (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT) {
		r = detect(c, fd, !nb);
		if (r < 0 && (r != -EAGAIN || nb))
			goto out;
	}
	if (hb_load_relaxed(&c->rxmode) == HB_RX_RAW) {
		r = xfer(ctx, len);
		goto out;
	}
	if (hb_load_relaxed(&c->rxmode) == HB_RX_FAILED) {
		r = -EPROTO;
		goto out;
	}
	/* Consume headers (into scratch, never payload), then let the kernel
	 * move payload bytes of the current frame only. */
	for (int hdrs = 0; !c->rx.remaining; hdrs++) {
		uint8_t scratch[HB_HDR_MAX];
		size_t want = (c->rx.hdr_len < HB_DATA_HDR_LEN ? HB_DATA_HDR_LEN : HB_NOTICE_LEN) -
			      c->rx.hdr_len;

		if (HB_UNLIKELY(c->rx.raw)) {
			r = xfer(ctx, len); /* the peer downgraded: raw from here */
			goto out;
		}
		r = hb_os_recv(fd, scratch, want, nb ? MSG_DONTWAIT : 0);
		if (r <= 0)
			goto out; /* 0: end of stream */
		r = absorb(c, fd, NULL, 0, scratch, (size_t)r, 0, (size_t)r);
		if (r < 0)
			goto out;
		if (!fd_is(c, fd)) {
			r = -EBADF;
			goto out;
		}
		if (nb && hdrs >= PEEK_HDRS && !c->rx.remaining) {
			/* Control frames only, and they keep coming. */
			rearm(c, fd);
			r = -EAGAIN;
			goto out;
		}
	}
	r = xfer(ctx, len < c->rx.remaining ? len : c->rx.remaining);
	if (r > 0) {
		c->rx.remaining -= (uint32_t)r;
		rx_seen(c);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
	}
out:
	if (fd_is(c, fd))
		set_lowat(c, fd);
	unlock(&c->rxlock);
	hb_sub_acq_rel(&c->users, 1);
	return r;
}

/* ---------------------------------------------------------------- lingering close */

#include <sys/resource.h>

int hb_frame_linger(struct hb_conn *c, int fd)
{
	struct rlimit rl;
	struct hb_conn *l;
	long nfd, base = 256;

	/* Our FIN must go out with the close, so the shim shuts the socket
	 * down itself; that is only right when no other process holds it. */
	if ((hb_load_relaxed(&c->flags) & HB_APP_LINGER) || !owner(c) || !hb_enabled)
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
	if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) == 0 && rl.rlim_cur > 512)
		base = (long)(rl.rlim_cur / 2);
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
	if (tx_owner(c) && lock_unless_app(&c->txlock)) {
		flush_pend(c, fd);
		unlock(&c->txlock);
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

/* ---------------------------------------------------------------- exit */

struct exit_ctx {
	int pending;
	uint64_t now;
	uint32_t rtt_ms;
};

static void exit_visit(int fd, struct hb_conn *c, void *arg)
{
	struct exit_ctx *x = arg;
	int outq = 0;

	elsewhere(c, fd);
	if (c->mode != HB_MODE_FRAME || (hb_load_relaxed(&c->flags) & HB_CF_LOST) ||
	    (!owner(c) && !tx_owner(c)) ||
	    (c->kind != HB_KIND_CONNECTED && c->kind != HB_KIND_LINGER) ||
	    hb_load_relaxed(&c->dead))
		return;
	/* Data of ours still queued is what the wait is for: only the process
	 * that writes waits; only the one that reads drains. */
	if (!tx_owner(c) || hb_os_ioctl(fd, SIOCOUTQ, &outq) < 0)
		outq = 0;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED && owner(c) && trylock(&c->rxlock)) {
		drain(c, fd);
		unlock(&c->rxlock);
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

void hb_frame_notice(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms)
{
	send_notice(c, fd, reason, silent_ms);
}

/* ---------------------------------------------------------------- downgrade */

/* The downgraded event and log line (by: "local", "peer" or "family", a
 * process of this fork family that left framing). */
static void dg_event(struct hb_conn *c, int fd, const char *by, uint8_t reason)
{
	hb_log(HB_LOG_INFO, "fd %d: downgraded to raw (%s, %s): no heartbeats from here", fd, by,
	       hb_dg_reason_name(reason));
	if (hb_events_on()) {
		char extra[96];
		struct hb_buf b;

		hb_buf_init(&b, extra, sizeof(extra));
		hb_buf_fmt(&b, ",\"by\":\"%s\",\"reason\":\"%s\",\"code\":%u", by,
			   hb_dg_reason_name(reason), reason);
		hb_event("downgraded", fd, c, hb_buf_str(&b));
	}
}

/* The peer's downgrade frame was decoded (rxlock held): its direction is
 * raw from the next byte on, and heartbeats are no longer expected in it.
 * Asked to, ours follows at its next frame boundary: now if the writer is
 * free and between frames, else from the next write or tick. */
static void rx_downgraded(struct hb_conn *c, int fd, const struct hb_rx_info *info)
{
	hb_store_release(&c->rxmode, HB_RX_RAW);
	/* Our low-water mark of 6 would hold a short raw answer back from a
	 * read that goes on right after this frame. */
	if (fd_is(c, fd))
		set_lowat(c, fd);
	dg_event(c, fd, "peer", info->dg_reason);
	if ((info->dg_flags & HB_DF_REQUEST) && hb_load_acquire(&c->txmode) == HB_TX_FRAMED) {
		hb_store_release(&c->dg_want, HB_DR_ANSWER);
		if (trylock(&c->txlock)) {
			tx_downgrade(c, fd, 0);
			unlock(&c->txlock);
		}
	}
}

/* Our direction's downgrade (txlock held). Due (dg_want) and at a frame
 * boundary, the frame goes into tx.pend; tx.pend is then sent, waiting up
 * to wait_ms for room (-1: as long as the kernel's own blocking write
 * would; 0: never). Returns 1 when our direction is raw now, 0 when not
 * yet (nothing due, inside a frame, or the frame still pending), or the
 * -errno of a failed send. */
static int tx_downgrade(struct hb_conn *c, int fd, int wait_ms)
{
	uint8_t want = hb_load_acquire(&c->dg_want);

	if (hb_load_relaxed(&c->txmode) != HB_TX_FRAMED)
		return hb_load_relaxed(&c->txmode) == HB_TX_RAW;
	if (!c->dg_sent) {
		flush_pend(c, fd);
		if (!want || !hb_tx_at_boundary(&c->tx))
			return 0;
		/* A heartbeat first: 7 bytes reach the receiver's low-water
		 * mark of 6 (set_lowat), so a reader blocked in the kernel
		 * wakes and answers at once. */
		c->tx.pend[0] = HB_FT_CONTROL;
		c->tx.pend[1] = HB_CT_HEARTBEAT;
		hb_downgrade_encode(c->tx.pend + 2, want, want == HB_DR_ANSWER ? 0 : HB_DF_REQUEST);
		c->tx.pend_len = 2 + HB_DOWNGRADE_LEN;
		c->dg_sent = 1;
		if (want == HB_DR_ANSWER)
			hb_log(HB_LOG_DEBUG, "fd %d: our direction follows the peer's to raw", fd);
	}
	while (c->tx.pend_len) {
		long r = sh_send(c, fd, c->tx.pend, c->tx.pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
		short rev = 0;

		if (r > 0) {
			memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
			c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
			continue;
		}
		if (r != -EAGAIN)
			return r < 0 ? (int)r : 0;
		if (!wait_ms)
			return 0;
		r = hb_os_poll1(fd, POLLOUT, wait_ms < 0 ? 1000 : wait_ms, &rev);
		if (r < 0 && r != -EINTR)
			return (int)r;
		if (wait_ms > 0 && r == 0)
			return 0;
	}
	hb_store_release(&c->txmode, HB_TX_RAW);
	return 1;
}

/* Another process of this fork family downgraded the connection (sshd's
 * pre-authentication child, seen from the monitor and the children it forks
 * later): this copy's framed state is stale, the stream is raw both ways.
 * Only shared connections can be in that record. Taken only with both locks
 * free (a thread of ours inside a framed call would be a reader here, which
 * the leaving process excluded); looked at again at the next call. */
static void elsewhere(struct hb_conn *c, int fd)
{
	if (HB_LIKELY(!(hb_load_relaxed(&c->flags) & HB_CF_SHARED)) || c->mode != HB_MODE_FRAME ||
	    (hb_load_relaxed(&c->rxmode) == HB_RX_RAW && hb_load_relaxed(&c->txmode) == HB_TX_RAW) ||
	    !hb_dg_published(c->cookie))
		return;
	if (!trylock(&c->rxlock))
		return;
	if (trylock(&c->txlock)) {
		hb_store_release(&c->rxmode, HB_RX_RAW);
		hb_store_release(&c->txmode, HB_TX_RAW);
		c->tx.pend_len = 0;
		c->tx.remaining = 0;
		unlock(&c->txlock);
		if (fd_is(c, fd))
			set_lowat(c, fd);
		dg_event(c, fd, "family", 0);
	}
	unlock(&c->rxlock);
}

/* A client leaving framing before the server's hello arrived (a program
 * that sandboxes itself right after connect): whether the server can
 * downgrade is in that hello, which a shimmed server sends as soon as ours
 * arrived. Wait for it, at most a second (HBSHIM_TIMEOUT if shorter). */
static void await_hello(struct hb_conn *c, int fd)
{
	uint64_t until = hb_os_now_ms() + (hb_cfg.timeout_ms < 1000 ? hb_cfg.timeout_ms : 1000);

	if (!lock_unless_app(&c->rxlock))
		return;
	for (;;) {
		uint64_t now = hb_os_now_ms();
		short rev = 0;

		if (detect(c, fd, 0) != -EAGAIN || hb_load_relaxed(&c->rxmode) != HB_RX_DETECT ||
		    now >= until)
			break;
		/* The mark keeps a lone hello from making the fd readable:
		 * look every millisecond. */
		hb_os_poll1(fd, POLLIN, 1, &rev);
	}
	unlock(&c->rxlock);
}

void hb_frame_leave(struct hb_conn *c, int fd, uint8_t reason)
{
	uint8_t rx, tx;
	struct hb_rx copy;
	int r = 0;

	if (c->mode != HB_MODE_FRAME || c->kind != HB_KIND_CONNECTED || c->dg_left ||
	    hb_load_relaxed(&c->dead))
		return;
	c->dg_left = 1;
	elsewhere(c, fd);
	if (hb_load_acquire(&c->rxmode) == HB_RX_DETECT &&
	    hb_load_acquire(&c->txmode) == HB_TX_FRAMED)
		await_hello(c, fd);
	rx = hb_load_acquire(&c->rxmode);
	tx = hb_load_acquire(&c->txmode);
	if (rx != HB_RX_FRAMED && tx != HB_TX_FRAMED)
		return;
	if (tx == HB_TX_FRAMED) {
		if (!c->peer_dg || !lock_unless_app(&c->txlock)) {
			/* A peer without the downgrade frame (an older hbshim;
			 * or its direction never framed, so we cannot know), or
			 * a writer of ours blocked inside a frame: no clean way
			 * out; the stream breaks once this process writes raw. */
			hb_log(HB_LOG_WARN,
			       "fd %d: %s: cannot downgrade (%s): the framed connection will break", fd,
			       hb_dg_reason_name(reason),
			       c->peer_dg ? "a write in progress" : "the peer cannot downgrade");
			return;
		}
		/* The family's record first: no other copy may send a frame
		 * behind ours. */
		hb_dg_publish(c->cookie);
		hb_store_release(&c->dg_want, reason);
		r = tx_downgrade(c, fd, 1000);
		unlock(&c->txlock);
		if (r != 1) {
			hb_log(HB_LOG_WARN, "fd %d: %s: the downgrade frame could not be sent (%d)", fd,
			       hb_dg_reason_name(reason), r);
			return;
		}
	} else {
		hb_dg_publish(c->cookie);
	}
	dg_event(c, fd, "local", reason);
	if (rx == HB_RX_FRAMED && lock_unless_app(&c->rxlock)) {
		/* The peer's frames still in flight, up to its downgrade frame
		 * (or all of them, when we could not ask for it): read() and
		 * the decoder only, in downgrade.c. */
		copy = c->rx;
		hb_store_release(&c->rxmode, HB_RX_RAW);
		unlock(&c->rxlock);
		if (hb_dg_leave_reader(fd, &copy) < 0)
			hb_log(HB_LOG_WARN, "fd %d: too many connections leaving framing at once", fd);
	}
}

/* Consume the peer's frames up to and including its downgrade frame, no
 * further: what follows is raw and belongs to the process the fd goes to.
 * Waits up to wait_ms. Application bytes that arrive before the peer's
 * downgrade frame have no reader left (the application handed the stream
 * over): they are counted and dropped. rxlock held. */
static void rx_until_raw(struct hb_conn *c, int fd, int wait_ms)
{
	uint64_t until = hb_os_now_ms() + (uint64_t)wait_ms;
	size_t dropped = 0;

	while (hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED && fd_is(c, fd)) {
		uint8_t p[512], q[512];
		struct hb_rx copy = c->rx;
		long r = sh_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);
		size_t take = 0;
		uint64_t now;
		short rev = 0;

		if (r == 0 || (r < 0 && r != -EAGAIN))
			break; /* end of stream, or an error the application will see */
		/* How many of the peeked bytes end with the downgrade frame. */
		while (r > 0 && take < (size_t)r && !copy.raw) {
			q[0] = p[take++];
			if (hb_rx_decode(&copy, q, 1, NULL) < 0)
				break;
		}
		if (take) {
			long got = sh_recv(c, fd, q, take, MSG_DONTWAIT);
			long app = got > 0 ? absorb(c, fd, NULL, 0, q, (size_t)got, 0, (size_t)got) : 0;

			if (app < 0)
				break; /* protocol error: failed */
			(void)app;
		}
		if (take && !copy.raw)
			dropped += (size_t)(take); /* frames (maybe data) before the answer */
		if (hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED)
			break;
		now = hb_os_now_ms();
		if (now >= until)
			break;
		hb_os_poll1(fd, POLLIN, (int)(until - now), &rev);
	}
	if (hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED)
		hb_log(HB_LOG_WARN, "fd %d: the peer did not answer the downgrade in %d ms: the "
			       "process it goes to may read frames", fd, wait_ms);
	(void)dropped;
}

void hb_frame_pass(struct hb_conn *c, int fd)
{
	uint8_t rx, tx;
	int r, have_rx;

	if (c->mode != HB_MODE_FRAME || c->kind != HB_KIND_CONNECTED || hb_load_relaxed(&c->dead))
		return;
	elsewhere(c, fd);
	rx = hb_load_acquire(&c->rxmode);
	tx = hb_load_acquire(&c->txmode);
	if (tx != HB_TX_FRAMED && rx != HB_RX_FRAMED)
		return;
	if (tx != HB_TX_FRAMED || !c->peer_dg) {
		hb_log(HB_LOG_WARN, "fd %d: a framed connection passed to another process that %s: "
			       "the receiver may read frames", fd,
		       c->peer_dg ? "cannot be asked to go raw (our direction is raw)"
				  : "the peer cannot downgrade");
		return;
	}
	/* Never behind a call of ours blocked in the kernel: a reader of
	 * this process decodes the peer's answer itself (rx_downgraded); a
	 * writer blocked inside a frame leaves no clean way out. */
	have_rx = lock_unless_app(&c->rxlock);
	if (!lock_unless_app(&c->txlock)) {
		hb_log(HB_LOG_WARN, "fd %d: passed to another process while a write is in "
			       "progress: the receiver may read frames", fd);
		if (have_rx)
			unlock(&c->rxlock);
		return;
	}
	hb_dg_publish(c->cookie);
	hb_store_release(&c->dg_want, HB_DR_FDPASS);
	r = tx_downgrade(c, fd, (int)hb_cfg.timeout_ms);
	unlock(&c->txlock);
	if (r == 1) {
		dg_event(c, fd, "local", HB_DR_FDPASS);
		if (have_rx) {
			rx_until_raw(c, fd, (int)hb_cfg.timeout_ms);
			if (fd_is(c, fd))
				set_lowat(c, fd);
		}
		/* Another process holds it now: nothing of ours on its stream
		 * (no drain, no linger) unless this one uses it again. */
		hb_and_acq_rel(&c->flags, ~HB_CF_CLAIMED);
		hb_or_acq_rel(&c->flags, HB_CF_SHARED);
	} else {
		hb_log(HB_LOG_WARN, "fd %d: passed to another process inside a frame: the "
			       "receiver may read frames", fd);
	}
	if (have_rx)
		unlock(&c->rxlock);
}

const struct hb_frame_ops hb_frame_ops = {
	.tick = hb_frame_tick,
	.linger_tick = hb_frame_linger_tick,
	.notice = hb_frame_notice,
	.atfork_prepare = hb_frame_atfork_prepare,
	.atfork_child = hb_frame_atfork_child,
	.linger_drop_all = hb_frame_linger_drop_all,
};
