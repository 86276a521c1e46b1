/*
 * test_codec.c - the wire codec (shim/codec.c) against docs/PROTOCOL.md:
 * the document's test vectors byte for byte (and a check that the document
 * still prints them), hello classification at every prefix length, the
 * decoder over every split point of a small stream and thousands of random
 * split sets of a long one, every decoder error, and the transmit planner
 * against a simulated kernel that takes arbitrary short counts.
 *
 * The key invariant of the transmit tests: the application byte count that
 * hb_tx_commit reports (what write() returns to the program) is exactly
 * what the peer's decoder delivers, at every step, whatever the kernel took.
 *
 * Every chunk handed to the decoder sits in memory fenced off on both sides
 * (poisoned), so an ASan build (make check SAN=address) catches any read or
 * write outside it. Buffers are reused rather than allocated per chunk:
 * fresh pages are slow under a sanitizer. HB_TEST_SEED=N changes the random runs (a failure prints
 * the seed in use); HB_TEST_FILTER=PATTERN runs only the matching tests.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "codec.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

/* ------------------------------------------------------------ vectors */

/*
 * The test vectors of docs/PROTOCOL.md, as the document prints them (one
 * line each, lower-case hex, bytes separated by one space).
 * test_vectors_in_doc checks the document still contains these exact lines.
 */
#define VEC_HELLO "e5 48 42 53 01 00 00 00 13 88 00 00 3a 98"
/* What libhbshim sends: the same with flag 01 (it paces its heartbeats). */
#define VEC_HELLO_PACED "e5 48 42 53 01 01 00 00 13 88 00 00 3a 98"
/* Out of range: interval 0xffffffff ms (49 days), and 0. */
#define VEC_HELLO_BAD_INTERVAL "e5 48 42 53 01 01 ff ff ff ff 00 00 3a 98"
#define VEC_HELLO_ZERO_INTERVAL "e5 48 42 53 01 00 00 00 00 00 00 00 3a 98"
/* A half-close frame, then a data frame: a protocol error at the 01. */
#define VEC_HALFCLOSE_DATA "00 02 01 00 00 00 01 78"
#define VEC_HEARTBEAT "00 01"
#define VEC_HALFCLOSE "00 02"
#define VEC_NOTICE "00 03 01 00 00 01 f8"
#define VEC_DATA "01 00 00 00 05 68 65 6c 6c 6f"
#define VEC_STREAM                                                              \
	"e5 48 42 53 01 00 00 00 13 88 00 00 3a 98 01 00 00 00 02 68 69 00 01 " \
	"00 01 01 00 00 00 05 68 65 6c 6c 6f 00 03 01 00 00 01 f8"
/* A downgrade frame: reason 1 (seccomp), flag 01 (go raw too, please). */
#define VEC_DOWNGRADE "00 04 01 01 00"
/* Data "hi", the downgrade frame, then raw bytes that look like frames. */
#define VEC_DOWNGRADE_STREAM "01 00 00 00 02 68 69 00 04 01 01 00 00 01 53 53 48"
/* What libhbshim sends with the downgrade flag: paced (01) + can downgrade (02). */
#define VEC_HELLO_DG "e5 48 42 53 01 03 00 00 13 88 00 00 3a 98"
/* What the peer application reads from VEC_STREAM. */
#define VEC_STREAM_APP "hihello"

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*s) {
		unsigned v;

		if (*s == ' ') {
			s++;
			continue;
		}
		if (sscanf(s, "%2x", &v) != 1 || n == cap)
			fail_msg("bad test vector at \"%s\"", s);
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

/* ------------------------------------------------------------ random */

static uint64_t rng_state;
static uint64_t rng_seed;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* Seed for one test: HB_TEST_SEED if set, else a fixed per-test value. */
static void seed(uint64_t fixed)
{
	const char *e = getenv("HB_TEST_SEED");

	rng_seed = e && *e ? strtoull(e, NULL, 0) ^ fixed : fixed;
	rng_state = rng_seed ? rng_seed : 1;
}

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			print_error("seed %#llx: ", (unsigned long long)rng_seed); \
			fail_msg(__VA_ARGS__);                                 \
		}                                                              \
	} while (0)

/* ------------------------------------------------------------ receiver */

/* A decoder plus everything it delivered. */
struct dec {
	struct hb_rx st;
	struct hb_rx_info info;
	uint8_t *out;
	size_t outlen, outcap;
	size_t in;        /* wire bytes fed */
	int err;          /* first error returned, 0 = none */
};

/* One output buffer, lent to the decoder in use (one at a time). */
static uint8_t *out_mem;
static size_t out_cap;

static void dec_init(struct dec *d)
{
	memset(d, 0, sizeof(*d));
	d->out = out_mem;
	d->outcap = out_cap;
	out_mem = NULL;
}

static void dec_free(struct dec *d)
{
	out_mem = d->out;
	out_cap = d->outcap;
}

/* The fenced area chunks are decoded in: FENCE poisoned bytes, the chunk,
 * then the rest of the area poisoned too. */
#define FENCE 16
static uint8_t *chunk_mem;
static size_t chunk_cap;

static uint8_t *chunk_place(const uint8_t *p, size_t n)
{
	if (n + 2 * FENCE > chunk_cap) {
		if (chunk_mem)
			ASAN_UNPOISON_MEMORY_REGION(chunk_mem, chunk_cap);
		free(chunk_mem);
		chunk_cap = (n + 2 * FENCE) * 2;
		chunk_mem = malloc(chunk_cap);
		assert_non_null(chunk_mem);
	}
	ASAN_UNPOISON_MEMORY_REGION(chunk_mem, chunk_cap);
	if (n)
		memcpy(chunk_mem + FENCE, p, n);
	ASAN_POISON_MEMORY_REGION(chunk_mem, FENCE);
	ASAN_POISON_MEMORY_REGION(chunk_mem + FENCE + n, chunk_cap - FENCE - n);
	return chunk_mem + FENCE;
}

/* Feed p[0..n) through a fenced buffer of exactly n bytes. Returns what
 * hb_rx_decode returned. Checks the decoder's state bounds. */
static ssize_t dec_feed(struct dec *d, const uint8_t *p, size_t n)
{
	uint8_t *buf = chunk_place(p, n);
	ssize_t r;

	r = hb_rx_decode(&d->st, buf, n, &d->info);
	if (r >= 0) {
		CHECK((size_t)r <= n, "decode returned %zd for %zu bytes", r, n);
		if (d->outlen + (size_t)r > d->outcap) {
			d->outcap = (d->outlen + (size_t)r) * 2 + 64;
			d->out = realloc(d->out, d->outcap);
			assert_non_null(d->out);
		}
		if (r > 0)
			memcpy(d->out + d->outlen, buf, (size_t)r);
		d->outlen += (size_t)r;
		/* At most one partial header, never together with payload. */
		CHECK(d->st.hdr_len <= HB_HDR_MAX, "hdr_len %u", d->st.hdr_len);
		CHECK(d->st.hdr_len < HB_HDR_MAX, "a complete 7-byte header was kept");
		CHECK(!(d->st.hdr_len && d->st.remaining), "partial header and open payload");
		CHECK(d->st.remaining <= HB_MAX_FRAME, "remaining %u", d->st.remaining);
	} else if (!d->err) {
		d->err = (int)r;
	}
	d->in += n;
	return r;
}

/* ------------------------------------------------------------ generator */

/* A framed stream under construction plus what it should decode to. */
struct gen {
	uint8_t *wire;
	size_t len, cap;
	uint8_t *app;
	size_t alen, acap;
	uint32_t heartbeats, controls, halfcloses, notices;
	uint8_t last_reason;
	uint32_t last_silent;
	size_t *hdr_off; /* where each frame starts */
	size_t nhdr, hdrcap;
};

static void grow(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap && *p)
		return;
	*cap = need * 2 + 256;
	*p = realloc(*p, *cap);
	assert_non_null(*p);
}

