/*
 * structsize.c - prints the size of hbshim's per-connection state as the
 * library is compiled (struct hb_conn, shim/hb.h), for the scale table.
 */
#include <stdio.h>

#include "hb.h"

int main(void)
{
	printf("%zu\n", sizeof(struct hb_conn));
	return 0;
}
