/*
 * frame_rx.c - the framed receive path: the application's recv, read,
 * recvmsg and their kin on a framed connection.
 *
 * It never buffers application bytes: it reads with an iovec that puts the
 * next frame header into a 5-byte scratch area and payload straight into
 * the application's buffer (no copy in the steady state), keeps at most one
 * partial frame header per connection, and predicts a bulk sender's next
 * frames so one recvmsg takes several. Control frames are consumed on the
 * way; a flood of them is bounded (a non-blocking read gives up and
 * re-arms readiness; a blocking one delivers signals as the kernel's
 * sleep would). Negotiation is asked (negotiate.c), never done here.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include "hb.h"
#include "frame_int.h"

/* Reads in a row that returned control frames only, per non-blocking
 * application read (each takes at most the receive buffer's bytes; reading
 * and decoding 64 KiB of heartbeats takes about 0.1 ms). A peer that
 * follows the protocol sends a heartbeat per interval and never comes near
 * it. */
#define FLOOD_READS 8

/* Decode got bytes that arrived through the (a, scratch, b) layout. */
long hb_frame_decode_arrived(struct hb_conn *c, int fd, uint8_t *buf, size_t alen, uint8_t *scratch,
		   size_t slen, size_t boff, size_t got)
{
	struct hb_rx_info info = { 0 };
	size_t app = 0, take;
	ssize_t r;

	if (got)
		hb_rx_seen(c);
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
		hb_dg_rx_downgraded(c, fd, &info);
	if (c->rx.notice_reason) {
		hb_log(HB_LOG_INFO, "fd %d: peer declared the connection dead (reason %u)", fd,
		       c->rx.notice_reason);
		c->rx.notice_reason = 0;
	}
	return (long)app;
bad:
	hb_frame_protocol_error(c, fd, EPROTO, r == -EMSGSIZE ? "length" : "frame");
	return -EPROTO;
}

/*
 * Bulk reads. A reader with room for several frames, while the sender keeps
 * writing one size, would get one frame per recvmsg: each read stops at the
 * next header, which must not land in the application's buffer. So the
 * next frames are predicted to be data frames of the last length (plen): one
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
	size_t rem = c->rx.remaining, plen = c->rx.last_len, tot = 0, pos[PRED_MAX];
	size_t app = 0, left;
	int k = 0, ns = 0, j;
	long got;

	if (rem) {
		v[k++] = (struct iovec){ buf, rem };
		tot = rem;
	}
	while (ns < PRED_MAX && tot + HB_DATA_HDR_LEN + plen <= n) {
		pos[ns] = rem + (size_t)ns * plen; /* where slot ns's payload goes */
		v[k++] = (struct iovec){ slot[ns], HB_DATA_HDR_LEN };
		v[k++] = (struct iovec){ buf + pos[ns], plen };
		tot += HB_DATA_HDR_LEN + plen;
		ns++;
	}
	memset(&m, 0, sizeof(m));
	m.msg_iov = v;
	m.msg_iovlen = (size_t)k;
	got = hb_next_recvmsg(fd, &m, flags & ~MSG_WAITALL);
	if (got <= 0)
		return got == 0 ? -ENODATA : got;
	hb_rx_seen(c);
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
		r = left - HB_DATA_HDR_LEN < plen ? left - HB_DATA_HDR_LEN : plen;
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
			p = rest < plen ? rest : plen;
			seglen[nseg++] = p;
			rest -= p;
		}
		for (int sg = nseg - 1; sg >= 0; sg--) {
			int i = j + sg / 2;
			size_t d = dst;

			for (int q = 0; q < sg; q++)
				d += seglen[q];
			if (sg & 1) {
				if (seglen[sg] && d != pos[i])
					memmove(buf + d, buf + pos[i], seglen[sg]);
			} else {
				memcpy(buf + d, slot[i], seglen[sg]);
			}
		}
		got = hb_frame_decode_arrived(c, fd, buf + app, 0, NULL, 0, 0, left);
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
		hb_rx_seen(c);
		return (long)((size_t)got - HB_DATA_HDR_LEN);
	}
	return hb_frame_decode_arrived(c, fd, buf, alen, scratch, slen, boff, (size_t)got);
}

