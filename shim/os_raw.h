/*
 * os_raw.h - the system call instruction itself, for os.c (i_exec.c tests
 * HB_RAW_SYSCALL only).
 *
 * hb_raw6 enters the kernel directly, without libc's syscall(): the shim
 * exports its own syscall (i_exec.c, to see a seccomp filter installed
 * through it), and a call of ours through the public symbol would come
 * back to that interposer. The result is the kernel's: the value, or
 * -errno in -4095..-1; errno is never touched. x86-64 and arm64 (the
 * architectures the project builds for); elsewhere HB_RAW_SYSCALL stays
 * undefined and os.c uses libc's syscall(), and the syscall interposer is
 * not built.
 */
#ifndef HB_OS_RAW_H
#define HB_OS_RAW_H

#if defined(__x86_64__) && !defined(__ILP32__)
#define HB_RAW_SYSCALL 1
static inline long hb_raw6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
#define HB_RAW_SYSCALL 1
static inline long hb_raw6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;

	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory", "cc");
	return x0;
}
#endif

#endif
