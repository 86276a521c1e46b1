/*
 * events.c - HBSHIM_EVENTS: one JSON object per line per connection event.
 *
 * Each line is formatted on the stack and appended with a single write to a
 * file opened with O_APPEND for that line only: lines from several threads
 * and processes (client and server sharing one file) never interleave, and
 * the shim keeps no fd open that the application might close or reuse.
 * Fields: time (Unix ms), event, pid, fd, local, peer, mode, then the
 * event's own fields (reason, silent_ms, ...).
 */
#include <fcntl.h>
#include <netinet/in.h>

#include "hb.h"

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

void hb_event(const char *name, int fd, const struct hb_conn *c, const char *extra)
{
	hb_event_peer(name, fd, c, NULL, 0, extra);
}

void hb_event_peer(const char *name, int fd, const struct hb_conn *c,
		   const struct sockaddr *peer, socklen_t peerlen, const char *extra)
{
	char line[768];
	struct sockaddr_storage ss;
	socklen_t len;
	struct hb_buf b;
	long efd;

	if (!hb_events_on())
		return;
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
	if (extra)
		hb_buf_puts(&b, extra);
	if (b.len >= b.cap - 2)
		return; /* never write a truncated, unparseable line */
	hb_buf_puts(&b, "}\n");
	efd = hb_os_open(hb_cfg.events_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (efd < 0)
		return;
	(void)hb_os_write((int)efd, b.p, b.len);
	hb_os_close((int)efd);
}
