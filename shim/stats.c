/*
 * stats.c - the HBSHIM_STATS Prometheus text file.
 *
 * The counters (counters.c) are relaxed atomics bumped on the paths that
 * observe the event; this file renders them. The file is rewritten by the
 * background thread every STATS_PERIOD and by the library destructor at
 * exit: the text goes to "FILE.tmp.RANDOM", created exclusively with mode
 * 0600 (outfile.c: never through a planted link, never blocking, no
 * SIGXFSZ), and is renamed over FILE, so a scraper never reads half a file.
 * "%p" in the path stands for the process id.
 */
#include <errno.h>

#include "hb.h"

static void counter(struct hb_buf *b, const char *name, const char *help, const char *type,
		    const char *labels[], const int keys[], int n)
{
	hb_buf_fmt(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (int i = 0; i < n; i++) {
		hb_buf_puts(b, name);
		if (labels[i]) {
			hb_buf_putc(b, '{');
			hb_buf_puts(b, labels[i]);
			hb_buf_putc(b, '}');
		}
		hb_buf_fmt(b, " %llu\n", (unsigned long long)hb_load_relaxed(&hb_stats[keys[i]]));
	}
}

void hb_stats_render(struct hb_buf *b)
{
	static const char *mode_l[] = { "mode=\"keepalive\"", "mode=\"frame\"" };
	static const int mode_k[] = { HB_ST_CONN_KEEPALIVE, HB_ST_CONN_FRAME };
	static const char *dead_l[] = { "reason=\"keepalive\"", "reason=\"idle\"",
					"reason=\"heartbeat\"", "reason=\"write\"" };
	static const int dead_k[] = { HB_ST_DEAD_KEEPALIVE, HB_ST_DEAD_IDLE, HB_ST_DEAD_HEARTBEAT,
				      HB_ST_DEAD_WRITE };
	static const char *dl_l[] = { "kind=\"connect\"", "kind=\"idle\"" };
	static const int dl_k[] = { HB_ST_DEADLINE_CONNECT, HB_ST_DEADLINE_IDLE };
	static const char *none[] = { NULL };
	static const char *drop_l[] = { "reason=\"rate\"", "reason=\"write\"" };
	static const int log_k[] = { HB_ST_LOG_DROP_RATE, HB_ST_LOG_DROP_WRITE };
	static const int ev_k[] = { HB_ST_EV_DROP_RATE, HB_ST_EV_DROP_WRITE };
	int k;

	counter(b, "hbshim_connections", "Tracked TCP connections by mode.", "gauge", mode_l,
		mode_k, 2);
	counter(b, "hbshim_dead_peers_total", "Connections declared dead, by reason.", "counter",
		dead_l, dead_k, 4);
	counter(b, "hbshim_deadlines_total", "Deadlines that fired, by kind.", "counter", dl_l,
		dl_k, 2);
	k = HB_ST_HB_SENT;
	counter(b, "hbshim_heartbeats_sent_total", "Heartbeat frames sent.", "counter", none, &k, 1);
	k = HB_ST_HB_RECV;
	counter(b, "hbshim_heartbeats_received_total", "Heartbeat frames received.", "counter",
		none, &k, 1);
	k = HB_ST_PROTO_ERR;
	counter(b, "hbshim_protocol_errors_total", "Framed connections failed on a protocol error.",
		"counter", none, &k, 1);
	k = HB_ST_CONNECTED;
	counter(b, "hbshim_connects_total", "Outgoing TCP connections tracked.", "counter", none,
		&k, 1);
	k = HB_ST_ACCEPTED;
	counter(b, "hbshim_accepts_total", "Accepted TCP connections tracked.", "counter", none,
		&k, 1);
	k = HB_ST_UNTRACKED;
	counter(b, "hbshim_untracked_total",
		"TCP sockets passed through untracked (fd table or pool exhausted).", "counter",
		none, &k, 1);
	counter(b, "hbshim_log_dropped_total",
		"Log lines not written, by reason (rate cap, or the file or pipe took no more).",
		"counter", drop_l, log_k, 2);
	counter(b, "hbshim_events_dropped_total",
		"Event lines not written, by reason (rate cap, or the file or pipe took no more).",
		"counter", drop_l, ev_k, 2);
	if (hb_cfg.nfaults) {
		/* Test harness (HBSHIM_FAULTS): faults injected, by action. */
		const char *fl[HB_FA_COUNT];
		int fk[HB_FA_COUNT], n = 0;
		char lab[HB_FA_COUNT][32];

		for (int a = HB_FA_NONE + 1; a < HB_FA_COUNT; a++) {
			struct hb_buf lb;

			hb_buf_init(&lb, lab[a], sizeof(lab[a]));
			hb_buf_fmt(&lb, "action=\"%s\"", hb_fault_action_name(a));
			fl[n] = hb_buf_str(&lb);
			fk[n++] = HB_ST_FAULTS + a;
		}
		counter(b, "hbshim_faults_injected_total",
			"Faults injected by HBSHIM_FAULTS rules, by action.", "counter", fl, fk, n);
	}
}

/* HBSHIM_STATS with every "%p" replaced by the process id, so that each
 * process of a tree (a wrapper, a forking server) can have its own file.
 * 0, or -ENAMETOOLONG when the expansion does not fit b. */
static int stats_path(struct hb_buf *b, int pid)
{
	for (const char *s = hb_cfg.stats_file; *s; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			hb_buf_puti(b, pid);
			s++;
		} else {
			hb_buf_putc(b, *s);
		}
	}
	return b->len >= b->cap - 1 ? -ENAMETOOLONG : 0;
}

static _Atomic int warned_long;

void hb_stats_flush(void)
{
	char text[4096], tmp[HB_PATH_MAX + 64], path[HB_PATH_MAX];
	struct hb_buf b, pb;
	int pid = hb_os_getpid(), slot;
	long fd, r;

	/* A process that never tracked a connection (a shell, timeout(1) in
	 * front of the real program) must not overwrite the file of one that
	 * did. */
	if (!hb_cfg.stats_file[0] ||
	    !(hb_load_relaxed(&hb_stats[HB_ST_CONNECTED]) | hb_load_relaxed(&hb_stats[HB_ST_ACCEPTED]) |
	      hb_load_relaxed(&hb_stats_adopted)))
		return;
	hb_buf_init(&pb, path, sizeof(path));
	if (stats_path(&pb, pid) < 0) {
		/* A truncated path would name some other file. */
		if (!hb_xchg_acq_rel(&warned_long, 1))
			hb_log(HB_LOG_WARN, "HBSHIM_STATS: with %%p expanded the path is %d "
					    "bytes or longer: stats not written",
			       HB_PATH_MAX - 1);
		return;
	}
	hb_buf_str(&pb);
	if (hb_out_refused(HB_OUT_STATS, path)) {
		hb_log_refused(HB_OUT_STATS, path);
		return;
	}
	hb_buf_init(&b, text, sizeof(text));
	hb_stats_render(&b);
	fd = hb_out_create_tmp(path, tmp, sizeof(tmp), &slot);
	if (fd < 0)
		return;
	r = hb_os_write_quiet((int)fd, b.p, b.len);
	if (r != (long)b.len) {
		(void)hb_os_unlink(tmp);
		hb_out_close_tmp(slot, fd);
		return;
	}
	hb_out_close_tmp(slot, fd);
	if (hb_os_rename(tmp, path) < 0)
		(void)hb_os_unlink(tmp);
}
