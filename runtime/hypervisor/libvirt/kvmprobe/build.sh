#!/bin/sh
# Rebuilds boot.bin (embedded by the libvirt package) from boot.S.
# Needs binutils (as, ld). The result is committed; builds do not run this.
set -eu
cd "$(dirname "$0")"
as --32 -o boot.o boot.S
ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o boot.bin boot.o
rm -f boot.o
test "$(stat -c %s boot.bin)" -eq 512
