#!/usr/bin/env bats
# The wrapper's libc check reads hostile ELF headers within its buffers.

load helpers

setup() { hb_setup; }
teardown() { hb_teardown; }

# A copy of a native dynamic program whose PT_INTERP names musl's loader and
# claims 2^64 - 1 bytes: the name buffer holds its first 127 bytes. Before,
# filesz + 1 wrapped to 0, the read asked for SIZE_MAX bytes into a 128-byte
# stack buffer (refused by the kernel: EFAULT), the name stayed empty and the
# program counted as "unknown libc".
@test "wrapper: PT_INTERP with p_filesz 2^64-1 is read within the name buffer" {
	$PY - "$T/evil" <<'PYEOF'
import os, struct, sys
b = bytearray(open('/bin/true', 'rb').read())
assert b[4] == 2 and b[5] == 1, "needs a 64-bit little-endian /bin/true"
phoff = struct.unpack_from('<Q', b, 0x20)[0]
phent, phnum = struct.unpack_from('<HH', b, 0x36)
done = False
for i in range(phnum):
    o = phoff + i * phent
    if struct.unpack_from('<I', b, o)[0] == 3:  # PT_INTERP
        off, size = struct.unpack_from('<Q', b, o + 8)[0], struct.unpack_from('<Q', b, o + 32)[0]
        name = b'/lib/ld-musl-x86_64.so.1'
        assert len(name) < size
        b[off:off + size] = name + b'\0' * (size - len(name))
        struct.pack_into('<Q', b, o + 32, 0xffffffffffffffff)
        done = True
assert done, "no PT_INTERP"
open(sys.argv[1], 'wb').write(b)
os.chmod(sys.argv[1], 0o755)
PYEOF
	run timeout 30 "$HB_WRAP" "$T/evil"
	assert_status 126
	grep -q "is a musl program (/lib/ld-musl-x86_64.so.1)" <<<"$output" ||
		fail "the interpreter was not read: $output"
}
