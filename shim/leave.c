/*
 * leave.c - a process leaving framing on a connection it keeps or hands on.
 *
 * Before a seccomp filter (hb_frame_leave) or before the fd goes to another
 * process over SCM_RIGHTS (hb_frame_pass, from the sendmsg and sendmmsg
 * hooks installed by hb_dg_init), our direction sends its downgrade frame
 * with the request flag and the peer's frames are read up to its answer,
 * so that the stream is raw both ways for whoever reads it next
 * (PROTOCOL.md, Downgrade).
 *
 * Before any hand-over (fork, exec, posix_spawn, SCM_RIGHTS) a connection
 * still waiting for the peer's hello takes it first, where that can be
 * waited for: every copy then starts from the same decided state
 * (hb_frame_handover).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "hb.h"
#include "frame_int.h"

static ssize_t (*next_sendmsg)(int, const struct msghdr *, int);
static int (*next_sendmmsg)(int, struct mmsghdr *, unsigned int, hb_mmsg_flags_t);

/* sendmsg or sendmmsg with SCM_RIGHTS: a framed connection among the fds
 * leaves framing before it leaves the process (hb_frame_pass). The real
 * sendmsg and sendmmsg pointers are swapped for these at start-up (the
 * AF_UNIX socket that carries the fds is not tracked, so its call never
 * reaches the interposer's slow path); every other sendmsg pays one test
 * of msg_controllen, and sendmmsg one per message. */
static void pass_fds(const struct msghdr *m)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR((struct msghdr *)m, h)) {
		size_t n;

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS ||
		    h->cmsg_len < CMSG_LEN(0))
			continue;
		n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int x;
			struct hb_conn *c;

			memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof(x));
			c = hb_fd_conn(x);
			if (c)
				hb_frame_pass(c, x);
		}
	}
}

static ssize_t dg_sendmsg(int fd, const struct msghdr *m, int flags)
{
	if (HB_UNLIKELY(m && m->msg_control && m->msg_controllen >= sizeof(struct cmsghdr) &&
			hb_load_relaxed(&hb_frame_seen)))
		pass_fds(m);
	return next_sendmsg(fd, m, flags);
}

/* Every message's fds leave before the first message goes: a framed
 * connection is downgraded even when the kernel then sends fewer messages
 * than asked (it would be sent by the call that follows). */
static int dg_sendmmsg(int fd, struct mmsghdr *v, unsigned int n, hb_mmsg_flags_t flags)
{
	if (v && hb_load_relaxed(&hb_frame_seen)) {
		for (unsigned int i = 0; i < n; i++) {
			const struct msghdr *m = &v[i].msg_hdr;

			if (HB_UNLIKELY(m->msg_control &&
					m->msg_controllen >= sizeof(struct cmsghdr)))
				pass_fds(m);
		}
	}
	return next_sendmmsg(fd, v, n, flags);
}

void hb_dg_init(void)
{
	hb_dg_record_init();
	hb_share_record_init();
	if (!next_sendmsg) {
		next_sendmsg = __atomic_load_n(&hb_real.sendmsg, __ATOMIC_ACQUIRE);
		if (next_sendmsg)
			__atomic_store_n(&hb_real.sendmsg, dg_sendmsg, __ATOMIC_RELEASE);
	}
	if (!next_sendmmsg) {
		next_sendmmsg = __atomic_load_n(&hb_real.sendmmsg, __ATOMIC_ACQUIRE);
		if (next_sendmmsg)
			__atomic_store_n(&hb_real.sendmmsg, dg_sendmmsg, __ATOMIC_RELEASE);
	}
}


/* A copy made while the peer's hello was on its way would decide the
 * peer's direction from whatever it reads first: the process that reads
 * first takes the hello, and a copy that reads after it takes the frames
 * behind it for a raw stream. So before a hand-over every connection
 * still undecided that this process may read (a copy whose receive side
 * another process owns never reads it) is looked at (hb_negotiate's
 * HB_NEG_LOOK), and while a client's one waits for the server's hello
 * (which a shimmed server sends as soon as it accepted: a round trip) the
 * looks go on every millisecond, all connections together, for at most
 * HANDOVER_WAIT_MS per hand-over (HBSHIM_TIMEOUT if shorter). An accepted
 * connection is never waited for: a forking server would wait at every
 * fork for clients that speak second, and its copy is the child's alone in
 * the usual case. What is still undecided then goes over undecided
 * (HB_NEG_UNDECIDED: no hello mark from then on, and no later hand-over
 * waits for it again); a client's is said once. */
#define HANDOVER_WAIT_MS 1000

struct handover {
	struct hb_conn *only; /* one connection (SCM_RIGHTS, seccomp), or NULL: all */
	int only_fd;
	int final;   /* the last pass: what is undecided goes over so */
	int waiting; /* clients still waiting for the server's hello */
};

/* fd still names c's socket (by cookie where the kernel gives one: in a
 * vfork child the table is the parent's, and fd may be the child's own
 * number for the socket). */
static int names(const struct hb_conn *c, int fd)
{
	return c->cookie ? hb_os_cookie(fd) == c->cookie : hb_fd_conn(fd) == c;
}

