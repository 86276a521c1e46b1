/*
 * codec.c - encoding and incremental decoding of the hbshim wire format.
 *
 * Pure code (no syscalls, no logging, no allocation), tested over every
 * split point by tests/unit/test_codec.c and fuzzed by tests/fuzz.
 * The format is documented in docs/PROTOCOL.md.
 */
#include <errno.h>
#include <string.h>

#include "codec.h"

static const uint8_t magic[4] = { HB_MAGIC0, HB_MAGIC1, HB_MAGIC2, HB_MAGIC3 };

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t hb_hello_encode(uint8_t *out, const struct hb_hello *h)
{
	memcpy(out, magic, 4);
	out[4] = h->version;
	out[5] = h->flags;
	put32(out + 6, h->interval_ms);
	put32(out + 10, h->timeout_ms);
	return HB_HELLO_LEN;
}

int hb_hello_classify(const uint8_t *p, size_t n, struct hb_hello *h)
{
	size_t m = n < 4 ? n : 4;

	if (memcmp(p, magic, m) != 0)
		return -1;
	if (n < 5)
		return 0;
	if (p[4] != HB_PROTO_VERSION)
		return -2;
	if (n < HB_HELLO_LEN)
		return 0;
	{
		uint32_t iv = get32(p + 6), to = get32(p + 10);

		if (iv == 0 || iv > HB_HELLO_INTERVAL_MAX || to == 0 || to > HB_HELLO_TIMEOUT_MAX)
			return -3;
		if (h) {
			h->version = p[4];
			h->flags = p[5];
			h->interval_ms = iv;
			h->timeout_ms = to;
		}
	}
	return 1;
}

uint32_t hb_pace_interval(uint32_t own_interval_ms, uint32_t peer_timeout_ms)
{
	uint32_t p = peer_timeout_ms / HB_PACE_DIV;

	if (!peer_timeout_ms)
		return own_interval_ms;
	if (p < HB_PACE_FLOOR_MS)
		p = HB_PACE_FLOOR_MS;
	return p < own_interval_ms ? p : own_interval_ms;
}

size_t hb_data_hdr(uint8_t *out, uint32_t len)
{
	out[0] = HB_FT_DATA;
	put32(out + 1, len);
	return HB_DATA_HDR_LEN;
}

size_t hb_notice_encode(uint8_t *out, uint8_t reason, uint32_t silent_ms)
{
	out[0] = HB_FT_CONTROL;
	out[1] = HB_CT_NOTICE;
	out[2] = reason;
	put32(out + 3, silent_ms);
	return HB_NOTICE_LEN;
}

size_t hb_downgrade_encode(uint8_t *out, uint8_t reason, uint8_t flags)
{
	out[0] = HB_FT_CONTROL;
	out[1] = HB_CT_DOWNGRADE;
	out[2] = reason;
	out[3] = flags;
	out[4] = 0;
	return HB_DOWNGRADE_LEN;
}

/* Length of the header that starts with h[0..have) once complete, or 0 if
 * the type is unknown. Needs have >= 1 (and >= 2 for control frames). */
static size_t hdr_need(const uint8_t *h, size_t have)
{
	if (h[0] == HB_FT_DATA)
		return HB_DATA_HDR_LEN;
	if (h[0] != HB_FT_CONTROL)
		return 0;
	if (have < 2)
		return 2;
	switch (h[1]) {
	case HB_CT_HEARTBEAT:
	case HB_CT_HALFCLOSE:
		return 2;
	case HB_CT_NOTICE:
		return HB_NOTICE_LEN;
	case HB_CT_DOWNGRADE:
		return HB_DOWNGRADE_LEN;
	default:
		return 0;
	}
}

/* A complete header in st->hdr: apply it. */
static int hdr_done(struct hb_rx *st, struct hb_rx_info *info)
{
	const uint8_t *h = st->hdr;

	st->hdr_len = 0;
	if (h[0] == HB_FT_DATA) {
		uint32_t len = get32(h + 1);

		if (len == 0 || len > HB_MAX_FRAME)
			return -EMSGSIZE;
		st->remaining = len;
		return 0;
	}
	if (info)
		info->controls++;
	switch (h[1]) {
	case HB_CT_HEARTBEAT:
		if (info)
			info->heartbeats++;
		break;
	case HB_CT_HALFCLOSE:
		st->halfclosed = 1;
		break;
	case HB_CT_NOTICE:
		st->notice_reason = h[2];
		st->notice_silent_ms = get32(h + 3);
		break;
	case HB_CT_DOWNGRADE:
		/* The sender's direction ends here: nothing of the frame
		 * layer follows, not even after a half-close. */
		if (st->halfclosed)
			return -EPROTO;
		st->raw = 1;
		if (info) {
			info->downgrade = 1;
			info->dg_reason = h[2];
			info->dg_flags = h[3];
		}
		break;
	}
	return 0;
}

