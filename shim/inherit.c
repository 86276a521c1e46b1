/*
 * inherit.c - framed connections across exec.
 *
 * A framed socket handed to an exec'd program (inetd style, or a server
 * that execs a handler with the connection on stdin/stdout) is mid-stream:
 * the new image must know which direction is framed, where the decoder
 * stands, and how many payload bytes the encoder still owes to an open
 * frame. Just before exec the interposers in i_exec.c export that state of
 * every framed fd that survives exec (no FD_CLOEXEC) into HBSHIM_INHERIT;
 * the new image's constructor imports it, checks each socket's identity
 * (SO_COOKIE) and adopts it, then removes the variable so that its own
 * children do not adopt stale state.
 *
 * Format: entries separated by ';', fields by ',':
 *   fd,cookie,rxmode,txmode,client,hello_sent,rx_remaining,rx_hdr,
 *   rx_flags,tx_remaining,tx_pend,peer_interval_ms,peer_timeout_ms
 * numbers in hex, byte strings as hex digits ("-" when empty); rx_flags:
 * bit 0 the peer half-closed, bit 1 the peer can downgrade (its hello),
 * bit 2 the socket's SO_RCVLOWAT is the application's.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "hb.h"

#define MAX_EXPORT 64

struct exp_ctx {
	struct hb_buf *b;
	int n;
	int vforked;
	unsigned std;       /* fds 0-2 exported */
	int want_fd;        /* find_cookie: the fd to export ... */
	uint64_t want;      /* ... if a framed connection has this cookie */
};

static void put_hex_bytes(struct hb_buf *b, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	if (!n)
		hb_buf_putc(b, '-');
	for (size_t i = 0; i < n; i++) {
		hb_buf_putc(b, hex[p[i] >> 4]);
		hb_buf_putc(b, hex[p[i] & 15]);
	}
}

static void export1_as(int fd, int here, struct hb_conn *c, struct exp_ctx *x);

static void export1(int fd, struct hb_conn *c, void *arg)
{
	struct exp_ctx *x = arg;
	long fl;

	if (c->mode != HB_MODE_FRAME || x->n >= MAX_EXPORT ||
	    (hb_load_relaxed(&c->flags) & HB_CF_LOST))
		return;
	fl = hb_os_fcntl(fd, F_GETFD, 0);
	if (fl < 0 || (fl & FD_CLOEXEC))
		return;
	export1_as(fd, fd, c, x);
}

/* One entry: connection c, under number fd in the new image (here: its
 * number in this process). */
static void export1_as(int fd, int here, struct hb_conn *c, struct exp_ctx *x)
{
	struct hb_buf *b = x->b;

	if (x->n >= MAX_EXPORT)
		return;
	/* In a vfork child the table is the parent's: the number must still
	 * name the connection here. */
	if (x->vforked && hb_os_cookie(fd) != c->cookie)
		return;
	/* The new image and this process must find the hello exchange in
	 * the same state (share.c). */
	hb_frame_handover(c, here);
	if (fd < 3)
		x->std |= 1u << fd;
	if (x->vforked) /* our memory is the parent's: no fork handler ran there */
		hb_frame_mark_shared(c, hb_os_now_ms());
	if (x->n++)
		hb_buf_putc(b, ';');
	hb_buf_fmt(b, "%x,%llx,%x,%x,%x,%x,%x,", fd, (unsigned long long)c->cookie,
		   hb_load_relaxed(&c->rxmode), hb_load_relaxed(&c->txmode), c->client,
		   c->hello_sent, c->rx.remaining);
	put_hex_bytes(b, c->rx.hdr, c->rx.hdr_len);
	hb_buf_fmt(b, ",%x,%x,",
		   c->rx.halfclosed | (c->peer_dg ? 2u : 0u) |
			   ((hb_load_relaxed(&c->flags) & HB_APP_RCVLOWAT) ? 4u : 0u),
		   c->tx.remaining);
	put_hex_bytes(b, c->tx.pend, c->tx.pend_len);
	hb_buf_fmt(b, ",%x,%x", c->peer_interval_ms, c->peer_timeout_ms);
}

/* A connection under another number, for one of fds 0-2 (below). */
static void find_cookie(int fd, struct hb_conn *c, void *arg)
{
	struct exp_ctx *x = arg;

	if (x->want && c->cookie == x->want && c->mode == HB_MODE_FRAME) {
		x->want = 0;
		export1(x->want_fd, c, x);
	}
}