static void gen_put(struct gen *g, const uint8_t *p, size_t n)
{
	grow(&g->wire, &g->cap, g->len + n);
	memcpy(g->wire + g->len, p, n);
	g->len += n;
}

static void gen_mark(struct gen *g)
{
	if (g->nhdr == g->hdrcap) {
		g->hdrcap = g->hdrcap * 2 + 16;
		g->hdr_off = realloc(g->hdr_off, g->hdrcap * sizeof(*g->hdr_off));
		assert_non_null(g->hdr_off);
	}
	g->hdr_off[g->nhdr++] = g->len;
}

static void gen_data(struct gen *g, uint32_t n)
{
	uint8_t h[HB_DATA_HDR_LEN];

	CHECK(!g->halfcloses, "no data frame may follow a half-close");
	gen_mark(g);
	assert_int_equal(hb_data_hdr(h, n), HB_DATA_HDR_LEN);
	gen_put(g, h, sizeof(h));
	grow(&g->app, &g->acap, g->alen + n);
	for (uint32_t i = 0; i < n; i++)
		g->app[g->alen + i] = (uint8_t)rnd();
	gen_put(g, g->app + g->alen, n);
	g->alen += n;
}

static void gen_heartbeat(struct gen *g)
{
	static const uint8_t hb[2] = { HB_FT_CONTROL, HB_CT_HEARTBEAT };

	gen_mark(g);
	gen_put(g, hb, 2);
	g->heartbeats++;
	g->controls++;
}

static void gen_halfclose(struct gen *g)
{
	static const uint8_t hc[2] = { HB_FT_CONTROL, HB_CT_HALFCLOSE };

	gen_mark(g);
	gen_put(g, hc, 2);
	g->halfcloses++;
	g->controls++;
}

static void gen_notice(struct gen *g, uint8_t reason, uint32_t silent)
{
	uint8_t n[HB_NOTICE_LEN];

	gen_mark(g);
	assert_int_equal(hb_notice_encode(n, reason, silent), HB_NOTICE_LEN);
	gen_put(g, n, sizeof(n));
	g->notices++;
	g->controls++;
	g->last_reason = reason;
	g->last_silent = silent;
}

static void gen_free(struct gen *g)
{
	free(g->wire);
	free(g->app);
	free(g->hdr_off);
}

/* A random frame; data sizes from 1 to max_data, skewed small. A half-close
 * ends the application's bytes: the caller adds it last. */
static void gen_random_frame(struct gen *g, uint32_t max_data)
{
	switch (rnd() % 8) {
	case 0:
	case 1:
	case 3:
		gen_heartbeat(g);
		break;
	case 2:
		gen_notice(g, (uint8_t)(1 + rnd() % 4), (uint32_t)rnd());
		break;
	case 4:
	case 5:
		gen_data(g, 1 + (uint32_t)(rnd() % (max_data < 16 ? max_data : 16)));
		break;
	case 6:
		gen_data(g, 1 + (uint32_t)(rnd() % (max_data < 2000 ? max_data : 2000)));
		break;
	default:
		gen_data(g, 1 + (uint32_t)(rnd() % max_data));
		break;
	}
}

/* Decode g->wire cut at the sorted offsets cuts[0..ncut) and compare. */
static void decode_split(const struct gen *g, const size_t *cuts, size_t ncut)
{
	struct dec d;
	size_t at = 0;

	dec_init(&d);
	for (size_t i = 0; i <= ncut; i++) {
		size_t end = i < ncut ? cuts[i] : g->len;
		ssize_t r;

		CHECK(end >= at && end <= g->len, "bad cut");
		r = dec_feed(&d, g->wire + at, end - at);
		CHECK(r >= 0, "decode error %zd at chunk %zu [%zu, %zu)", r, i, at, end);
		at = end;
	}
	CHECK(d.outlen == g->alen, "delivered %zu bytes, want %zu", d.outlen, g->alen);
	CHECK(memcmp(d.out, g->app, g->alen) == 0, "delivered bytes differ");
	CHECK(d.info.heartbeats == g->heartbeats, "heartbeats %u, want %u", d.info.heartbeats,
	      g->heartbeats);
	CHECK(d.info.controls == g->controls, "controls %u, want %u", d.info.controls,
	      g->controls);
	CHECK(d.st.halfclosed == (g->halfcloses > 0), "halfclosed %u", d.st.halfclosed);
	CHECK(d.st.notice_reason == g->last_reason, "notice reason %u, want %u",
	      d.st.notice_reason, g->last_reason);
	if (g->notices)
		CHECK(d.st.notice_silent_ms == g->last_silent, "notice silent_ms");
	CHECK(hb_rx_at_boundary(&d.st), "not at a boundary at the end");
	dec_free(&d);
}

/* ------------------------------------------------------------ vectors */

static void test_vectors_encode(void **state)
{
	struct hb_hello h = { HB_PROTO_VERSION, 0, 5000, 15000 };
	uint8_t want[64], got[64];
	size_t n;

	(void)state;
	n = unhex(VEC_HELLO, want, sizeof(want));
	assert_int_equal(n, HB_HELLO_LEN);
	assert_int_equal(hb_hello_encode(got, &h), HB_HELLO_LEN);
	assert_memory_equal(got, want, n);

	/* The heartbeat is exactly the reference design's two bytes. */
	n = unhex(VEC_HEARTBEAT, want, sizeof(want));
	assert_int_equal(n, 2);
	assert_int_equal(want[0], HB_FT_CONTROL);
	assert_int_equal(want[1], HB_CT_HEARTBEAT);
	assert_int_equal(want[0], 0x00);
	assert_int_equal(want[1], 0x01);

	n = unhex(VEC_HALFCLOSE, want, sizeof(want));
	assert_int_equal(n, 2);
	assert_int_equal(want[0], HB_FT_CONTROL);
	assert_int_equal(want[1], HB_CT_HALFCLOSE);

	n = unhex(VEC_NOTICE, want, sizeof(want));
	assert_int_equal(n, HB_NOTICE_LEN);
	assert_int_equal(hb_notice_encode(got, HB_NR_HEARTBEAT, 504), HB_NOTICE_LEN);
	assert_memory_equal(got, want, n);

	n = unhex(VEC_DATA, want, sizeof(want));
	assert_int_equal(n, HB_DATA_HDR_LEN + 5);
	assert_int_equal(hb_data_hdr(got, 5), HB_DATA_HDR_LEN);
	memcpy(got + HB_DATA_HDR_LEN, "hello", 5);
	assert_memory_equal(got, want, n);

	/* The mixed stream is the concatenation of encoder output. */
	{
		uint8_t s[128];
		size_t k = 0;

		k += hb_hello_encode(s + k, &h);
		k += hb_data_hdr(s + k, 2);
		memcpy(s + k, "hi", 2);
		k += 2;
		s[k++] = HB_FT_CONTROL;
		s[k++] = HB_CT_HEARTBEAT;
		s[k++] = HB_FT_CONTROL;
		s[k++] = HB_CT_HEARTBEAT;
		k += hb_data_hdr(s + k, 5);
		memcpy(s + k, "hello", 5);
		k += 5;
		k += hb_notice_encode(s + k, HB_NR_HEARTBEAT, 504);
		n = unhex(VEC_STREAM, want, sizeof(want));
		assert_int_equal(k, n);
		assert_memory_equal(s, want, n);
	}
	/* The public header's constants agree with the codec's. */
	assert_int_equal(HB_PROTO_VERSION, 1);
	assert_int_equal(HB_MAX_FRAME, 16u * 1024 * 1024);
}

