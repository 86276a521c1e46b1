/*
 * capkeep.c - keeps a capability in its own thread across a uid change, as
 * proftpd's mod_cap does, with a tracked connection open (the shim's
 * background thread running).
 *
 *   capkeep          (as root)
 *
 * Makes a loopback connection with itself (run it with HBSHIM_FRAME=* so
 * the shim's thread is busy with it), then: PR_SET_KEEPCAPS, capset
 * keeping CAP_SETUID and CAP_SETGID permitted, setresuid to nobody (real
 * and effective; saved too), capset raising CAP_SETUID effective again,
 * seteuid(0), and an exchange on the connection. glibc changes uids in
 * every thread and aborts the process when one thread's answer differs.
 * Prints "EUID 0" and "OK" and exits 0; 2 on a setup failure.
 */
#include <linux/capability.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopback.h"

int capset(cap_user_header_t h, const cap_user_data_t d);

static int caps(unsigned eff)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	unsigned keep = (1u << CAP_SETUID) | (1u << CAP_SETGID);

	memset(d, 0, sizeof(d));
	d[0].permitted = keep;
	d[0].effective = eff & keep;
	return capset(&h, d);
}

int main(void)
{
	int port, l = listener(1, &port), cl = dial(port), sv;
	char b[2];

	sv = accept(l, NULL, NULL);
	if (sv < 0 || write(cl, "a", 1) != 1 || read(sv, b, 1) != 1)
		return perror("exchange"), 2;
	usleep(100000); /* the shim's thread has been running a while */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || caps(1u << CAP_SETUID))
		return perror("keepcaps"), 2;
	if (setresuid(65534, 65534, 65534))
		return perror("setresuid"), 2;
	if (caps(1u << CAP_SETUID))
		return perror("capset"), 2;
	if (seteuid(0))
		return perror("seteuid"), 2;
	printf("EUID %d\n", (int)geteuid());
	if (write(sv, "b", 1) != 1 || read(cl, b, 1) != 1 || b[0] != 'b')
		return perror("exchange after"), 2;
	printf("OK\n");
	return 0;
}
