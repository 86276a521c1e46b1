/*
 * stats.c - counters and the HBSHIM_STATS Prometheus text file.
 *
 * Counters are relaxed atomics bumped on the paths that observe the event.
 * The file is rewritten by the background thread every STATS_PERIOD and by
 * the library destructor at exit: the text goes to "FILE.tmp.PID" and is
 * renamed over FILE, so a scraper never reads half a file. "%p" in the
 * path stands for the process id.
 */
#include <fcntl.h>

#include "hb.h"

_Atomic uint64_t hb_stats[HB_ST_COUNT];

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
}

/* HBSHIM_STATS with every "%p" replaced by the process id, so that each
 * process of a tree (a wrapper, a forking server) can have its own file. */
static void stats_path(struct hb_buf *b, int pid)
{
	for (const char *s = hb_cfg.stats_file; *s; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			hb_buf_puti(b, pid);
			s++;
		} else {
			hb_buf_putc(b, *s);
		}
	}
}

/* Connections adopted across exec (inherit.c): such a process tracked
 * connections too. */
_Atomic int hb_stats_adopted;

void hb_stats_flush(void)
{
	char text[4096], tmp[HB_PATH_MAX + 64], path[HB_PATH_MAX + 32];
	struct hb_buf b, t, pb;
	int pid = hb_os_getpid();
	long fd;

	/* A process that never tracked a connection (a shell, timeout(1) in
	 * front of the real program) must not overwrite the file of one that
	 * did. */
	if (!hb_cfg.stats_file[0] ||
	    !(hb_load_relaxed(&hb_stats[HB_ST_CONNECTED]) | hb_load_relaxed(&hb_stats[HB_ST_ACCEPTED]) |
	      hb_load_relaxed(&hb_stats_adopted)))
		return;
	hb_buf_init(&b, text, sizeof(text));
	hb_stats_render(&b);
	hb_buf_init(&pb, path, sizeof(path));
	stats_path(&pb, pid);
	hb_buf_str(&pb);
	hb_buf_init(&t, tmp, sizeof(tmp));
	hb_buf_fmt(&t, "%s.tmp.%d", path, pid);
	hb_buf_str(&t);
	fd = hb_os_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (hb_os_write((int)fd, b.p, b.len) != (long)b.len) {
		hb_os_close((int)fd);
		return;
	}
	hb_os_close((int)fd);
	(void)hb_os_rename(tmp, path);
}
