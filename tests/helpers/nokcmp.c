/*
 * nokcmp.c - run a command where kcmp(2) is refused, as under Docker's
 * default seccomp profile without CAP_SYS_PTRACE.
 *
 *   nokcmp [-w] CMD [ARG...]
 *
 * Installs a seccomp filter (PR_SET_NO_NEW_PRIVS, then the seccomp system
 * call itself, which a preloaded library does not see) that answers kcmp
 * with EPERM; with -w also madvise(MADV_WIPEONFORK) with EINVAL, as a
 * kernel before 4.14 does. Every other call is allowed. Then execs CMD;
 * the filter stays for it and its children. Exit 2 if the filter cannot be
 * installed, 127 if CMD cannot be run.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))

int main(int argc, char **argv)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_kcmp, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, ERRNO(EPERM)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_madvise, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_WIPEONFORK, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, ERRNO(EINVAL)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	int wipe = argc > 1 && !strcmp(argv[1], "-w");

	if (!wipe) /* the madvise rule stays out of the filter */
		f[3] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	if (argc < 2 + wipe)
		return 2;
	if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
		perror("nokcmp: seccomp");
		return 2;
	}
	execvp(argv[1 + wipe], argv + 1 + wipe);
	perror("nokcmp: exec");
	return 127;
}
