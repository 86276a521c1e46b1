/*
 * events.c - HBSHIM_EVENTS: one JSON object per line per connection event.
 *
 * Each line is formatted on the stack and appended with a single write to a
 * file opened with O_APPEND for that line only: lines from several threads
 * and processes (client and server sharing one file) never interleave, and
 * the shim keeps no fd open that the application might close or reuse.
 * Fields: time (Unix ms), event, pid, fd, local, peer, mode, then the
 * event's own fields (reason, silent_ms, ...), given to hb_event_conn as a
 * list of typed fields so no caller writes JSON by hand. At most EVENT_BURST lines a
 * second per process are written (a peer that connects and disconnects in
 * a loop must not fill the disk); outfile.c writes them without blocking or
 * raising a signal. Lines dropped by the cap or by the write are counted
 * in the stats.
 */
#include <errno.h>
#include <netinet/in.h>

#include "hb.h"

#define EVENT_BURST 1000

static _Atomic uint64_t window_sec;  /* monotonic second of the window */
static _Atomic uint32_t window_count; /* lines admitted in it */

/* Admit a line under the rate cap; any thread. */
static int admit(void)
{
	uint64_t sec = hb_os_now_ms() / 1000;
	uint64_t cur = hb_load_relaxed(&window_sec);

	if (cur != sec && hb_cas_strong_acq_rel(&window_sec, &cur, sec))
		hb_store_relaxed(&window_count, 0);
	if (hb_add_relaxed(&window_count, 1) < EVENT_BURST)
		return 1;
	hb_stat_add(HB_ST_EV_DROP_RATE, 1);
	return 0;
}

static const char *mode_name(const struct hb_conn *c)
{
	if (!c)
		return "none";
	switch (hb_conn_public_mode(c)) {
	case HB_MODE_KEEPALIVE: return "keepalive";
	case HB_MODE_FRAME: return "frame";
	default: return "none";
	}
}

/* Format one line (the common head, then the fields) and
 * append it: hb_out_append's result, or 0 when the line did not fit (it is
 * dropped whole: never a truncated, unparseable line). Out of line so that
 * its 768-byte frame is gone before the caller logs a refusal. */
static __attribute__((noinline)) int write_line(const char *name, int fd,
						 const struct hb_conn *c,
						 const struct sockaddr *peer, socklen_t peerlen,
						 const struct hb_ev_field *f, int n)
{
	char line[768];
	struct sockaddr_storage ss;
	socklen_t len;
	struct hb_buf b;

	hb_buf_init(&b, line, sizeof(line));
	hb_buf_fmt(&b, "{\"time\":%llu,\"event\":\"%s\",\"pid\":%d,\"fd\":%d",
		   (unsigned long long)hb_os_wall_ms(), name, hb_os_getpid(), fd);
	if (fd >= 0) {
		len = sizeof(ss);
		hb_buf_puts(&b, ",\"local\":\"");
		if (hb_os_getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
			hb_buf_addr(&b, (struct sockaddr *)&ss, len);
		else
			hb_buf_puts(&b, "?");
		len = sizeof(ss);
		hb_buf_puts(&b, "\",\"peer\":\"");
		if (peer)
			hb_buf_addr(&b, peer, peerlen);
		else if (hb_os_getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
			hb_buf_addr(&b, (struct sockaddr *)&ss, len);
		else
			hb_buf_puts(&b, "?");
		hb_buf_putc(&b, '"');
	}
	hb_buf_fmt(&b, ",\"mode\":\"%s\"", mode_name(c));
	for (int i = 0; i < n; i++) {
		hb_buf_fmt(&b, ",\"%s\":", f[i].key);
		if (f[i].str) {
			hb_buf_putc(&b, '"');
			hb_buf_json_str(&b, f[i].str);
			hb_buf_putc(&b, '"');
		} else {
			hb_buf_putu(&b, f[i].num);
		}
	}
	if (b.len >= b.cap - 2)
		return 0;
	hb_buf_puts(&b, "}\n");
	return hb_out_append(HB_OUT_EVENTS, hb_cfg.events_file, b.p, b.len);
}

void hb_event_conn(const char *name, int fd, const struct hb_conn *c,
		   const struct sockaddr *peer, socklen_t peerlen, const struct hb_ev_field *f,
		   int n)
{
	int r;

	if (!hb_events_on() || !admit())
		return;
	r = write_line(name, fd, c, peer, peerlen, f, n);
	if (r == -EACCES)
		hb_log_refused(HB_OUT_EVENTS, hb_cfg.events_file);
	if (r < 0)
		hb_stat_add(HB_ST_EV_DROP_WRITE, 1);
}
