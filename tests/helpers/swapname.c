/*
 * swapname.c - swap two directory entries back and forth as fast as the
 * kernel allows (renameat2 RENAME_EXCHANGE), for a race against a program
 * that looks at one of them and then opens it.
 *
 *   swapname PATH OTHER SECONDS
 *
 * Prints the number of swaps to stderr; exit 0, or 1 when a swap fails.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	unsigned long n = 0;
	time_t end;

	if (argc != 4) {
		fprintf(stderr, "usage: swapname PATH OTHER SECONDS\n");
		return 2;
	}
	end = time(NULL) + atoi(argv[3]);
	while (time(NULL) < end)
		for (int i = 0; i < 10000; i++, n++)
			if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2],
				    RENAME_EXCHANGE)) {
				perror("swapname: renameat2");
				return 1;
			}
	fprintf(stderr, "%lu swaps\n", n);
	return 0;
}