static void test_vectors_decode(void **state)
{
	uint8_t v[128];
	struct hb_hello h;
	struct dec d;
	size_t n;

	(void)state;
	n = unhex(VEC_HELLO, v, sizeof(v));
	memset(&h, 0xa5, sizeof(h));
	assert_int_equal(hb_hello_classify(v, n, &h), 1);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.flags, 0);
	assert_int_equal(h.interval_ms, 5000);
	assert_int_equal(h.timeout_ms, 15000);

	dec_init(&d);
	n = unhex(VEC_HEARTBEAT, v, sizeof(v));
	assert_int_equal(dec_feed(&d, v, n), 0);
	assert_int_equal(d.info.heartbeats, 1);
	n = unhex(VEC_DATA, v, sizeof(v));
	assert_int_equal(dec_feed(&d, v, n), 5);
	assert_int_equal(d.outlen, 5);
	assert_memory_equal(d.out, "hello", 5);
	assert_true(hb_rx_at_boundary(&d.st));
	n = unhex(VEC_HALFCLOSE, v, sizeof(v));
	assert_int_equal(dec_feed(&d, v, n), 0);
	assert_int_equal(d.st.halfclosed, 1);
	assert_int_equal(d.info.heartbeats, 1);
	n = unhex(VEC_NOTICE, v, sizeof(v));
	assert_int_equal(dec_feed(&d, v, n), 0);
	assert_int_equal(d.st.notice_reason, HB_NR_HEARTBEAT);
	assert_int_equal(d.st.notice_silent_ms, 504);
	assert_int_equal(d.info.controls, 3);
	/* Nothing but control frames after the half-close. */
	n = unhex(VEC_DATA, v, sizeof(v));
	assert_int_equal(dec_feed(&d, v, n), -EPROTO);
	dec_free(&d);

	/* The mixed stream: hello first, then frames, at every split point. */
	n = unhex(VEC_STREAM, v, sizeof(v));
	assert_int_equal(hb_hello_classify(v, n, &h), 1);
	assert_int_equal(h.interval_ms, 5000);
	for (size_t cut = HB_HELLO_LEN; cut <= n; cut++) {
		dec_init(&d);
		assert_true(dec_feed(&d, v + HB_HELLO_LEN, cut - HB_HELLO_LEN) >= 0);
		assert_true(dec_feed(&d, v + cut, n - cut) >= 0);
		assert_int_equal(d.outlen, strlen(VEC_STREAM_APP));
		assert_memory_equal(d.out, VEC_STREAM_APP, d.outlen);
		assert_int_equal(d.info.heartbeats, 2);
		assert_int_equal(d.info.controls, 3);
		assert_int_equal(d.st.notice_reason, 1);
		assert_int_equal(d.st.notice_silent_ms, 504);
		assert_int_equal(d.st.halfclosed, 0);
		assert_true(hb_rx_at_boundary(&d.st));
		dec_free(&d);
	}
}

/* The downgrade frame: encoded as documented; what follows it comes out
 * untouched at every split point (frame-like bytes included); the reason
 * and flags are reported once; the state is valid and holds nothing. */
static void test_downgrade(void **state)
{
	static const uint8_t app[] = { 'h', 'i', 0x00, 0x01, 'S', 'S', 'H' };
	uint8_t v[64], e[HB_DOWNGRADE_LEN];
	struct hb_hello h;
	struct dec d;
	size_t n;

	(void)state;
	n = unhex(VEC_DOWNGRADE, v, sizeof(v));
	assert_int_equal(hb_downgrade_encode(e, HB_DR_SECCOMP, HB_DF_REQUEST), HB_DOWNGRADE_LEN);
	assert_int_equal(n, HB_DOWNGRADE_LEN);
	assert_memory_equal(e, v, n);
	n = unhex(VEC_HELLO_DG, v, sizeof(v));
	assert_int_equal(hb_hello_classify(v, n, &h), 1);
	assert_int_equal(h.flags, HB_HF_PACED | HB_HF_DOWNGRADE);

	n = unhex(VEC_DOWNGRADE_STREAM, v, sizeof(v));
	for (size_t cut = 0; cut <= n; cut++) {
		for (size_t cut2 = cut; cut2 <= n; cut2++) {
			dec_init(&d);
			assert_true(dec_feed(&d, v, cut) >= 0);
			assert_true(dec_feed(&d, v + cut, cut2 - cut) >= 0);
			assert_true(dec_feed(&d, v + cut2, n - cut2) >= 0);
			assert_int_equal(d.outlen, sizeof(app));
			assert_memory_equal(d.out, app, sizeof(app));
			assert_int_equal(d.st.raw, 1);
			assert_int_equal(d.info.downgrade, 1);
			assert_int_equal(d.info.dg_reason, HB_DR_SECCOMP);
			assert_int_equal(d.info.dg_flags, HB_DF_REQUEST);
			assert_int_equal(d.info.controls, 1);
			assert_int_equal(d.info.heartbeats, 0);
			assert_true(hb_rx_state_valid(&d.st));
			assert_true(hb_rx_at_boundary(&d.st));
			dec_free(&d);
		}
	}
	/* Raw state: the fast path declines, everything passes through. */
	{
		struct hb_rx st;
		uint8_t hdr[HB_DATA_HDR_LEN];
		uint8_t b[] = { 0x02, 0xe5, 0x00, 0x00 };

		memset(&st, 0, sizeof(st));
		st.raw = 1;
		hb_data_hdr(hdr, 3);
		assert_int_equal(hb_rx_data_fast(&st, hdr, 3), 0);
		assert_int_equal(hb_rx_decode(&st, b, sizeof(b), NULL), (ssize_t)sizeof(b));
		st.hdr_len = 2;
		assert_false(hb_rx_state_valid(&st));
	}
	/* After a half-close the direction is finished: a downgrade frame
	 * there is a protocol error. */
	{
		uint8_t x[] = { 0x00, 0x02, 0x00, 0x04, 0x01, 0x00, 0x00, 'x' };

		dec_init(&d);
		assert_int_equal(dec_feed(&d, x, sizeof(x)), -EPROTO);
		dec_free(&d);
	}
}

/* The document must print exactly the vectors this file tests. Skipped
 * when docs/PROTOCOL.md cannot be found (a test binary moved elsewhere). */
