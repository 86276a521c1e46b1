/*
 * seccomp_syscall.c - a client that sandboxes itself through syscall(), as
 * libseccomp does on current kernels, after its connection is up.
 *
 *   seccomp_syscall PORT HOW
 *
 * First, with no filter, the pass-through of syscall() itself: getpid's
 * number gives getpid(), close(-1) gives -1 with errno EBADF, and a
 * six-argument mmap maps a page. Then it connects to 127.0.0.1:PORT (an
 * echo server) and sends "first\n" and reads it back. Then, by HOW:
 *   seccomp  syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)
 *   prctl    syscall(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)
 *   libseccomp  the same filter built and loaded by libseccomp.so.2
 *            (dlopen'd: no headers needed; exit 77 when it is missing),
 *            whose seccomp_load goes through syscall(SYS_seccomp) after its
 *            own probes
 *   probe    no filter: libseccomp's probes, which the kernel refuses
 *            (seccomp(STRICT, 1, NULL): EINVAL; seccomp(FILTER, TSYNC,
 *            NULL) and prctl(PR_SET_SECCOMP, FILTER, NULL), both through
 *            syscall(): EFAULT), and seccomp(SECCOMP_GET_ACTION_AVAIL)
 * The filter kills the process on sendto, sendmsg, recvfrom, recvmsg,
 * getsockopt, setsockopt, clone and clone3. Then 65536 bytes (every byte
 * value, frame-header look-alikes included) go out with write(2) and come
 * back with read(2); "exact 65536" is printed when they are equal. Exit 0
 * on success, 2 on a failed setup call, 3 on a wrong pass-through, 4 on a
 * short or different echo.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <dlfcn.h>

#include "loopback.h"

/* libseccomp's actions (seccomp.h): allow, kill the process. */
#define SCMP_ACT_ALLOW 0x7fff0000U
#define SCMP_ACT_KILL_PROCESS 0x80000000U

/* The filter of main's, built and loaded by libseccomp: 0 or -errno. */
static long load_with_libseccomp(void)
{
	static const int killed[] = { SYS_sendto, SYS_sendmsg, SYS_recvfrom, SYS_recvmsg,
				      SYS_getsockopt, SYS_setsockopt, SYS_clone, SYS_clone3 };
	void *lib = dlopen("libseccomp.so.2", RTLD_NOW);
	void *(*init)(uint32_t);
	int (*add)(void *, uint32_t, int, unsigned int, ...);
	int (*load)(void *);
	void *ctx;

	if (!lib) {
		fprintf(stderr, "no libseccomp.so.2: %s\n", dlerror());
		exit(77);
	}
	init = (void *(*)(uint32_t))dlsym(lib, "seccomp_init");
	add = (int (*)(void *, uint32_t, int, unsigned int, ...))dlsym(lib, "seccomp_rule_add");
	load = (int (*)(void *))dlsym(lib, "seccomp_load");
	if (!init || !add || !load)
		die("libseccomp symbols");
	ctx = init(SCMP_ACT_ALLOW);
	if (!ctx)
		die("seccomp_init");
	for (size_t i = 0; i < sizeof(killed) / sizeof(killed[0]); i++)
		if (add(ctx, SCMP_ACT_KILL_PROCESS, killed[i], 0) < 0)
			die("seccomp_rule_add");
	return load(ctx);
}

#define KILL(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
		 BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)

#define PAYLOAD 65536

static void pass_through(void)
{
	void *m;

	if (syscall(SYS_getpid) != getpid()) {
		fprintf(stderr, "syscall(SYS_getpid) differs from getpid()\n");
		exit(3);
	}
	errno = 0;
	if (syscall(SYS_close, -1) != -1 || errno != EBADF) {
		fprintf(stderr, "syscall(SYS_close, -1): errno %d, not EBADF\n", errno);
		exit(3);
	}
	m = (void *)syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		fprintf(stderr, "syscall(SYS_mmap, 6 arguments): %s\n", strerror(errno));
		exit(3);
	}
	memset(m, 1, 4096);
	munmap(m, 4096);
}

int main(int argc, char **argv)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		KILL(SYS_sendto), KILL(SYS_sendmsg), KILL(SYS_recvfrom), KILL(SYS_recvmsg),
		KILL(SYS_getsockopt), KILL(SYS_setsockopt), KILL(SYS_clone), KILL(SYS_clone3),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	static unsigned char out[PAYLOAD], back[PAYLOAD];
	unsigned char first[6];
	unsigned action = SECCOMP_RET_KILL_PROCESS;
	const char *how;
	long r;
	int fd;

	if (argc < 3)
		return 2;
	how = argv[2];
	pass_through();
	fd = dial(atoi(argv[1]));
	write_all(fd, (const unsigned char *)"first\n", 6);
	read_all(fd, first, 6);
	if (memcmp(first, "first\n", 6))
		return 4;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("prctl(PR_SET_NO_NEW_PRIVS)");
	if (!strcmp(how, "seccomp"))
		r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
	else if (!strcmp(how, "prctl"))
		r = syscall(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
	else if (!strcmp(how, "libseccomp"))
		r = load_with_libseccomp();
	else if (!strcmp(how, "probe")) {
		errno = 0;
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 1, NULL) != -1 || errno != EINVAL)
			die("seccomp(STRICT, 1, NULL) did not fail with EINVAL");
		errno = 0;
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, NULL) != -1 ||
		    errno != EFAULT)
			die("seccomp(FILTER, TSYNC, NULL) did not fail with EFAULT");
		errno = 0;
		if (syscall(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL, 0, 0) != -1 ||
		    errno != EFAULT)
			die("prctl(PR_SET_SECCOMP, FILTER, NULL) did not fail with EFAULT");
		r = syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action);
	} else
		return 2;
	if (r < 0) {
		if (r != -1)
			errno = (int)-r; /* libseccomp's -errno */
		die(how);
	}
	/* Data frame and downgrade frame look-alikes, then every byte value. */
	memcpy(out, "\x00\x01\x00\x00\x00\x05hello\x00\x04\x01\xff\x00", 16);
	for (size_t i = 16; i < PAYLOAD; i++)
		out[i] = (unsigned char)(i * 7 + (i >> 8));
	write_all(fd, out, PAYLOAD);
	read_all(fd, back, PAYLOAD);
	if (memcmp(out, back, PAYLOAD)) {
		fprintf(stderr, "the echo differs\n");
		return 4;
	}
	printf("exact %d\n", PAYLOAD);
	return 0;
}
