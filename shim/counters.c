/*
 * counters.c - the storage of the shim's counters.
 *
 * Relaxed atomics bumped (hb_stat_add, hb.h) on the paths that observe an
 * event, log.c and events.c among them, and rendered by stats.c. They live
 * below all of those: counting an event never depends on the code that
 * writes it out.
 */
#include "hb_os.h"

_Atomic uint64_t hb_stats[HB_ST_COUNT];
_Atomic int hb_stats_adopted;