static void test_vectors_in_doc(void **state)
{
	static const char *const vecs[] = { VEC_HELLO,	   VEC_HEARTBEAT,
					    VEC_HALFCLOSE, VEC_NOTICE,
					    VEC_DATA,	   VEC_STREAM,
					    VEC_HELLO_PACED, VEC_HELLO_BAD_INTERVAL,
					    VEC_HELLO_ZERO_INTERVAL, VEC_HALFCLOSE_DATA,
					    VEC_DOWNGRADE, VEC_DOWNGRADE_STREAM, VEC_HELLO_DG };
	char path[1024];
	const char *src = __FILE__, *tail = strstr(src, "tests/unit/test_codec.c");
	FILE *f;
	char *doc;
	long len;

	(void)state;
	snprintf(path, sizeof(path), "%.*sdocs/PROTOCOL.md", tail ? (int)(tail - src) : 0, src);
	f = fopen(path, "rb");
	if (!f)
		f = fopen("docs/PROTOCOL.md", "rb");
	if (!f) {
		print_message("docs/PROTOCOL.md not found: skipped\n");
		skip();
	}
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	doc = calloc(1, (size_t)len + 1);
	assert_non_null(doc);
	assert_int_equal(fread(doc, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		/* A vector sits alone on its line inside a code block. */
		char line[256];

		snprintf(line, sizeof(line), "\n%s\n", vecs[i]);
		if (!strstr(doc, line))
			fail_msg("docs/PROTOCOL.md lacks the line \"%s\"", vecs[i]);
	}
	assert_non_null(strstr(doc, "Protocol version 1"));
	free(doc);
}

/* ------------------------------------------------------------ hello */

static void test_hello_prefixes(void **state)
{
	uint8_t v[HB_HELLO_LEN + 8];
	struct hb_hello h;

	(void)state;
	unhex(VEC_HELLO, v, sizeof(v));
	memset(v + HB_HELLO_LEN, 0x01, 8); /* a data frame may follow */
	for (size_t n = 0; n <= HB_HELLO_LEN + 8; n++) {
		uint8_t *p = malloc(n ? n : 1);
		int want = n < HB_HELLO_LEN ? 0 : 1;

		memcpy(p, v, n);
		memset(&h, 0, sizeof(h));
		if (hb_hello_classify(p, n, &h) != want)
			fail_msg("prefix of %zu bytes: got %d, want %d", n,
				 hb_hello_classify(p, n, &h), want);
		assert_int_equal(hb_hello_classify(p, n, NULL), want);
		if (want == 1) {
			assert_int_equal(h.version, 1);
			assert_int_equal(h.flags, 0);
			assert_int_equal(h.interval_ms, 5000);
			assert_int_equal(h.timeout_ms, 15000);
		}
		free(p);
	}
}

static void test_hello_flags_ignored(void **state)
{
	uint8_t v[HB_HELLO_LEN];
	struct hb_hello h, in = { HB_PROTO_VERSION, 0, 1, HB_HELLO_TIMEOUT_MAX };

	(void)state;
	/* Flags are reserved: sent as 0, ignored (but reported) on receipt. */
	hb_hello_encode(v, &in);
	for (unsigned fl = 0; fl < 256; fl++) {
		v[5] = (uint8_t)fl;
		assert_int_equal(hb_hello_classify(v, sizeof(v), &h), 1);
		assert_int_equal(h.flags, fl);
		assert_int_equal(h.interval_ms, 1);
		assert_int_equal(h.timeout_ms, HB_HELLO_TIMEOUT_MAX);
	}
}

/* What libhbshim sends, and hellos whose values are out of range. */
static void test_hello_paced_and_ranges(void **state)
{
	static const struct {
		uint32_t interval, timeout;
		int want;
	} cases[] = {
		{ 1, 1, 1 },
		{ HB_HELLO_INTERVAL_MAX, HB_HELLO_TIMEOUT_MAX, 1 },
		{ 0, 15000, -3 },
		{ HB_HELLO_INTERVAL_MAX + 1, HB_HELLO_TIMEOUT_MAX, -3 },
		{ 0xffffffffu, 15000, -3 },
		{ 5000, 0, -3 },
		{ 5000, HB_HELLO_TIMEOUT_MAX + 1, -3 },
		{ 5000, 0xffffffffu, -3 },
		{ 3600000, 3 * 3600000, 1 }, /* HBSHIM_INTERVAL=1h alone */
	};
	uint8_t v[HB_HELLO_LEN], w[HB_HELLO_LEN];
	struct hb_hello h, in = { HB_PROTO_VERSION, HB_HF_PACED, 5000, 15000 };

	(void)state;
	hb_hello_encode(v, &in);
	assert_int_equal(unhex(VEC_HELLO_PACED, w, sizeof(w)), HB_HELLO_LEN);
	assert_memory_equal(v, w, HB_HELLO_LEN);
	assert_int_equal(hb_hello_classify(w, HB_HELLO_LEN, &h), 1);
	assert_int_equal(h.flags, HB_HF_PACED);

	assert_int_equal(unhex(VEC_HELLO_BAD_INTERVAL, w, sizeof(w)), HB_HELLO_LEN);
	assert_int_equal(hb_hello_classify(w, HB_HELLO_LEN, NULL), -3);
	assert_int_equal(unhex(VEC_HELLO_ZERO_INTERVAL, w, sizeof(w)), HB_HELLO_LEN);
	assert_int_equal(hb_hello_classify(w, HB_HELLO_LEN, NULL), -3);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hb_hello c = { HB_PROTO_VERSION, 0, cases[i].interval, cases[i].timeout };

		hb_hello_encode(v, &c);
		/* Undecided below 14 bytes, decided with the 14th. */
		for (size_t n = 0; n < HB_HELLO_LEN; n++)
			assert_int_equal(hb_hello_classify(v, n, NULL), 0);
		memset(&h, 0xa5, sizeof(h));
		if (hb_hello_classify(v, HB_HELLO_LEN, &h) != cases[i].want)
			fail_msg("interval %u timeout %u: got %d, want %d", cases[i].interval,
				 cases[i].timeout, hb_hello_classify(v, HB_HELLO_LEN, NULL),
				 cases[i].want);
		assert_int_equal(hb_hello_classify(v, HB_HELLO_LEN, NULL), cases[i].want);
		if (cases[i].want == 1) {
			assert_int_equal(h.interval_ms, cases[i].interval);
			assert_int_equal(h.timeout_ms, cases[i].timeout);
		} else {
			assert_int_equal(h.interval_ms, 0xa5a5a5a5u); /* untouched */
		}
	}
}

