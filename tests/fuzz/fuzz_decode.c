/*
 * fuzz_decode.c - libFuzzer target for the frame decoder (hb_rx_decode).
 *
 * Input: byte 0 is the number of cut points k (mod 32), the next 2k bytes
 * are cut offsets (little-endian u16, taken modulo the stream length), the
 * rest is the wire stream. The stream is decoded once whole and once cut
 * into chunks, each chunk in a heap buffer of exactly its size (ASan sees
 * any access outside it). The two decodings must agree on everything:
 * delivered bytes, heartbeat and control counts, final state, and the error
 * if there is one. Always: a chunk yields at most its own length, the
 * decoder keeps at most one partial header (fewer than 7 bytes between
 * calls, never together with owed payload), and never delivers more than
 * the input holds. After a downgrade frame (00 04) the rest of the stream
 * comes out untouched, in both decodings alike.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXCUT 32

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* Decoder state bounds that hold after every successful call. */
static void check_state(const struct hb_rx *st)
{
	if (st->hdr_len >= HB_HDR_MAX)
		abort();
	if (st->hdr_len && st->remaining)
		abort();
	if (st->remaining > HB_MAX_FRAME)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t k = 0, ncut = 0, n, at = 0, out_len = 0;
	size_t cuts[MAXCUT];
	const uint8_t *s;
	uint8_t *whole, *out;
	struct hb_rx st1, st2;
	struct hb_rx_info i1 = { 0 }, i2 = { 0 };
	ssize_t r1, r2 = 0;

	if (size) {
		k = data[0] % MAXCUT;
		data++;
		size--;
	}
	if (2 * k > size)
		k = size / 2;
	s = data + 2 * k;
	n = size - 2 * k;
	for (size_t i = 0; i < k; i++)
		cuts[ncut++] = (size_t)(data[2 * i] | data[2 * i + 1] << 8) % (n + 1);
	qsort(cuts, ncut, sizeof(cuts[0]), cmp_size);

	/* Whole. */
	memset(&st1, 0, sizeof(st1));
	whole = malloc(n ? n : 1);
	if (!whole)
		return 0;
	memcpy(whole, s, n);
	r1 = hb_rx_decode(&st1, whole, n, &i1);
	if (r1 >= 0) {
		if ((size_t)r1 > n)
			abort();
		check_state(&st1);
	} else if (r1 != -EPROTO && r1 != -EMSGSIZE) {
		abort();
	}

	/* Cut. */
	memset(&st2, 0, sizeof(st2));
	out = malloc(n ? n : 1);
	if (!out) {
		free(whole);
		return 0;
	}
	for (size_t i = 0; i <= ncut; i++) {
		size_t end = i < ncut ? cuts[i] : n, len = end - at;
		uint8_t *chunk = malloc(len ? len : 1);

		if (!chunk)
			abort();
		memcpy(chunk, s + at, len);
		r2 = hb_rx_decode(&st2, chunk, len, &i2);
		if (r2 >= 0) {
			if ((size_t)r2 > len || out_len + (size_t)r2 > n)
				abort();
			memcpy(out + out_len, chunk, (size_t)r2);
			out_len += (size_t)r2;
			check_state(&st2);
		}
		free(chunk);
		at = end;
		if (r2 < 0)
			break;
	}

	/* Agreement. */
	if (r1 >= 0) {
		if (r2 < 0 || out_len != (size_t)r1 || memcmp(out, whole, out_len) != 0)
			abort();
		if (i1.heartbeats != i2.heartbeats || i1.controls != i2.controls)
			abort();
		if (st1.remaining != st2.remaining || st1.hdr_len != st2.hdr_len ||
		    memcmp(st1.hdr, st2.hdr, st1.hdr_len) != 0 || st1.halfclosed != st2.halfclosed ||
		    st1.notice_reason != st2.notice_reason ||
		    st1.notice_silent_ms != st2.notice_silent_ms || st1.raw != st2.raw)
			abort();
		if (i1.downgrade != i2.downgrade || i1.dg_reason != i2.dg_reason ||
		    i1.dg_flags != i2.dg_flags)
			abort();
		/* After a downgrade frame the decoder holds nothing. */
		if (st1.raw && !hb_rx_at_boundary(&st1))
			abort();
		if (hb_rx_at_boundary(&st1) != hb_rx_at_boundary(&st2))
			abort();
	} else if (r2 != r1) {
		abort();
	}
	free(out);
	free(whole);
	return 0;
}