/* Connections handed to a child by posix_spawn: glibc's child makes the
 * file actions' dup2 calls itself, unseen, and no fork handler runs in the
 * parent. dups[i] = { fd, newfd }. */
struct spawn_ctx {
	const int (*dups)[2];
	int ndups;
	struct exp_ctx *x;
};

static void spawn_visit(int fd, struct hb_conn *c, void *arg)
{
	struct spawn_ctx *sc = arg;
	long fl;

	if (c->mode != HB_MODE_FRAME || (hb_load_relaxed(&c->flags) & HB_CF_LOST))
		return;
	for (int i = 0; i < sc->ndups; i++) {
		if (sc->dups[i][0] != fd || sc->dups[i][1] < 0 || sc->dups[i][1] == fd)
			continue;
		/* The child's number for it; the child checks the cookie.
		 * Marked shared after the export's hand-over step, which
		 * this process may take only while the connection is its
		 * own. */
		export1_as(sc->dups[i][1], fd, c, sc->x);
		hb_frame_mark_shared(c, hb_os_now_ms());
	}
	fl = hb_os_fcntl(fd, F_GETFD, 0);
	if (fl >= 0 && !(fl & FD_CLOEXEC))
		hb_frame_mark_shared(c, hb_os_now_ms()); /* exported under its own number */
}

size_t hb_inherit_export(char *out, size_t cap, const int (*dups)[2], int ndups)
{
	struct hb_buf b;
	struct exp_ctx x = { &b, 0, hb_vforked(), 0, -1, 0 };

	hb_buf_init(&b, out, cap);
	hb_buf_puts(&b, "HBSHIM_INHERIT=");
	/* Every connection's hello exchange first, in one bounded wait; a
	 * vfork child's numbers for them (fds 0-2 dup'd from the table's)
	 * are looked at again below, by cookie. */
	hb_frame_handover_all();
	hb_fd_foreach(export1, &x);
	if (dups) {
		struct spawn_ctx sc = { dups, ndups, &x };

		hb_fd_foreach(spawn_visit, &sc);
	}
	/* A vfork child's dup2 of a connection onto stdin/stdout (python's
	 * subprocess) is not in the table, which is the parent's and stays
	 * untouched: fds 0-2 that are one of our framed connections under
	 * its socket cookie go too. */
	if (x.vforked) {
		for (int fd = 0; fd < 3; fd++) {
			if (x.std & (1u << fd))
				continue;
			x.want = hb_os_cookie(fd);
			x.want_fd = fd;
			if (x.want)
				hb_fd_foreach(find_cookie, &x);
		}
	}
	if (!x.n || b.len >= cap - 1)
		return 0;
	hb_buf_str(&b);
	return b.len;
}

/* Connections adopted so far, by socket cookie: fds that were dups of one
 * another before exec (inetd's stdin and stdout) share one connection, one
 * decoder and one encoder after it, as they did before. */
static struct {
	uint64_t cookie;
	struct hb_conn *c;
} adopted[MAX_EXPORT];
static int nadopted;

/* Whether fd is a TCP socket (SOCK_STREAM, IPv4 or IPv6) with this
 * cookie: the only thing an entry may describe. Returns its family or
 * -errno. */
static int check_socket(int fd, uint64_t cookie)
{
	int type = 0, dom = 0;
	socklen_t len = sizeof(type);
	long r = hb_os_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);

	if (r < 0)
		return (int)r; /* ENOTSOCK, EBADF */
	len = sizeof(dom);
	if (type != SOCK_STREAM || hb_os_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) < 0 ||
	    (dom != AF_INET && dom != AF_INET6))
		return -EPROTOTYPE;
	if (hb_os_cookie(fd) != cookie)
		return -ESTALE;
	return dom;
}

/* The socket's receive low-water mark as the exporting image left it: the
 * application's (the entry says so), or one of ours (6 between frames, up
 * to HB_HELLO_LEN + 1 before a hello), which hb_frame_set_lowat must know
 * to move it again: a mark of 6 it believed absent would hold a short raw
 * tail back from a reader. */
