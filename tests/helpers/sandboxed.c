/*
 * sandboxed.c - a client that sandboxes itself the way sshd's pre-login
 * child does, after its connection is up.
 *
 *   sandboxed PORT
 *
 * Connects to 127.0.0.1:PORT, then installs a seccomp filter (after
 * PR_SET_NO_NEW_PRIVS, both through prctl) that kills the process on any
 * socket-level call besides read and write: sendto, sendmsg, recvfrom,
 * recvmsg, getsockopt, setsockopt, clone, clone3. Then it writes "ping\n"
 * with write(2), reads the answer with read(2), prints it and exits 0. A
 * library that turns the application's write into sendto, or starts a
 * thread, gets the process killed with SIGSYS.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "loopback.h"

#define KILL(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
		 BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)

int main(int argc, char **argv)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		KILL(SYS_sendto), KILL(SYS_sendmsg), KILL(SYS_recvfrom), KILL(SYS_recvmsg),
		KILL(SYS_getsockopt), KILL(SYS_setsockopt), KILL(SYS_clone), KILL(SYS_clone3),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	char buf[64];
	ssize_t n;
	int fd;

	if (argc < 2)
		return 2;
	fd = dial(atoi(argv[1]));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) {
		perror("prctl");
		return 2;
	}
	if (write(fd, "ping\n", 5) != 5)
		return 3;
	n = read(fd, buf, sizeof(buf));
	if (n <= 0)
		return 4;
	if (write(1, buf, (size_t)n) != n)
		return 5;
	return 0;
}
