/*
 * inherit_parse.c - the parser of HBSHIM_INHERIT entries (inherit.c).
 *
 * The variable comes from whoever ran exec: it is input like any other,
 * and a forged or damaged entry must never reach the connection state the
 * framed paths trust (a header length the decoder's buffer cannot hold, a
 * frame longer than the protocol allows). This file is pure (no syscalls,
 * no logging, no allocation) so that the unit tests and a fuzz target link
 * it alone; the checks against the kernel (is fd a TCP socket with that
 * cookie?) are inherit.c's.
 *
 * One entry, fields separated by ',', numbers in lowercase hex (at most 16
 * digits), byte strings as pairs of hex digits ("-" when empty):
 *   fd,cookie,rxmode,txmode,client,hello_sent,rx_remaining,rx_hdr,
 *   rx_flags,tx_remaining,tx_pend,peer_interval_ms,peer_timeout_ms
 * rx_flags: bit 0 rx.halfclosed, bit 1 peer_dg, bit 2 the socket's
 * SO_RCVLOWAT is the application's.
 */
#include <errno.h>
#include <string.h>

#include "hb.h"

/* The fields of an entry, in order. RX_HDR and TX_PEND are byte strings,
 * the others numbers. */
enum {
	F_FD,
	F_COOKIE,
	F_RXMODE,
	F_TXMODE,
	F_CLIENT,
	F_HELLO_SENT,
	F_RX_REMAINING,
	F_RX_HDR,
	F_RX_FLAGS,
	F_TX_REMAINING,
	F_TX_PEND,
	F_PEER_INTERVAL,
	F_PEER_TIMEOUT,
	F_COUNT
};
#define RX_FLAG_HALFCLOSED 1u
#define RX_FLAG_PEER_DG    2u
#define RX_FLAG_APP_LOWAT  4u

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static int field_end(char ch)
{
	return ch == ',' || ch == ';' || ch == 0;
}

/* A hex number of 1..16 digits ending the field; NULL if malformed. */
static const char *get_num(const char *s, uint64_t *v)
{
	int d, any = 0;

	*v = 0;
	while ((d = hexval(*s)) >= 0 && any < 16) {
		*v = (*v << 4) | (uint64_t)d;
		s++;
		any++;
	}
	if (!any || !field_end(*s))
		return NULL;
	return s;
}

/* "-" or 1..max bytes as hex pairs ending the field; NULL if malformed. */
static const char *get_bytes(const char *s, uint8_t *p, size_t max, size_t *n)
{
	*n = 0;
	if (*s == '-')
		return field_end(s[1]) ? s + 1 : NULL;
	while (hexval(s[0]) >= 0 && hexval(s[1]) >= 0) {
		if (*n >= max)
			return NULL;
		p[(*n)++] = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
		s += 2;
	}
	if (!*n || !field_end(*s))
		return NULL;
	return s;
}

/* The values one entry may hold: what a connection of ours can be in. */
static int consistent(const uint64_t f[F_COUNT], const struct hb_inherit_ent *e)
{
	if (f[F_FD] >= HB_FD_MAX || !f[F_COOKIE])
		return 0;
	if (f[F_RXMODE] > HB_RX_FAILED || f[F_TXMODE] > HB_TX_FRAMED || f[F_CLIENT] > 1 ||
	    f[F_HELLO_SENT] > 1 || f[F_RX_FLAGS] > (RX_FLAG_HALFCLOSED | RX_FLAG_PEER_DG | RX_FLAG_APP_LOWAT))
		return 0;
	if (f[F_RX_REMAINING] > HB_MAX_FRAME || f[F_TX_REMAINING] > HB_MAX_FRAME ||
	    f[F_PEER_INTERVAL] > UINT32_MAX || f[F_PEER_TIMEOUT] > UINT32_MAX)
		return 0;
	/* The decoder's own invariants (codec.c). */
	return hb_rx_state_valid(&e->rx);
}

int hb_inherit_parse(const char *s, struct hb_inherit_ent *e, const char **next)
{
	const char *p = s;
	uint64_t f[F_COUNT]; /* the numbers; byte strings go straight into *e */
	size_t rxn = 0, txn = 0;
	int i;

	memset(e, 0, sizeof(*e));
	memset(f, 0, sizeof(f));
	for (i = 0; i < F_COUNT && p; i++) {
		if (i && *p++ != ',') {
			p = NULL;
			break;
		}
		if (i == F_RX_HDR)
			p = get_bytes(p, e->rx.hdr, sizeof(e->rx.hdr), &rxn);
		else if (i == F_TX_PEND)
			p = get_bytes(p, e->tx.pend, sizeof(e->tx.pend), &txn);
		else
			p = get_num(p, &f[i]);
	}
	/* The next entry starts after the next ';', whatever this one held. */
	{
		const char *semi = strchr(s, ';');

		*next = semi ? semi + 1 : s + strlen(s);
	}
	if (!p || (*p != ';' && *p)) {
		memset(e, 0, sizeof(*e));
		return -EINVAL;
	}
	e->rx.hdr_len = (uint8_t)(rxn & 7); /* rxn <= HB_HDR_MAX < 8 */
	e->rx.remaining = (uint32_t)(f[F_RX_REMAINING] <= HB_MAX_FRAME ? f[F_RX_REMAINING] : 0);
	e->rx.halfclosed = !!(f[F_RX_FLAGS] & RX_FLAG_HALFCLOSED);
	e->peer_dg = !!(f[F_RX_FLAGS] & RX_FLAG_PEER_DG);
	e->app_rcvlowat = !!(f[F_RX_FLAGS] & RX_FLAG_APP_LOWAT);
	if (!consistent(f, e)) {
		memset(e, 0, sizeof(*e));
		return -EINVAL;
	}
	e->fd = (int)f[F_FD];
	e->cookie = f[F_COOKIE];
	e->rxmode = (uint8_t)f[F_RXMODE];
	e->txmode = (uint8_t)f[F_TXMODE];
	e->client = (uint8_t)f[F_CLIENT];
	e->hello_sent = (uint8_t)f[F_HELLO_SENT];
	e->tx.remaining = (uint32_t)f[F_TX_REMAINING];
	e->tx.pend_len = (uint8_t)txn;
	e->peer_interval_ms = (uint32_t)f[F_PEER_INTERVAL];
	e->peer_timeout_ms = (uint32_t)f[F_PEER_TIMEOUT];
	return 0;
}