/* The pacing rule of docs/PROTOCOL.md, case by case. */
static void test_pace_interval(void **state)
{
	static const struct {
		uint32_t own, peer_timeout, want;
	} cases[] = {
		{ 5000, 0, 5000 },             /* no hello yet: our own */
		{ 5000, 15000, 5000 },         /* same settings: unchanged */
		{ 5000, 600, 200 },            /* a stricter peer: its timeout / 3 */
		{ 200, 15000, 200 },           /* a looser peer: our own */
		{ 5000, 299, 100 },            /* 99 would be below the floor */
		{ 5000, 1, 100 },              /* a hostile 1 ms: the floor */
		{ 50, 1, 50 },                 /* our own below the floor stays */
		{ 5000, 300, 100 },
		{ 3600000, HB_HELLO_TIMEOUT_MAX, 3600000 },
		{ 3600000, 3000000, 1000000 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (hb_pace_interval(cases[i].own, cases[i].peer_timeout) != cases[i].want)
			fail_msg("own %u, peer timeout %u: got %u, want %u", cases[i].own,
				 cases[i].peer_timeout,
				 hb_pace_interval(cases[i].own, cases[i].peer_timeout),
				 cases[i].want);
	/* Whatever the peer asks, at most 1000 / HB_PACE_FLOOR_MS heartbeats a
	 * second on its account, and never slower than our own interval. */
	for (uint64_t t = 0; t <= 0xffffffffu; t = t * 3 + 1) {
		uint32_t p = hb_pace_interval(5000, (uint32_t)t);

		assert_true(p <= 5000);
		assert_true(p >= HB_PACE_FLOOR_MS);
		if (t && t / HB_PACE_DIV >= HB_PACE_FLOOR_MS)
			assert_true(p <= t / HB_PACE_DIV);
	}
}

static void test_hello_wrong_magic(void **state)
{
	uint8_t v[HB_HELLO_LEN];

	(void)state;
	for (size_t pos = 0; pos < 4; pos++) {
		for (unsigned bad = 0; bad < 256; bad++) {
			unhex(VEC_HELLO, v, sizeof(v));
			if (bad == v[pos])
				continue;
			v[pos] = (uint8_t)bad;
			for (size_t n = 0; n <= HB_HELLO_LEN; n++) {
				int want = n <= pos ? 0 : -1;
				int got = hb_hello_classify(v, n, NULL);

				if (got != want)
					fail_msg("byte %zu = %#x, %zu bytes: got %d, want %d", pos,
						 bad, n, got, want);
			}
		}
	}
}

static void test_hello_bad_version(void **state)
{
	uint8_t v[HB_HELLO_LEN];

	(void)state;
	for (unsigned ver = 0; ver < 256; ver++) {
		if (ver == HB_PROTO_VERSION)
			continue;
		unhex(VEC_HELLO, v, sizeof(v));
		v[4] = (uint8_t)ver;
		for (size_t n = 0; n <= HB_HELLO_LEN; n++) {
			int want = n < 5 ? 0 : -2;

			assert_int_equal(hb_hello_classify(v, n, NULL), want);
		}
	}
}

static void test_hello_raw_streams(void **state)
{
	static const struct {
		const char *what;
		const char *hex;
		int len_decides; /* bytes after which the answer is -1 */
	} raw[] = {
		{ "E5 then non-magic", "e5 00 00 00 00", 2 },
		{ "E5 H then non-magic", "e5 48 00 53 01", 3 },
		{ "E5 H B then non-magic", "e5 48 42 00 01", 4 },
		{ "E5 E5", "e5 e5 48 42 53", 2 },
		{ "TLS ClientHello", "16 03 01 02 00 01", 1 },
		{ "SSLv2", "80 2e 01 00 02", 1 },
		{ "HTTP", "47 45 54 20 2f", 1 },
		{ "SSH banner", "53 53 48 2d 32", 1 },
		{ "Postgres startup", "00 00 00 08 04 d2 16 2f", 1 },
		{ "Kafka request", "00 00 00 2a 00 12", 1 },
		{ "heartbeat first", "00 01", 1 },
		{ "data frame first", "01 00 00 00 05 68", 1 },
	};
	uint8_t v[32];

	(void)state;
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		size_t n = unhex(raw[i].hex, v, sizeof(v));

		for (size_t k = 0; k <= n; k++) {
			int want = k < (size_t)raw[i].len_decides ? 0 : -1;
			int got = hb_hello_classify(v, k, NULL);

			if (got != want)
				fail_msg("%s, %zu bytes: got %d, want %d", raw[i].what, k, got,
					 want);
		}
	}
}

/* ------------------------------------------------------------ decoder */

/* A small stream with every frame kind, cut at every single point and
 * every pair of points, and byte by byte. */
static void test_decode_every_split(void **state)
{
	struct gen g;
	size_t cuts[2];

	(void)state;
	seed(1);
	memset(&g, 0, sizeof(g));
	gen_data(&g, 1);
	gen_heartbeat(&g);
	gen_data(&g, 3);
	gen_notice(&g, HB_NR_IDLE, 0x01020304);
	gen_heartbeat(&g);
	gen_heartbeat(&g);
	gen_data(&g, 7);
	gen_notice(&g, HB_NR_WRITE, 0);
	gen_data(&g, 2);
	gen_heartbeat(&g);
	gen_halfclose(&g);
	gen_notice(&g, HB_NR_PROTOCOL, 0xffffffffu);
	assert_true(g.len > 60);

	for (size_t i = 0; i <= g.len; i++) {
		cuts[0] = i;
		decode_split(&g, cuts, 1);
		for (size_t j = i; j <= g.len; j++) {
			cuts[1] = j;
			decode_split(&g, cuts, 2);
		}
	}
	{
		size_t *all = malloc(g.len * sizeof(size_t));

		for (size_t i = 0; i < g.len; i++)
			all[i] = i + 1;
		decode_split(&g, all, g.len); /* one byte per call */
		free(all);
	}
	gen_free(&g);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* A long random stream (data frames of 1..70000 bytes, heartbeats,
 * half-closes, notices) decoded over thousands of random split sets; cuts
 * cluster around frame headers, where the decoder keeps state. */
static void test_decode_random_splits(void **state)
{
	enum { FRAMES = 300, SETS = 2000, MAXCUT = 300 };
	struct gen g;
	size_t *cuts = malloc(MAXCUT * sizeof(size_t));

	(void)state;
	seed(2);
	memset(&g, 0, sizeof(g));
	/* Sizes from 1 to 70000, but few large frames: cuts inside a payload
	 * are the easy case, and the stream is decoded 2000 times. */
	gen_data(&g, 70000);
	for (int i = 0; i < FRAMES; i++)
		gen_random_frame(&g, i % 40 == 39 ? 70000 : 2000);
	gen_data(&g, 1);
	/* Control frames may still follow a half-close (a heartbeat sent by
	 * an older sender between its half-close frame and its FIN). */
	gen_halfclose(&g);
	gen_heartbeat(&g);
	gen_notice(&g, HB_NR_HEARTBEAT, 7);
	CHECK(g.len > 150000, "stream of %zu bytes only", g.len);
	decode_split(&g, NULL, 0); /* all at once */
	for (int set = 0; set < SETS; set++) {
		size_t ncut;

		switch (rnd() % 4) {
		case 0:
			ncut = 1 + rnd() % 4;
			break;
		case 1:
			ncut = 1 + rnd() % 40;
			break;
		default:
			ncut = 1 + rnd() % MAXCUT;
			break;
		}
		for (size_t i = 0; i < ncut; i++) {
			if (rnd() % 3) {
				/* Near a frame start: -1 .. +7. */
				size_t at = g.hdr_off[rnd() % g.nhdr] + rnd() % 9;

				cuts[i] = at ? at - 1 : 0;
				if (cuts[i] > g.len)
					cuts[i] = g.len;
			} else {
				cuts[i] = rnd() % (g.len + 1);
			}
		}
		qsort(cuts, ncut, sizeof(size_t), cmp_size);
		decode_split(&g, cuts, ncut);
	}
	free(cuts);
	gen_free(&g);
}

/* valid prefix + bad bytes: every way of cutting it fails with want, in
 * the chunk that holds the byte at bad_at, and not before. */
static void expect_error(const char *what, const uint8_t *p, size_t n, size_t bad_at, int want)
{
	for (size_t cut = 0; cut <= n; cut++) {
		struct dec d;
		ssize_t r1, r2;

		dec_init(&d);
		r1 = dec_feed(&d, p, cut);
		if (cut <= bad_at) {
			if (r1 < 0)
				fail_msg("%s: cut %zu: early error %zd", what, cut, r1);
			r2 = dec_feed(&d, p + cut, n - cut);
			if (r2 != want)
				fail_msg("%s: cut %zu: got %zd, want %d", what, cut, r2, want);
		} else if (r1 != want) {
			fail_msg("%s: cut %zu: got %zd, want %d", what, cut, r1, want);
		}
		dec_free(&d);
	}
	/* Byte by byte: the error comes exactly with the byte at bad_at. */
	{
		struct dec d;

		dec_init(&d);
		for (size_t i = 0; i < n; i++) {
			ssize_t r = dec_feed(&d, p + i, 1);

			if (i < bad_at && r < 0)
				fail_msg("%s: byte %zu: early error %zd", what, i, r);
			if (i == bad_at) {
				if (r != want)
					fail_msg("%s: byte %zu: got %zd, want %d", what, i, r, want);
				break;
			}
		}
		dec_free(&d);
	}
}

static void test_decode_errors(void **state)
{
	/* A valid prefix every error case starts with. */
	static const uint8_t pre[] = { 0x01, 0, 0, 0, 2, 'o', 'k', 0x00, 0x01 };
	uint8_t s[64];
	size_t np = sizeof(pre);

	(void)state;
	memcpy(s, pre, np);
	/* Unknown frame types: everything but 0x00 and 0x01. */
	for (unsigned t = 2; t < 256; t++) {
		s[np] = (uint8_t)t;
		s[np + 1] = 0;
		expect_error("type", s, np + 2, np, -EPROTO);
	}
	/* Unknown control codes. */
	for (unsigned cc = 0; cc < 256; cc++) {
		if (cc == HB_CT_HEARTBEAT || cc == HB_CT_HALFCLOSE || cc == HB_CT_NOTICE ||
		    cc == HB_CT_DOWNGRADE)
			continue;
		s[np] = HB_FT_CONTROL;
		s[np + 1] = (uint8_t)cc;
		s[np + 2] = 0;
		expect_error("control code", s, np + 3, np + 1, -EPROTO);
	}
	/* Lengths 0, HB_MAX_FRAME + 1 and beyond. */
	{
		static const uint32_t bad[] = { 0, HB_MAX_FRAME + 1, HB_MAX_FRAME + 2,
						0x80000000u, 0xffffffffu };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			hb_data_hdr(s + np, bad[i]);
			s[np + 5] = 'x';
			expect_error("length", s, np + 6, np + 4, -EMSGSIZE);
		}
	}
	/* After a half-close frame: control frames are fine, a data frame is
	 * an error at its type byte (whatever its length). */
	{
		uint8_t v[16];
		size_t n = unhex(VEC_HALFCLOSE_DATA, v, sizeof(v));

		memcpy(s + np, v, n);
		expect_error("data after half-close", s, np + n, np + 2, -EPROTO);
		memcpy(s + np, v, 2);
		s[np + 2] = HB_FT_CONTROL;
		s[np + 3] = HB_CT_HEARTBEAT;
		hb_notice_encode(s + np + 4, HB_NR_HEARTBEAT, 1);
		memcpy(s + np + 4 + HB_NOTICE_LEN, v + 2, n - 2);
		expect_error("data after half-close and controls", s, np + 4 + HB_NOTICE_LEN + n - 2,
			     np + 4 + HB_NOTICE_LEN, -EPROTO);
		hb_data_hdr(s + np + 2, 0); /* length 0 too: the half-close decides */
		expect_error("empty data after half-close", s, np + 7, np + 2, -EPROTO);
	}
	/* A hello inside the framed stream is not a frame. */
	unhex(VEC_HELLO, s + np, sizeof(s) - np);
	expect_error("hello as a frame", s, np + HB_HELLO_LEN, np, -EPROTO);
}

/* The largest frame is accepted, delivered whole, and followed by more. */
static void test_decode_max_frame(void **state)
{
	size_t n = HB_DATA_HDR_LEN + HB_MAX_FRAME + 2 + HB_DATA_HDR_LEN + 1;
	uint8_t *s = malloc(n);
	struct hb_rx st;
	struct hb_rx_info info = { 0 };
	size_t at = 0, got = 0;

	(void)state;
	seed(3);
	assert_non_null(s);
	hb_data_hdr(s, HB_MAX_FRAME);
	for (size_t i = 0; i < HB_MAX_FRAME; i++)
		s[HB_DATA_HDR_LEN + i] = (uint8_t)(i * 7 + 3);
	at = HB_DATA_HDR_LEN + HB_MAX_FRAME;
	s[at++] = HB_FT_CONTROL;
	s[at++] = HB_CT_HEARTBEAT;
	hb_data_hdr(s + at, 1);
	s[at + HB_DATA_HDR_LEN] = 0xee;

	/* The header alone: the frame opens with exactly HB_MAX_FRAME owed. */
	memset(&st, 0, sizeof(st));
	assert_int_equal(hb_rx_decode(&st, s, HB_DATA_HDR_LEN, &info), 0);
	assert_int_equal(st.remaining, HB_MAX_FRAME);
	/* The rest in random chunks, in place. */
	at = HB_DATA_HDR_LEN;
	while (at < n) {
		size_t k = 1 + rnd() % 3000000;
		ssize_t r;

		if (k > n - at)
			k = n - at;
		r = hb_rx_decode(&st, s + at, k, &info);
		assert_true(r >= 0);
		for (ssize_t i = 0; i < r; i++, got++) {
			uint8_t want = got < HB_MAX_FRAME ? (uint8_t)(got * 7 + 3) : 0xee;

			if (s[at + (size_t)i] != want)
				fail_msg("byte %zu differs", got);
		}
		at += k;
	}
	assert_int_equal(got, (size_t)HB_MAX_FRAME + 1);
	assert_int_equal(info.heartbeats, 1);
	assert_true(hb_rx_at_boundary(&st));
	free(s);
}

/* ------------------------------------------------------------ transmit */

/* Byte p of the application's output stream. */
static uint8_t app_byte(uint64_t p)
{
	uint64_t x = (p + 1) * 0x9e3779b97f4a7c15ull;

	return (uint8_t)(x >> 56 ^ x >> 29);
}

/* Sender (hb_tx) -> simulated kernel -> receiver (hello check + decoder). */
struct link {
	struct hb_tx tx;
	uint64_t written;     /* app bytes hb_tx_commit reported */
	uint32_t hb_sent;     /* heartbeats put on the wire (first byte sent) */
	uint8_t hello[HB_HELLO_LEN];
	size_t hello_got;     /* hello bytes the receiver has */
	struct dec rx;
	uint64_t wire;        /* bytes the kernel took */
	uint64_t delivered;   /* app bytes the receiver delivered (and verified) */
};

static void link_init(struct link *l, uint32_t interval, uint32_t timeout)
{
	struct hb_hello h = { HB_PROTO_VERSION, 0, interval, timeout };

	memset(l, 0, sizeof(*l));
	dec_init(&l->rx);
	/* As the library queues it: the hello is the first pending bytes. */
	assert_int_equal(hb_hello_encode(l->tx.pend, &h), HB_HELLO_LEN);
	l->tx.pend_len = HB_HELLO_LEN;
}

/* Deliver p[0..n) the kernel took to the receiver and check it. */
static void link_deliver(struct link *l, const uint8_t *p, size_t n)
{
	l->wire += n;
	while (n && l->hello_got < HB_HELLO_LEN) {
		l->hello[l->hello_got++] = *p++;
		n--;
		CHECK(hb_hello_classify(l->hello, l->hello_got, NULL) ==
			      (l->hello_got < HB_HELLO_LEN ? 0 : 1),
		      "hello prefix of %zu bytes misclassified", l->hello_got);
	}
	if (n) {
		ssize_t r = dec_feed(&l->rx, p, n);

		CHECK(r >= 0, "receiver: decode error %zd after %llu wire bytes", r,
		      (unsigned long long)l->wire);
	}
	for (size_t i = 0; i < l->rx.outlen; i++)
		CHECK(l->rx.out[i] == app_byte(l->delivered + i), "delivered byte %llu differs",
		      (unsigned long long)(l->delivered + i));
	/* Drop what is verified so long runs stay small. */
	l->delivered += l->rx.outlen;
	l->rx.outlen = 0;
}

/* Both ends agree on where the frames are. */
static void link_check(struct link *l)
{
	const struct hb_tx *tx = &l->tx;
	const struct hb_rx *rx = &l->rx.st;

	CHECK(tx->pend_len <= HB_TX_PEND_MAX, "pend_len %u", tx->pend_len);
	CHECK(tx->remaining <= HB_MAX_FRAME, "tx remaining %u", tx->remaining);
	CHECK(l->rx.in + l->hello_got == l->wire, "bytes lost between kernel and receiver");
	/* The key invariant: what write() reported is what the peer reads. */
	CHECK(l->delivered == l->written, "app told %llu bytes written, peer read %llu",
	      (unsigned long long)l->written, (unsigned long long)l->delivered);
	if (l->hello_got < HB_HELLO_LEN) {
		CHECK(tx->pend_len == HB_HELLO_LEN - l->hello_got && tx->remaining == 0,
		      "hello half sent but pend_len %u", tx->pend_len);
		return;
	}
	CHECK(hb_tx_at_boundary(tx) == hb_rx_at_boundary(rx),
	      "tx boundary %d, rx boundary %d (tx pend %u rem %u, rx hdr %u rem %u)",
	      hb_tx_at_boundary(tx), hb_rx_at_boundary(rx), tx->pend_len, tx->remaining,
	      rx->hdr_len, rx->remaining);
	if (tx->pend_len == 0)
		CHECK(tx->remaining == rx->remaining, "tx owes %u, rx expects %u", tx->remaining,
		      rx->remaining);
	else
		CHECK(rx->hdr_len > 0, "tx has a partial header, rx has none");
}

/* How much of a plan a kernel takes: 0, all, a segment boundary, a few
 * bytes into a segment (inside a header), or anything. */
static size_t kernel_take(const struct hb_tx_seg *seg, int ns, size_t planned)
{
	size_t b[5], nb = 0, acc = 0, t;

	b[nb++] = 0;
	for (int i = 0; i < ns; i++) {
		acc += seg[i].len;
		b[nb++] = acc;
	}
	switch (rnd() % 8) {
	case 0:
		return 0;
	case 1:
	case 2:
		return planned;
	case 3:
	case 4:
		return b[rnd() % nb];
	case 5:
		t = b[rnd() % nb] + 1 + rnd() % 4;
		return t < planned ? t : planned;
	case 6:
		return planned ? planned - rnd() % (planned < 5 ? planned : 5) : 0;
	default:
		return planned ? rnd() % (planned + 1) : 0;
	}
}

/* One application write of n bytes, the kernel taking a short count.
 * trunc: act like frame.c when the iovec array is full (an application
 * segment shortened, the plan cut after it). Returns the app count. */
static size_t link_write(struct link *l, size_t n, int trunc, size_t force_sent)
{
	struct hb_tx_seg seg[4];
	uint8_t hdr[HB_DATA_HDR_LEN];
	static uint8_t *buf, *wire;
	static size_t buf_cap, wire_cap;
	size_t planned = 0, sent, app_in_sent = 0, left, w = 0, ret, app_seen = 0;
	int ns;

	grow(&buf, &buf_cap, n);
	for (size_t i = 0; i < n; i++)
		buf[i] = app_byte(l->written + i);
	ns = hb_tx_plan(&l->tx, n, hdr, seg);
	CHECK(ns >= 0 && ns <= 4, "plan returned %d segments", ns);
	for (int i = 0; i < ns; i++) {
		CHECK(seg[i].len > 0, "empty segment %d", i);
		if (!seg[i].base) {
			CHECK(seg[i].off == app_seen, "segment %d at app offset %zu, want %zu", i,
			      seg[i].off, app_seen);
			app_seen += seg[i].len;
		} else {
			CHECK(seg[i].base == l->tx.pend || seg[i].base == hdr, "foreign base");
			CHECK(seg[i].base != hdr || seg[i].len == HB_DATA_HDR_LEN, "header length");
		}
	}
	CHECK(app_seen <= n, "plan covers %zu of %zu app bytes", app_seen, n);
	CHECK(app_seen == n || app_seen >= HB_MAX_FRAME, "plan covers only %zu of %zu", app_seen,
	      n);
	if (trunc) {
		for (int i = 0; i < ns; i++) {
			if (!seg[i].base && rnd() % 2) {
				seg[i].len = rnd() % (seg[i].len + 1);
				ns = i + 1;
				break;
			}
		}
	}
	for (int i = 0; i < ns; i++)
		planned += seg[i].len;
	sent = force_sent != (size_t)-1 ? force_sent : kernel_take(seg, ns, planned);
	CHECK(sent <= planned, "bad test: sent %zu > planned %zu", sent, planned);
	/* The bytes the kernel took, in order. */
	grow(&wire, &wire_cap, sent);
	left = sent;
	for (int i = 0; i < ns && left; i++) {
		size_t take = left < seg[i].len ? left : seg[i].len;

		memcpy(wire + w, seg[i].base ? seg[i].base : buf + seg[i].off, take);
		if (!seg[i].base)
			app_in_sent += take;
		w += take;
		left -= take;
	}
	ret = hb_tx_commit(&l->tx, seg, ns, sent);
	CHECK(ret == app_in_sent, "commit reports %zu app bytes, %zu went out", ret,
	      app_in_sent);
	CHECK(ret <= n, "commit reports %zu of %zu", ret, n);
	l->written += ret;
	link_deliver(l, wire, w);
	CHECK(l->rx.in + l->hello_got == l->wire, "lost bytes");
	link_check(l);
	return ret;
}

/* The background thread's heartbeat: only at a frame boundary, the
 * kernel taking 0, 1 or 2 bytes (1: the second byte stays pending). */
static void link_heartbeat(struct link *l, size_t force)
{
	static const uint8_t hb[2] = { HB_FT_CONTROL, HB_CT_HEARTBEAT };
	size_t r;

	if (!hb_tx_at_boundary(&l->tx))
		return;
	/* Where the sender may insert one, the receiver must be between
	 * frames too, or the heartbeat would land inside a frame. */
	CHECK(l->hello_got == HB_HELLO_LEN && hb_rx_at_boundary(&l->rx.st),
	      "heartbeat allowed inside a frame");
	r = force != (size_t)-1 ? force : rnd() % 3;
	if (r == 1) {
		l->tx.pend[0] = hb[1];
		l->tx.pend_len = 1;
	}
	if (r > 0)
		l->hb_sent++;
	link_deliver(l, hb, r);
	link_check(l);
}

/* The background thread's flush of pending control bytes. */
static void link_flush(struct link *l, int all)
{
	size_t r;
	uint8_t p[HB_TX_PEND_MAX];

	if (!l->tx.pend_len)
		return;
	r = all ? l->tx.pend_len : rnd() % (l->tx.pend_len + 1u);
	memcpy(p, l->tx.pend, r);
	memmove(l->tx.pend, l->tx.pend + r, l->tx.pend_len - r);
	l->tx.pend_len = (uint8_t)(l->tx.pend_len - r);
	link_deliver(l, p, r);
	link_check(l);
}

/* Send everything pending and the rest of an open frame, then compare. */
static void link_finish(struct link *l)
{
	while (l->tx.remaining || l->tx.pend_len) {
		link_flush(l, 1);
		if (l->tx.remaining)
			link_write(l, l->tx.remaining, 0, (size_t)-1);
	}
	link_check(l);
	CHECK(hb_rx_at_boundary(&l->rx.st), "receiver inside a frame at the end");
	CHECK(l->rx.info.heartbeats == l->hb_sent, "receiver saw %u heartbeats, %u sent",
	      l->rx.info.heartbeats, l->hb_sent);
	CHECK(l->rx.info.controls == l->hb_sent, "stray control frames");
}

static void link_free(struct link *l)
{
	dec_free(&l->rx);
}

/* Hand-picked short counts: inside the pending hello, inside a new header,
 * exactly at segment boundaries. */
/* hb_rx_data_fast agrees with hb_rx_decode wherever it answers 1, and
 * answers 0 (state untouched) wherever decoding would not be "one header,
 * then only its payload". */
static void test_data_fast_matches_decode(void **state)
{
	static const struct {
		uint8_t hdr[5];
		size_t payload;
		int want;
	} cases[] = {
		{ { 0x01, 0, 0, 0, 10 }, 10, 1 },     /* exactly the frame */
		{ { 0x01, 0, 0, 0, 10 }, 3, 1 },      /* a prefix of it */
		{ { 0x01, 0, 0, 0, 10 }, 0, 1 },      /* the header alone */
		{ { 0x01, 0, 0, 0, 10 }, 11, 0 },     /* a byte of the next frame */
		{ { 0x01, 0, 0, 0, 0 }, 0, 0 },       /* length 0: an error */
		{ { 0x01, 0x01, 0, 0, 1 }, 1, 0 },    /* above HB_MAX_FRAME */
		{ { 0x01, 0x01, 0, 0, 0 }, 5, 1 },    /* exactly HB_MAX_FRAME */
		{ { 0x00, 0x01, 0x01, 0, 0 }, 1, 0 }, /* a heartbeat first */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hb_rx a, b;
		uint8_t buf[5 + 16];

		memset(&a, 0, sizeof(a));
		memset(&b, 0, sizeof(b));
		assert_int_equal(hb_rx_data_fast(&a, cases[i].hdr, cases[i].payload), cases[i].want);
		if (!cases[i].want) {
			assert_memory_equal(&a, &b, sizeof(a));
			continue;
		}
		memcpy(buf, cases[i].hdr, 5);
		memset(buf + 5, 0x5a, cases[i].payload);
		assert_int_equal(hb_rx_decode(&b, buf, 5 + cases[i].payload, NULL),
				 (ssize_t)cases[i].payload);
		assert_int_equal(a.remaining, b.remaining);
		assert_int_equal(a.hdr_len, b.hdr_len);
	}
	/* Not at a boundary: never. */
	{
		struct hb_rx a;
		static const uint8_t h[5] = { 0x01, 0, 0, 0, 4 };

		memset(&a, 0, sizeof(a));
		a.remaining = 2;
		assert_int_equal(hb_rx_data_fast(&a, h, 1), 0);
		assert_int_equal(a.remaining, 2);
		a.remaining = 0;
		a.hdr_len = 1;
		assert_int_equal(hb_rx_data_fast(&a, h, 1), 0);
		/* After a half-close: never (the decoder reports the error). */
		memset(&a, 0, sizeof(a));
		a.halfclosed = 1;
		assert_int_equal(hb_rx_data_fast(&a, h, 1), 0);
		assert_int_equal(a.remaining, 0);
	}
}

static void test_tx_cases(void **state)
{
	struct link l;
	uint64_t delivered;

	(void)state;
	seed(4);
	link_init(&l, 5000, 15000);

	/* The kernel takes 3 of the 14 hello bytes: no app byte went out. */
	assert_int_equal(link_write(&l, 10, 0, 3), 0);
	assert_int_equal(l.tx.pend_len, HB_HELLO_LEN - 3);
	/* Exactly the rest of the hello (a segment boundary): still 0, and
	 * no frame was opened. */
	assert_int_equal(link_write(&l, 10, 0, HB_HELLO_LEN - 3), 0);
	assert_true(hb_tx_at_boundary(&l.tx));
	/* 0 < sent < header: the frame is open, its header half sent. */
	assert_int_equal(link_write(&l, 10, 0, 2), 0);
	assert_int_equal(l.tx.pend_len, 3);
	assert_int_equal(l.tx.remaining, 10);
	assert_false(hb_tx_at_boundary(&l.tx));
	/* Rest of the header plus 4 payload bytes; the app writes only 4. */
	assert_int_equal(link_write(&l, 4, 0, 3 + 4), 4);
	assert_int_equal(l.tx.remaining, 6);
	/* The app wants 20 more: 6 complete the frame, then a new 14-byte
	 * frame. The kernel stops exactly after the 6 (a boundary). */
	assert_int_equal(link_write(&l, 20, 0, 6), 6);
	assert_true(hb_tx_at_boundary(&l.tx));
	link_heartbeat(&l, 1); /* half a heartbeat */
	assert_false(hb_tx_at_boundary(&l.tx));
	link_heartbeat(&l, 2); /* refused: not at a boundary */
	assert_int_equal(l.hb_sent, 1);
	/* pending heartbeat byte + header + 14; kernel stops mid-header. */
	assert_int_equal(link_write(&l, 14, 0, 1 + 4), 0);
	assert_int_equal(l.tx.pend_len, 1);
	assert_int_equal(link_write(&l, 14, 0, 1 + 14), 14);
	assert_true(hb_tx_at_boundary(&l.tx));
	/* Kernel takes nothing: nothing changes. */
	assert_int_equal(link_write(&l, 100, 0, 0), 0);
	assert_true(hb_tx_at_boundary(&l.tx));
	/* Exactly the header: a frame open with all its payload owed, which
	 * the next write (shorter than promised) partly pays. */
	assert_int_equal(link_write(&l, 100, 0, HB_DATA_HDR_LEN), 0);
	assert_int_equal(l.tx.remaining, 100);
	assert_int_equal(link_write(&l, 30, 0, 30), 30);
	assert_int_equal(l.tx.remaining, 70);
	/* Owed 70, the app writes 100: owed part, new header, 30 more; the
	 * kernel stops one byte into the new payload. */
	assert_int_equal(link_write(&l, 100, 0, 70 + HB_DATA_HDR_LEN + 1), 71);
	assert_int_equal(l.tx.remaining, 29);
	link_finish(&l);
	delivered = l.written;
	assert_int_equal(delivered, 4 + 6 + 14 + 30 + 71 + 29);
	assert_int_equal(l.wire, HB_HELLO_LEN + 4 * HB_DATA_HDR_LEN + delivered + 2);
	link_free(&l);
}

/* 1..maxw, mostly small: large writes are few but present. */
static size_t write_size(size_t maxw)
{
	if (maxw > 3000 && rnd() % 4)
		maxw = 3000;
	return 1 + rnd() % maxw;
}

/* Many random writes through a kernel taking arbitrary short counts, with
 * heartbeats and flushes in between whenever the sender allows them. */
static void test_tx_random(void **state)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* The fenced chunks are re-poisoned per call: far slower there. */
	enum { RUNS = 6, STEPS = 300 };
#else
	enum { RUNS = 24, STEPS = 2000 };
#endif

	(void)state;
	seed(5);
	for (int run = 0; run < RUNS; run++) {
		struct link l;
		size_t maxw = run % 3 == 0 ? 8 : run % 3 == 1 ? 300 : 70000;

		link_init(&l, 1 + (uint32_t)(rnd() % HB_HELLO_INTERVAL_MAX),
			  1 + (uint32_t)(rnd() % HB_HELLO_TIMEOUT_MAX));
		for (int step = 0; step < STEPS; step++) {
			switch (rnd() % 10) {
			case 0:
				link_heartbeat(&l, (size_t)-1);
				break;
			case 1:
				link_flush(&l, 0);
				break;
			case 2:
				link_write(&l, 0, 0, (size_t)-1);
				break;
			case 3:
				link_write(&l, write_size(maxw), 1, (size_t)-1);
				break;
			default:
				link_write(&l, write_size(maxw), 0, (size_t)-1);
				break;
			}
		}
		link_finish(&l);
		link_free(&l);
	}
}