static void adopt_lowat(int fd, struct hb_conn *c, int app)
{
	int v = 0;
	socklen_t len = sizeof(v);

	if (app) {
		hb_or_acq_rel(&c->flags, HB_APP_RCVLOWAT);
		return;
	}
	if (hb_os_getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len) == 0 && v > 1 &&
	    v <= HB_HELLO_LEN + 1)
		c->lowat = (uint8_t)v;
}

/* Adopt one parsed entry; returns 0 or -errno. */
static int adopt(const struct hb_inherit_ent *e)
{
	struct hb_conn *c;
	int fd = e->fd, family;

	if (hb_fd_conn(fd))
		return -EEXIST; /* a second entry for one number */
	family = check_socket(fd, e->cookie);
	if (family < 0)
		return family;
	for (int i = 0; i < nadopted; i++)
		if (adopted[i].cookie == e->cookie)
			return hb_fd_install(fd, adopted[i].c);
	c = hb_conn_alloc();
	if (!c)
		return -ENOMEM;
	c->mode = HB_MODE_FRAME;
	c->kind = HB_KIND_CONNECTED;
	c->cookie = e->cookie;
	c->family = (uint8_t)family;
	hb_store_relaxed(&c->rxmode, e->rxmode);
	hb_store_relaxed(&c->txmode, e->txmode);
	c->client = e->client;
	c->hello_sent = e->hello_sent;
	c->rx.remaining = e->rx.remaining;
	memcpy(c->rx.hdr, e->rx.hdr, sizeof(c->rx.hdr));
	c->rx.hdr_len = e->rx.hdr_len;
	c->rx.halfclosed = e->rx.halfclosed;
	c->tx.remaining = e->tx.remaining;
	memcpy(c->tx.pend, e->tx.pend, sizeof(c->tx.pend));
	c->tx.pend_len = e->tx.pend_len;
	c->peer_interval_ms = e->peer_interval_ms;
	c->peer_timeout_ms = e->peer_timeout_ms;
	c->peer_dg = e->peer_dg;
	c->opened_ms = hb_os_now_ms();
	c->last_app_ms = c->opened_ms;
	hb_or_acq_rel(&c->flags, HB_CF_TIMING | HB_CF_KA_ARMED | HB_CF_SHARED);
	hb_store_relaxed(&hb_stats_adopted, 1);
	hb_store_relaxed(&hb_frame_seen, 1);
	if (hb_os_fcntl(fd, F_GETFL, 0) & O_NONBLOCK)
		hb_or_acq_rel(&c->flags, HB_CF_NONBLOCK);
	adopt_lowat(fd, c, e->app_rcvlowat);
	if (hb_fd_install(fd, c) < 0) {
		hb_conn_free(c);
		return -ENOMEM;
	}
	if (nadopted < MAX_EXPORT) {
		adopted[nadopted].cookie = e->cookie;
		adopted[nadopted++].c = c;
	}
	hb_stat_add(HB_ST_CONN_FRAME, 1);
	return 0;
}

static const char *why(int err)
{
	switch (err) {
	case -EINVAL: return "malformed or impossible values";
	case -EEXIST: return "a second entry for this fd";
	case -ENOTSOCK: return "not a socket";
	case -EBADF: return "not an open fd";
	case -EPROTOTYPE: return "not a TCP socket";
	case -ESTALE: return "not the socket of that cookie";
	case -ENOMEM: return "out of memory";
	default: return "cannot check it";
	}
}

int hb_inherit_import(const char *s)
{
	int n = 0, k = 0;

	while (s && *s) {
		struct hb_inherit_ent e;
		const char *next;
		int r;

		if (k++ == MAX_EXPORT) {
			/* No exporter writes more: the rest is not ours. */
			hb_log(HB_LOG_WARN, "HBSHIM_INHERIT: more than %d entries: the rest ignored",
			       MAX_EXPORT);
			break;
		}
		r = hb_inherit_parse(s, &e, &next);
		if (r == 0)
			r = adopt(&e);
		if (r == 0)
			n++;
		else if (e.cookie)
			hb_log(HB_LOG_WARN, "HBSHIM_INHERIT: entry %d (fd %d) ignored: %s", k, e.fd,
			       why(r));
		else
			hb_log(HB_LOG_WARN, "HBSHIM_INHERIT: entry %d ignored: %s", k, why(r));
		s = next;
	}
	return n;
}
