/*
 * noop.c - libhbshim-noop.so, the stand-in for the public API.
 *
 * A program that asks whether it runs under hbshim links -lhbshim-noop.
 * Without the preload these definitions answer "not loaded"; with it,
 * libhbshim.so comes first in the lookup order and its definitions win.
 * Nothing else is exported (noop.map ends in "local: *;").
 */
#include "hbshim.h"

#define NOOP_EXPORT __attribute__((visibility("default")))

NOOP_EXPORT const char *hbshim_version(void)
{
	return HBSHIM_VERSION_STRING "-noop";
}

NOOP_EXPORT int hbshim_active(void)
{
	return 0;
}

NOOP_EXPORT int hbshim_fd_mode(int fd)
{
	(void)fd;
	return HBSHIM_MODE_NONE;
}
