/*
 * fuzz_inherit.c - libFuzzer target for the HBSHIM_INHERIT entry parser
 * (shim/inherit_parse.c, pure): hb_inherit_parse.
 *
 * Input: the variable's value (up to the first NUL), in a heap buffer of
 * exactly its length plus the NUL, so ASan sees any read past it. Entries
 * are parsed one after the other as the constructor does.
 *
 * Checked: every call returns 0 or -EINVAL, moves forward and stays inside
 * the string (so a value of any length ends the loop); a rejected entry
 * leaves the output zeroed; an accepted one holds only values a
 * connection of ours can have (fd in the table's range, non-zero cookie,
 * modes, flags, frame lengths, a decoder state hb_rx_state_valid accepts),
 * prints back (in the exporter's format) to a string that parses to the
 * same entry, and its decoder state survives hb_rx_decode over the rest
 * of the input (UBSan sees an index past the partial header buffer).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t zero_ent[sizeof(struct hb_inherit_ent)];

static size_t put_bytes(char *p, const uint8_t *b, size_t n)
{
	size_t k = 0;

	if (!n)
		p[k++] = '-';
	for (size_t i = 0; i < n; i++)
		k += (size_t)sprintf(p + k, "%02x", b[i]);
	return k;
}

/* The exporter's format (inherit.c, export1_as). */
static void print_ent(char *out, const struct hb_inherit_ent *e)
{
	size_t k = (size_t)sprintf(out, "%x,%llx,%x,%x,%x,%x,%x,", e->fd,
				   (unsigned long long)e->cookie, e->rxmode, e->txmode, e->client,
				   e->hello_sent, e->rx.remaining);

	k += put_bytes(out + k, e->rx.hdr, e->rx.hdr_len);
	k += (size_t)sprintf(out + k, ",%x,%x,", e->rx.halfclosed, e->tx.remaining);
	k += put_bytes(out + k, e->tx.pend, e->tx.pend_len);
	sprintf(out + k, ",%x,%x", e->peer_interval_ms, e->peer_timeout_ms);
}

static int same(const struct hb_inherit_ent *a, const struct hb_inherit_ent *b)
{
	return a->fd == b->fd && a->cookie == b->cookie && a->rxmode == b->rxmode &&
	       a->txmode == b->txmode && a->client == b->client && a->hello_sent == b->hello_sent &&
	       a->rx.remaining == b->rx.remaining && a->rx.hdr_len == b->rx.hdr_len &&
	       !memcmp(a->rx.hdr, b->rx.hdr, a->rx.hdr_len) && a->rx.halfclosed == b->rx.halfclosed &&
	       a->tx.remaining == b->tx.remaining && a->tx.pend_len == b->tx.pend_len &&
	       !memcmp(a->tx.pend, b->tx.pend, a->tx.pend_len) &&
	       a->peer_interval_ms == b->peer_interval_ms && a->peer_timeout_ms == b->peer_timeout_ms;
}

static void check_ent(const struct hb_inherit_ent *e, const char *rest)
{
	char line[256];
	struct hb_inherit_ent again;
	const char *next;
	struct hb_rx rx = e->rx;
	size_t n = strlen(rest);
	uint8_t *buf;

	if (e->fd < 0 || (unsigned)e->fd >= HB_FD_MAX || !e->cookie)
		abort();
	if (e->rxmode > HB_RX_FAILED || e->txmode > HB_TX_FRAMED || e->client > 1 ||
	    e->hello_sent > 1)
		abort();
	if (e->tx.remaining > HB_MAX_FRAME || e->tx.pend_len > HB_TX_PEND_MAX ||
	    !hb_rx_state_valid(&e->rx))
		abort();
	print_ent(line, e);
	if (hb_inherit_parse(line, &again, &next) != 0 || *next || !same(e, &again))
		abort();
	/* The decoder starts from the adopted state (exact-size buffer). */
	buf = malloc(n ? n : 1);
	if (!buf)
		abort();
	memcpy(buf, rest, n);
	(void)hb_rx_decode(&rx, buf, n, NULL);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t len = nul ? (size_t)(nul - data) : size;
	char *s = malloc(len + 1);
	const char *p;

	if (!s)
		abort();
	memcpy(s, data, len);
	s[len] = 0;
	for (p = s; *p;) {
		struct hb_inherit_ent e;
		const char *next = NULL;
		int r = hb_inherit_parse(p, &e, &next);

		if (!next || next <= p || next > s + len)
			abort();
		if (r == 0)
			check_ent(&e, next);
		else if (r != -EINVAL || memcmp(&e, zero_ent, sizeof(e)))
			abort();
		p = next;
	}
	free(s);
	return 0;
}
