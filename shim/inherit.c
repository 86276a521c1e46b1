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
 *   rx_halfclosed,tx_remaining,tx_pend,peer_interval_ms,peer_timeout_ms
 * numbers in hex, byte strings as hex digits ("-" when empty).
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

static void export1_as(int fd, struct hb_conn *c, struct exp_ctx *x);

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
	export1_as(fd, c, x);
}

/* One entry: connection c, under number fd in the new image. */
static void export1_as(int fd, struct hb_conn *c, struct exp_ctx *x)
{
	struct hb_buf *b = x->b;

	if (x->n >= MAX_EXPORT)
		return;
	/* In a vfork child the table is the parent's: the number must still
	 * name the connection here. */
	if (x->vforked && hb_os_cookie(fd) != c->cookie)
		return;
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
	hb_buf_fmt(b, ",%x,%x,", c->rx.halfclosed, c->tx.remaining);
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
	fl = hb_os_fcntl(fd, F_GETFD, 0);
	if (fl >= 0 && !(fl & FD_CLOEXEC))
		hb_frame_mark_shared(c, hb_os_now_ms()); /* exported under its own number */
	for (int i = 0; i < sc->ndups; i++) {
		if (sc->dups[i][0] != fd || sc->dups[i][1] < 0 || sc->dups[i][1] == fd)
			continue;
		/* The child's number for it; the child checks the cookie. */
		hb_frame_mark_shared(c, hb_os_now_ms());
		export1_as(sc->dups[i][1], c, sc->x);
	}
}

size_t hb_inherit_export(char *out, size_t cap, const int (*dups)[2], int ndups)
{
	struct hb_buf b;
	struct exp_ctx x = { &b, 0, hb_vforked(), 0, -1, 0 };

	hb_buf_init(&b, out, cap);
	hb_buf_puts(&b, "HBSHIM_INHERIT=");
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

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Parse a hex number up to ',' ';' or NUL. */
static const char *get_num(const char *s, uint64_t *v)
{
	int d, any = 0;

	*v = 0;
	while ((d = hexval(*s)) >= 0 && any < 16) {
		*v = (*v << 4) | (uint64_t)d;
		s++;
		any++;
	}
	if (!any || (*s != ',' && *s != ';' && *s))
		return NULL;
	return *s == ',' ? s + 1 : s;
}

static const char *get_bytes(const char *s, uint8_t *p, size_t max, size_t *n)
{
	*n = 0;
	if (*s == '-')
		s++;
	else {
		while (hexval(s[0]) >= 0 && hexval(s[1]) >= 0) {
			if (*n >= max)
				return NULL;
			p[(*n)++] = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
			s += 2;
		}
	}
	if (*s != ',' && *s != ';' && *s)
		return NULL;
	return *s == ',' ? s + 1 : s;
}

/* Connections adopted so far, by socket cookie: fds that were dups of one
 * another before exec (inetd's stdin and stdout) share one connection, one
 * decoder and one encoder after it, as they did before. */
static struct {
	uint64_t cookie;
	struct hb_conn *c;
} adopted[MAX_EXPORT];
static int nadopted;

/* Adopt one parsed entry; returns 0 or -errno. */
static int adopt(uint64_t f[13], const uint8_t *rxh, size_t rxn, const uint8_t *txp, size_t txn)
{
	int fd = (int)f[0];
	struct hb_conn *c;

	if (hb_os_cookie(fd) != f[1] || f[2] > HB_RX_FAILED || f[3] > HB_TX_FRAMED ||
	    f[6] > HB_MAX_FRAME || f[9] > HB_MAX_FRAME)
		return -EINVAL;
	for (int i = 0; i < nadopted; i++)
		if (adopted[i].cookie == f[1])
			return hb_fd_install(fd, adopted[i].c);
	c = hb_conn_alloc();
	if (!c)
		return -ENOMEM;
	c->mode = HB_MODE_FRAME;
	c->kind = HB_KIND_CONNECTED;
	c->cookie = f[1];
	c->family = AF_INET;
	hb_store_relaxed(&c->rxmode, (uint8_t)f[2]);
	hb_store_relaxed(&c->txmode, (uint8_t)f[3]);
	c->client = (uint8_t)f[4];
	c->hello_sent = (uint8_t)f[5];
	c->rx.remaining = (uint32_t)f[6];
	memcpy(c->rx.hdr, rxh, rxn);
	c->rx.hdr_len = (uint8_t)rxn;
	c->rx.halfclosed = (uint8_t)f[8];
	c->tx.remaining = (uint32_t)f[9];
	memcpy(c->tx.pend, txp, txn);
	c->tx.pend_len = (uint8_t)txn;
	c->peer_interval_ms = (uint32_t)f[11];
	c->peer_timeout_ms = (uint32_t)f[12];
	c->opened_ms = hb_os_now_ms();
	c->last_app_ms = c->opened_ms;
	hb_or_acq_rel(&c->flags, HB_CF_TIMING | HB_CF_KA_ARMED | HB_CF_SHARED);
	hb_store_relaxed(&hb_stats_adopted, 1);
	hb_store_relaxed(&hb_frame_seen, 1);
	if (hb_os_fcntl(fd, F_GETFL, 0) & O_NONBLOCK)
		hb_or_acq_rel(&c->flags, HB_CF_NONBLOCK);
	if (hb_fd_install(fd, c) < 0) {
		hb_conn_free(c);
		return -ENOMEM;
	}
	if (nadopted < MAX_EXPORT) {
		adopted[nadopted].cookie = f[1];
		adopted[nadopted++].c = c;
	}
	hb_stat_add(HB_ST_CONN_FRAME, 1);
	return 0;
}

int hb_inherit_import(const char *s)
{
	int n = 0;

	while (s && *s) {
		uint64_t f[13];
		uint8_t rxh[HB_HDR_MAX], txp[HB_TX_PEND_MAX];
		size_t rxn = 0, txn = 0;
		int i;

		for (i = 0; i < 13 && s; i++) {
			if (i == 7)
				s = get_bytes(s, rxh, sizeof(rxh), &rxn);
			else if (i == 10)
				s = get_bytes(s, txp, sizeof(txp), &txn);
			else
				s = get_num(s, &f[i]);
		}
		if (!s || i < 13)
			return -EINVAL;
		if (adopt(f, rxh, rxn, txp, txn) == 0)
			n++;
		if (*s == ';')
			s++;
		else if (*s)
			return -EINVAL;
	}
	return n;
}
