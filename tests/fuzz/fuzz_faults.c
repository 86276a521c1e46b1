/*
 * fuzz_faults.c - libFuzzer target for the HBSHIM_FAULTS grammar
 * (shim/fault.c, pure): hb_fault_parse on any bytes.
 *
 * Input: byte 0 picks the capacity (1..HB_MAX_FAULTS), the rest is the
 * value, in a heap buffer of exactly its length plus the NUL (ASan sees any
 * read past it). Checked: the return is 0, -EINVAL or -E2BIG; nothing is
 * written past the capacity; on success every rule is well formed (one
 * known action, a NUL-terminated unique name, direction bits only, connect
 * faults without a direction, jitter within the latency, a probability of
 * at most 1); on failure *bad lies inside the value.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hb_fault f[HB_MAX_FAULTS + 1];
	const char *bad = NULL;
	size_t badlen = 0;
	int max, n = -1, r;
	char *s;

	if (size < 1)
		return 0;
	max = 1 + data[0] % HB_MAX_FAULTS;
	s = malloc(size);
	if (!s)
		abort();
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	memset(f, 0x5a, sizeof(f));
	r = hb_fault_parse(s, f, max, &n, &bad, &badlen);
	if (r != 0 && r != -EINVAL && r != -E2BIG)
		abort();
	if (f[max].action != 0x5a) /* nothing written past max */
		abort();
	if (r == 0) {
		if (n < 0 || n > max || bad)
			abort();
		for (int i = 0; i < n; i++) {
			const struct hb_fault *x = &f[i];

			if (x->action <= HB_FA_NONE || x->action >= HB_FA_COUNT)
				abort();
			if (!memchr(x->name, 0, HB_FAULT_NAME) || !x->name[0])
				abort();
			for (int j = 0; j < i; j++)
				if (!strcmp(f[j].name, x->name))
					abort();
			if (x->dir & ~(HB_FDIR_IN | HB_FDIR_OUT))
				abort();
			if (x->side == HB_FSIDE_CONNECT && !x->dir &&
			    x->action != HB_FA_REFUSE && x->action != HB_FA_TIMEOUT &&
			    x->action != HB_FA_DELAY && x->action != HB_FA_ERRNO)
				abort();
			if ((x->action == HB_FA_REFUSE || x->action == HB_FA_TIMEOUT ||
			     x->action == HB_FA_DELAY) && (x->dir || x->side != HB_FSIDE_CONNECT))
				abort();
			if (x->action != HB_FA_REFUSE && x->action != HB_FA_TIMEOUT &&
			    x->action != HB_FA_DELAY && x->side != HB_FSIDE_CONNECT && !x->dir)
				abort();
			if (x->jitter_ms > x->arg && x->action == HB_FA_LATENCY)
				abort();
			if (x->prob_ppm > 1000000)
				abort();
			if ((x->action == HB_FA_SLICER || x->action == HB_FA_BANDWIDTH) && !x->arg)
				abort();
			if (x->peer.family != 0 && x->peer.family != AF_INET &&
			    x->peer.family != AF_INET6)
				abort();
		}
	} else if (bad && (bad < s || bad + badlen > s + size - 1)) {
		abort();
	}
	free(s);
	return 0;
}