ssize_t hb_rx_decode(struct hb_rx *st, uint8_t *buf, size_t len, struct hb_rx_info *info)
{
	size_t in = 0, out = 0;

	while (in < len) {
		if (st->raw) {
			/* After a downgrade frame: raw bytes, all of them. */
			if (out != in)
				memmove(buf + out, buf + in, len - in);
			out += len - in;
			break;
		}
		if (st->remaining) {
			size_t take = len - in < st->remaining ? len - in : st->remaining;

			if (out != in)
				memmove(buf + out, buf + in, take);
			out += take;
			in += take;
			st->remaining -= (uint32_t)take;
			continue;
		}
		if (!st->hdr_len && len - in >= HB_DATA_HDR_LEN && buf[in] == HB_FT_DATA &&
		    !st->halfclosed) {
			/* A whole data header in the buffer: the common case. */
			uint32_t flen = get32(buf + in + 1);

			if (flen == 0 || flen > HB_MAX_FRAME)
				return -EMSGSIZE;
			st->remaining = flen;
			st->last_len = flen < HB_LAST_LEN_MAX ? flen : HB_LAST_LEN_MAX;
			in += HB_DATA_HDR_LEN;
			continue;
		}
		if (!st->hdr_len && len - in >= 2 && buf[in] == HB_FT_CONTROL &&
		    buf[in + 1] == HB_CT_HEARTBEAT) {
			/* A run of whole heartbeats (a flood costs little). */
			uint32_t k = 0;

			do {
				in += 2;
				k++;
			} while (len - in >= 2 && buf[in] == HB_FT_CONTROL &&
				 buf[in + 1] == HB_CT_HEARTBEAT);
			if (info) {
				info->controls += k;
				info->heartbeats += k;
			}
			continue;
		}
		/* Header bytes, one at a time into st->hdr (at most 7). */
		st->hdr[st->hdr_len++] = buf[in++];
		{
			size_t need = hdr_need(st->hdr, st->hdr_len);

			/* After a half-close frame the sender promised no more
			 * application bytes: a data frame breaks that. */
			if (!need || (st->halfclosed && st->hdr[0] == HB_FT_DATA))
				return -EPROTO;
			if (st->hdr_len < need)
				continue;
			{
				int r = hdr_done(st, info);

				if (r < 0)
					return r;
			}
		}
	}
	return (ssize_t)out;
}

int hb_rx_state_valid(const struct hb_rx *st)
{
	size_t need;

	if (st->remaining > HB_MAX_FRAME)
		return 0;
	if (st->raw)
		return !st->remaining && !st->hdr_len;
	if (!st->hdr_len)
		return 1;
	/* A partial header only between frames, and one that is still
	 * partial: hb_rx_decode stores a byte at hdr[hdr_len] next. */
	need = hdr_need(st->hdr, st->hdr_len);
	return !st->remaining && need && st->hdr_len < need;
}

int hb_rx_data_fast(struct hb_rx *st, const uint8_t *hdr, size_t payload)
{
	uint32_t len;

	if (st->hdr_len || st->remaining || st->halfclosed || st->raw || hdr[0] != HB_FT_DATA)
		return 0;
	len = get32(hdr + 1);
	if (len == 0 || len > HB_MAX_FRAME || payload > len)
		return 0;
	st->remaining = len - (uint32_t)payload;
	st->last_len = len < HB_LAST_LEN_MAX ? len : HB_LAST_LEN_MAX;
	return 1;
}

int hb_tx_plan(const struct hb_tx *st, size_t n, uint8_t *hdr, struct hb_tx_seg seg[4])
{
	int k = 0;
	size_t owed = st->remaining, first;

	if (st->pend_len)
		seg[k++] = (struct hb_tx_seg){ st->pend, 0, st->pend_len };
	first = n < owed ? n : owed;
	if (first)
		seg[k++] = (struct hb_tx_seg){ NULL, 0, first };
	if (n > first) {
		size_t rest = n - first;

		if (rest > HB_MAX_FRAME)
			rest = HB_MAX_FRAME;
		hb_data_hdr(hdr, (uint32_t)rest);
		seg[k++] = (struct hb_tx_seg){ hdr, 0, HB_DATA_HDR_LEN };
		seg[k++] = (struct hb_tx_seg){ NULL, first, rest };
	}
	return k;
}

size_t hb_tx_commit(struct hb_tx *st, const struct hb_tx_seg seg[4], int nseg, size_t sent)
{
	size_t app = 0;

	for (int i = 0; i < nseg && sent; i++) {
		size_t take = sent < seg[i].len ? sent : seg[i].len;

		sent -= take;
		if (seg[i].base == st->pend) {
			/* Pending header bytes went out (maybe only some). */
			memmove(st->pend, st->pend + take, st->pend_len - take);
			st->pend_len = (uint8_t)(st->pend_len - take);
		} else if (seg[i].base) {
			/* A new header: it opens a frame even if only partly sent. */
			if (take < seg[i].len) {
				memcpy(st->pend, seg[i].base + take, seg[i].len - take);
				st->pend_len = (uint8_t)(seg[i].len - take);
			}
			st->remaining = get32(seg[i].base + 1);
		} else {
			app += take;
			st->remaining -= (uint32_t)take;
		}
	}
	return app;
}