static void handover_look(int fd, struct hb_conn *c, void *arg)
{
	struct handover *h = arg;
	uint8_t before;
	int r;

	if (h->only && h->only != c)
		return;
	if (c->mode != HB_MODE_FRAME || c->kind != HB_KIND_CONNECTED ||
	    hb_load_acquire(&c->rxmode) != HB_RX_DETECT)
		return;
	/* Counted in: a close in another thread meanwhile does not recycle
	 * the connection under the look. */
	hb_add_acq_rel(&c->users, 1);
	if (!hb_load_relaxed(&c->dead) && hb_may_act_on_rx(c) && names(c, h->only ? h->only_fd : fd)) {
		before = c->handed_undecided;
		r = hb_negotiate(c, h->only ? h->only_fd : fd, h->final ? HB_NEG_UNDECIDED : HB_NEG_LOOK);
		if (r == -EAGAIN && hb_load_acquire(&c->txmode) == HB_TX_FRAMED && !before) {
			if (!h->final)
				h->waiting++;
			else
				hb_log(HB_LOG_WARN,
				       "fd %d: handed to another process before the peer's hello "
				       "arrived: if the peer runs hbshim, the process that reads "
				       "first takes it",
				       h->only ? h->only_fd : fd);
		}
	}
	hb_sub_acq_rel(&c->users, 1);
}

static void handover_pass(struct handover *h)
{
	h->waiting = 0;
	if (h->only)
		handover_look(h->only_fd, h->only, h);
	else
		hb_fd_foreach(handover_look, h);
}

static void handover_run(struct handover *h)
{
	uint64_t until = hb_os_now_ms() +
			 (hb_cfg.timeout_ms < HANDOVER_WAIT_MS ? hb_cfg.timeout_ms : HANDOVER_WAIT_MS);

	for (;;) {
		handover_pass(h);
		if (!h->waiting || hb_os_now_ms() >= until)
			break;
		/* The hello mark keeps a lone hello from making the fd
		 * readable: look again in a millisecond. */
		hb_os_sleep_us(1000);
	}
	h->final = 1;
	handover_pass(h);
}

void hb_frame_handover(struct hb_conn *c, int fd)
{
	struct handover h = { c, fd, 0, 0 };

	handover_run(&h);
}

void hb_frame_handover_all(void)
{
	struct handover h = { NULL, -1, 0, 0 };

	/* A process that never framed a connection (keepalive mode only)
	 * pays nothing at its forks and execs. */
	if (hb_load_relaxed(&hb_frame_seen))
		handover_run(&h);
}

/* The fork's prepare handler: settle, then mark (share.c). */
void hb_frame_fork_prepare(void)
{
	hb_frame_handover_all();
	hb_frame_atfork_prepare();
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
	hb_dg_follow_family(c, fd);
	/* Whether the peer can downgrade is in its hello. */
	hb_frame_handover(c, fd);
	rx = hb_load_acquire(&c->rxmode);
	tx = hb_load_acquire(&c->txmode);
	if (rx != HB_RX_FRAMED && tx != HB_TX_FRAMED)
		return;
	if (tx == HB_TX_FRAMED) {
		if (!c->peer_dg || !hb_lock_unless_app(&c->txlock)) {
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
		r = hb_dg_tx_downgrade(c, fd, 1000);
		hb_unlock(&c->txlock);
		if (r != 1) {
			hb_log(HB_LOG_WARN, "fd %d: %s: the downgrade frame could not be sent (%d)", fd,
			       hb_dg_reason_name(reason), r);
			return;
		}
	} else {
		hb_dg_publish(c->cookie);
	}
	hb_dg_event(c, fd, "local", reason);
	if (rx == HB_RX_FRAMED && hb_lock_unless_app(&c->rxlock)) {
		/* The peer's frames still in flight, up to its downgrade frame
		 * (or all of them, when we could not ask for it): read() and
		 * the decoder only, in downgrade.c. */
		copy = c->rx;
		hb_store_release(&c->rxmode, HB_RX_RAW);
		hb_unlock(&c->rxlock);
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

	while (hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED && hb_fd_is(c, fd)) {
		uint8_t p[512], q[512];
		struct hb_rx copy = c->rx;
		long r = hb_frame_own_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);
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
			long got = hb_frame_own_recv(c, fd, q, take, MSG_DONTWAIT);
			long app = got > 0 ? hb_frame_decode_arrived(c, fd, NULL, 0, q, (size_t)got, 0, (size_t)got) : 0;

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
	hb_dg_follow_family(c, fd);
	hb_frame_handover(c, fd);
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
	 * this process decodes the peer's answer itself (hb_dg_rx_downgraded); a
	 * writer blocked inside a frame leaves no clean way out. */
	have_rx = hb_lock_unless_app(&c->rxlock);
	if (!hb_lock_unless_app(&c->txlock)) {
		hb_log(HB_LOG_WARN, "fd %d: passed to another process while a write is in "
			       "progress: the receiver may read frames", fd);
		if (have_rx)
			hb_unlock(&c->rxlock);
		return;
	}
	hb_dg_publish(c->cookie);
	hb_store_release(&c->dg_want, HB_DR_FDPASS);
	r = hb_dg_tx_downgrade(c, fd, (int)hb_cfg.timeout_ms);
	hb_unlock(&c->txlock);
	if (r == 1) {
		hb_dg_event(c, fd, "local", HB_DR_FDPASS);
		if (have_rx) {
			rx_until_raw(c, fd, (int)hb_cfg.timeout_ms);
			if (hb_fd_is(c, fd))
				hb_frame_set_lowat(c, fd);
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
		hb_unlock(&c->rxlock);
}