/* MSG_PEEK: consume control frames at the head for real, then peek into the
 * current data frame only (a peek may return fewer bytes than are queued).
 * 0 after PEEK_HDRS header reads that found control frames only (the
 * caller's flood budget decides). rxlock held. */
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
				hb_rx_seen(c);
			return r == 0 ? -ENODATA : r;
		}
		r = hb_os_recv(fd, scratch,
			       (c->rx.hdr_len < HB_DATA_HDR_LEN ? HB_DATA_HDR_LEN : HB_NOTICE_LEN) -
				       c->rx.hdr_len,
			       (flags & ~(MSG_PEEK | MSG_WAITALL)));
		if (r <= 0)
			return r == 0 ? -ENODATA : r;
		r = hb_frame_decode_arrived(c, fd, NULL, 0, scratch, (size_t)r, 0, (size_t)r);
		if (r < 0)
			return r;
		if (!hb_fd_is(c, fd))
			return -EBADF;
		hb_frame_set_lowat(c, fd);
	}
	return 0;
}

/* A non-blocking read that gives up on a stream of control frames says
 * EAGAIN while bytes are queued: an edge-triggered poller would not hear of
 * them again until more arrive. Setting SO_RCVLOWAT (to the value it has)
 * makes the kernel signal readiness anew when enough is queued. */
void hb_frame_rearm(struct hb_conn *c, int fd)
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

static long frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags);

/* The entry points hold a use count so that the background thread never
 * recycles a connection another thread still works on (a close racing a
 * blocked read in another thread). */
