/*
 * epollset.c - the epoll sets framed sockets were added to (i_poll.c's
 * epoll_ctl reports them), for the lingering close.
 *
 * epoll keeps a registration until the last descriptor of the file is
 * closed. A framed close lingers on a private duplicate (frame.c), so the
 * socket would stay in the application's epoll sets under the closed
 * number, and its events would reach whatever the application opens on
 * that number next (haproxy, seen). The sets framed sockets were added to
 * are remembered here (process-wide, up to EPFD_MAX numbers); before a
 * lingering close the socket is deleted from each, as the close itself
 * would have done. A number that no longer is an epoll set, or a set
 * without the socket, answers EINVAL/EBADF/ENOENT: harmless.
 */
#include <string.h>
#include <sys/epoll.h>

#include "hb.h"

#define EPFD_MAX 64
static _Atomic int epfds[EPFD_MAX]; /* epfd + 1, 0 = free */
static _Atomic int epfd_overflow;

void hb_epoll_note(int epfd)
{
	for (int i = 0; i < EPFD_MAX; i++) {
		int v = hb_load_acquire(&epfds[i]), z = 0;

		if (v == epfd + 1)
			return;
		if (!v && hb_cas_strong_acq_rel(&epfds[i], &z, epfd + 1))
			return;
		if (!v && hb_load_acquire(&epfds[i]) == epfd + 1)
			return;
	}
	hb_store_release(&epfd_overflow, 1);
}

int hb_epoll_detach(int fd)
{
	struct epoll_event ev;

	if (hb_load_acquire(&epfd_overflow))
		return -1;
	memset(&ev, 0, sizeof(ev));
	for (int i = 0; i < EPFD_MAX; i++) {
		int v = hb_load_acquire(&epfds[i]);

		if (v)
			(void)hb_os_epoll_ctl(v - 1, EPOLL_CTL_DEL, fd, &ev);
	}
	return 0;
}

