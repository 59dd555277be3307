#!/usr/bin/env python3
"""Check that an ELF executable is statically linked: no PT_INTERP program header (no
dynamic loader is asked for) and no DT_NEEDED entry (no shared library is named).

    check-static.py BINARY

Works without `file`, `ldd` or binutils, which a fresh machine may lack. Exit status 1 when
the binary is dynamically linked or not a 64-bit little-endian ELF file.
"""

import struct
import sys

PT_DYNAMIC, PT_INTERP, DT_NULL, DT_NEEDED = 2, 3, 0, 1


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        print(f"{path}: not a 64-bit little-endian ELF file")
        return 1
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    needed = interp = 0
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == PT_INTERP:
            interp = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
        elif p_type == PT_DYNAMIC:
            for off in range(p_offset, p_offset + p_filesz, 16):
                tag, _val = struct.unpack_from("<qQ", data, off)
                if tag == DT_NULL:
                    break
                needed += tag == DT_NEEDED
    if interp or needed:
        print(f"{path}: dynamically linked (interpreter {interp or 'none'}, {needed} shared libraries)")
        return 1
    print(f"{path}: statically linked ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