/* A write larger than HB_MAX_FRAME is cut at the frame limit, also when
 * it first completes an open frame. */
static void test_tx_max_frame(void **state)
{
	struct link l;
	size_t big = (size_t)HB_MAX_FRAME + 1000;

	(void)state;
	seed(6);
	link_init(&l, 5000, 15000);
	link_flush(&l, 1);
	assert_int_equal(link_write(&l, big, 0, (size_t)HB_DATA_HDR_LEN + HB_MAX_FRAME),
			 HB_MAX_FRAME);
	assert_true(hb_tx_at_boundary(&l.tx));
	/* Open a 50-byte frame, pay 10, then write big: 40 owed + a full
	 * frame; the kernel takes an arbitrary part of it. */
	assert_int_equal(link_write(&l, 50, 0, HB_DATA_HDR_LEN + 10), 10);
	for (int i = 0; i < 2; i++)
		link_write(&l, big, 0, (size_t)-1);
	{
		struct hb_tx_seg seg[4];
		uint8_t hdr[HB_DATA_HDR_LEN];
		struct hb_tx t = { 40, { 0 }, 0 };

		assert_int_equal(hb_tx_plan(&t, big, hdr, seg), 3);
		assert_int_equal(seg[0].len, 40);
		assert_int_equal(seg[2].off, 40);
		assert_int_equal(seg[2].len, HB_MAX_FRAME);
	}
	link_finish(&l);
	link_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_encode),
		cmocka_unit_test(test_vectors_decode),
		cmocka_unit_test(test_vectors_in_doc),
		cmocka_unit_test(test_hello_prefixes),
		cmocka_unit_test(test_hello_flags_ignored),
		cmocka_unit_test(test_hello_paced_and_ranges),
		cmocka_unit_test(test_pace_interval),
		cmocka_unit_test(test_hello_wrong_magic),
		cmocka_unit_test(test_hello_bad_version),
		cmocka_unit_test(test_hello_raw_streams),
		cmocka_unit_test(test_decode_every_split),
		cmocka_unit_test(test_decode_random_splits),
		cmocka_unit_test(test_decode_errors),
		cmocka_unit_test(test_decode_max_frame),
		cmocka_unit_test(test_downgrade),
		cmocka_unit_test(test_data_fast_matches_decode),
		cmocka_unit_test(test_tx_cases),
		cmocka_unit_test(test_tx_random),
		cmocka_unit_test(test_tx_max_frame),
	};

	const char *only = getenv("HB_TEST_FILTER");

	if (only && *only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