long hb_frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	long r;

	if ((r = hb_frame_iov_check(m)) < 0)
		return r;
	hb_add_acq_rel(&c->users, 1);
	hb_dg_follow_family(c, fd);
	hb_take_side(c, HB_CF_CLAIMED);
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

		for (size_t i = 0; i < (size_t)m->msg_iovlen; i++)
			want += m->msg_iov[i].iov_len;
		if (want)
			r = hb_frame_other_verdict(c, fd, r);
	}
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
	while (total < n && (!total || hb_fd_is(c, fd))) {
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

/* One application read on a framed direction, across its rounds. */
struct rx_call {
	uint8_t *buf;      /* the first non-empty iovec: where bytes go */
	size_t n, total;   /* its length; application bytes read so far */
	uint64_t deadline; /* the application's SO_RCVTIMEO as a time, or 0 */
	int flags, nb, wait_all;
	int ctl_reads;     /* reads that returned control frames only */
	int masked;        /* fs.masked when this round's read began */
	struct flood_sig fs;
};

/* The rounds of one read: a read of frames, then what its result asks for
 * (the end of the stream, a wait within SO_RCVTIMEO, another read behind
 * control frames, the flood budget and its signals, MSG_WAITALL's rest).
 * Returns the last round's result (rc->total has what came). rxlock held. */
static long read_rounds(struct hb_conn *c, int fd, struct msghdr *m, struct rx_call *rc)
{
	long got;
	int r;

	for (int again = 0;; again = 1) {
		if (again && !hb_fd_is(c, fd)) {
			got = -EBADF;
			break;
		}
		if (rc->flags & MSG_PEEK)
			got = peek_framed(c, fd, rc->buf, rc->n,
					  rc->flags | (rc->masked ? MSG_DONTWAIT : 0));
		else
			got = read_once(c, fd, rc->buf + rc->total, rc->n - rc->total,
					rc->flags | ((rc->total && !rc->wait_all) ||
							     (rc->deadline && !rc->nb) || rc->masked
						     ? MSG_DONTWAIT : 0),
					m);
		if (rc->masked && got != 0) {
			/* The flood ended (data, the end, an error or nothing
			 * queued): the application's mask again. Nothing
			 * queued is where the kernel's reader would sleep. */
			r = flood_signals(&rc->fs, 0, rc->deadline != 0);
			if (got == -EAGAIN && r < 0) {
				got = r;
				break;
			}
			if (got == -EAGAIN && !rc->deadline && (!rc->total || rc->wait_all)) {
				rc->masked = rc->fs.masked;
				continue; /* a read we made non-blocking: now it waits */
			}
		}
		rc->masked = rc->fs.masked;
		if (got == -ENODATA) {
			got = 0;
			break; /* end of stream (also inside a frame: bytes so far stand) */
		}
		if (got == -EAGAIN && !rc->nb && rc->deadline && (!rc->total || rc->wait_all)) {
			r = wait_readable(fd, rc->deadline);
			if (r < 0) {
				got = r;
				break;
			}
			continue;
		}
		if (got < 0)
			break;
		rc->total += (size_t)got;
		if ((rc->flags & MSG_PEEK) && got)
			break;
		if (rc->total == rc->n)
			break;
		if (got > 0 && !(rc->flags & MSG_WAITALL))
			break;
		if (got == 0 && rc->nb && !rc->total) {
			/* Only control frames: maybe more is queued behind them,
			 * but a peer may send them faster than we decode. Each
			 * read takes at most what the receive buffer holds, so
			 * counting reads bounds the work (counting the length
			 * asked for would give up after one read of a large
			 * buffer, with data queued behind a heartbeat). */
			if (++rc->ctl_reads < FLOOD_READS)
				continue;
			hb_frame_rearm(c, fd);
			got = -EAGAIN;
			break;
		}
		if (got > 0 && (rc->flags & MSG_WAITALL) && !rc->nb)
			continue;
		if (got == 0 && !rc->nb) {
			/* A heartbeat is not end of stream: keep waiting, within
			 * SO_RCVTIMEO even while control frames keep coming. */
			if (rc->deadline && hb_os_now_ms() >= rc->deadline) {
				got = -EAGAIN;
				break;
			}
			if (++rc->ctl_reads % FLOOD_READS == 0) {
				if ((r = flood_signals(&rc->fs, 1, rc->deadline != 0)) < 0) {
					got = r;
					break;
				}
				flood_mask(&rc->fs);
				rc->masked = rc->fs.masked;
			}
			continue;
		}
		break;
	}
	return got;
}

static long frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	uint8_t *buf = NULL;
	size_t n = 0;
	uint64_t deadline = 0;
	int nb = hb_nonblocking(c, flags), r;
	struct rx_call rc;
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
	if ((r = hb_lock_fd(c, fd, &c->rxlock, nb)) < 0)
		return r;
	if ((r = hb_negotiate(c, fd, nb ? HB_NEG_RX : HB_NEG_RX_WAIT)) < 0) {
		hb_unlock(&c->rxlock);
		return r;
	}
	switch (hb_load_relaxed(&c->rxmode)) {
	case HB_RX_RAW:
		hb_unlock(&c->rxlock);
		got = hb_next_recvmsg(fd, m, flags);
		return got;
	case HB_RX_FAILED:
		hb_unlock(&c->rxlock);
		return -(long)(hb_load_relaxed(&c->dead) ? hb_load_relaxed(&c->dead) : EPROTO);
	default:
		break;
	}
	if (!n) {
		hb_unlock(&c->rxlock);
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
	rc = (struct rx_call){ .buf = buf, .n = n, .deadline = deadline, .flags = flags, .nb = nb,
			       .wait_all = (flags & MSG_WAITALL) && !nb && !(flags & MSG_PEEK) };
	got = read_rounds(c, fd, m, &rc);
	flood_signals(&rc.fs, 0, 0);
	if (hb_fd_is(c, fd))
		hb_frame_set_lowat(c, fd);
	hb_unlock(&c->rxlock);
	if (rc.total) {
		/* The application received data: its own sends answer it now,
		 * and the kernel's mode is theirs to set. */
		if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_QUICKACK))
			hb_and_acq_rel(&c->flags, ~HB_CF_QUICKACK);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
		return (long)rc.total;
	}
	return got;
}
