/*
 * fuzz_hello.c - libFuzzer target for hb_hello_classify (and
 * hb_hello_encode).
 *
 * Every prefix of the input (up to 32 bytes) is classified from a heap
 * buffer of exactly its length. Checked against a straightforward
 * reference and for consistency across lengths:
 *   - results are 1, 0, -1, -2 or -3, and 0 only below HB_HELLO_LEN bytes;
 *   - -3 exactly when a complete hello carries an interval_ms or timeout_ms
 *     out of range, and then *h is untouched;
 *   - a decision other than 0 is final: longer prefixes give the same one;
 *   - classify(p, n) == 1 implies classify(p, k) == 0 for every k < 14 and
 *     == 1 for every k >= 14, with the same parsed fields;
 *   - a parsed hello re-encodes to exactly the 14 input bytes (flags kept);
 *   - passing NULL for the parsed hello changes nothing.
 * Then a hello built from the input's bytes must round-trip.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t magic[4] = { HB_MAGIC0, HB_MAGIC1, HB_MAGIC2, HB_MAGIC3 };

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The documented rules, spelled out the slow way. */
static int reference(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && i < 4; i++)
		if (p[i] != magic[i])
			return -1;
	if (n < 5)
		return 0;
	if (p[4] != HB_PROTO_VERSION)
		return -2;
	if (n < HB_HELLO_LEN)
		return 0;
	if (be32(p + 6) < 1 || be32(p + 6) > 3600000u || be32(p + 10) < 1 ||
	    be32(p + 10) > 86400000u)
		return -3;
	return 1;
}

static int same(const struct hb_hello *a, const struct hb_hello *b)
{
	return a->version == b->version && a->flags == b->flags &&
	       a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms;
}

/* One heap buffer per input, 32 bytes plus the redzone ASan puts after it.
 * A prefix of n bytes is copied to its end, so a read of byte n or beyond
 * lands in the redzone exactly as with a buffer of length n (one allocation
 * per input instead of one per call: 60 mallocs made this target ~20x
 * slower). A read before the start is not caught here; classify only
 * indexes forward from p. */
static uint8_t *arena;

static int classify_exact(const uint8_t *p, size_t n, struct hb_hello *h)
{
	uint8_t *copy = arena + 32 - n;

	memmove(copy, p, n);
	return hb_hello_classify(copy, n, h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max = size < 32 ? size : 32;
	int decided = 0, first_one = -1;
	struct hb_hello h, h1 = { 0, 0, 0, 0 };

	arena = malloc(32);
	if (!arena)
		abort();

	for (size_t n = 0; n <= max; n++) {
		int r, rn;

		memset(&h, 0xa5, sizeof(h));
		r = classify_exact(data, n, &h);
		rn = classify_exact(data, n, NULL);
		if (r != rn || r != reference(data, n))
			abort();
		if (r == 0 && n >= HB_HELLO_LEN)
			abort();
		if (decided && r != decided)
			abort(); /* a decision is final */
		if (r != 0)
			decided = r;
		if (r == -2 && (n < 5 || memcmp(data, magic, 4) != 0 || data[4] == HB_PROTO_VERSION))
			abort();
		if (r == -3) {
			struct hb_hello un;

			memset(&un, 0xa5, sizeof(un));
			if (n < HB_HELLO_LEN || memcmp(&h, &un, sizeof(h)) != 0)
				abort();
		}
		if (r == 1) {
			uint8_t enc[HB_HELLO_LEN];

			if (h.version != HB_PROTO_VERSION || h.flags != data[5] ||
			    h.interval_ms != be32(data + 6) || h.timeout_ms != be32(data + 10))
				abort();
			if (hb_hello_encode(enc, &h) != HB_HELLO_LEN ||
			    memcmp(enc, data, HB_HELLO_LEN) != 0)
				abort();
			if (first_one < 0) {
				first_one = (int)n;
				h1 = h;
			} else if (!same(&h, &h1)) {
				abort();
			}
		}
	}
	if (first_one >= 0) {
		if (first_one != HB_HELLO_LEN)
			abort();
		for (size_t k = 0; k < HB_HELLO_LEN; k++)
			if (classify_exact(data, k, NULL) != 0)
				abort();
	}

	/* Round trip of a hello made from the input (values folded into their
	 * ranges). */
	if (size >= 9) {
		struct hb_hello in = { HB_PROTO_VERSION, data[0], 1 + be32(data + 1) % 3600000u,
				       1 + be32(data + 5) % 86400000u };
		uint8_t enc[HB_HELLO_LEN + 1];

		enc[HB_HELLO_LEN] = data[0];
		if (hb_hello_encode(enc, &in) != HB_HELLO_LEN || enc[HB_HELLO_LEN] != data[0])
			abort();
		if (classify_exact(enc, HB_HELLO_LEN, &h) != 1 || !same(&h, &in))
			abort();
		for (size_t k = 0; k < HB_HELLO_LEN; k++)
			if (classify_exact(enc, k, NULL) != 0)
				abort();
	}
	free(arena);
	return 0;
}
