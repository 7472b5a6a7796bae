# Boot sector that switches from real mode straight to 64-bit long mode and
# writes a marker to COM1. Used to prove that hardware virtualization can run
# a guest in long mode (a PVM host's /dev/kvm cannot).
	.code16
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x7c00, %sp
	# Zero 0x1000-0x3fff: PML4, PDPT, PD.
	mov $0x1000, %di
	mov $3072, %ecx
	xor %eax, %eax
	cld
	rep stosl
	movl $0x2003, 0x1000
	movl $0x3003, 0x2000
	movl $0x83, 0x3000
	lgdtl gdtr
	mov %cr4, %eax
	or $0x20, %eax
	mov %eax, %cr4
	mov $0x1000, %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax
	mov %eax, %cr0
	ljmpl $0x08, $long_mode
	.code64
long_mode:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	lea msg(%rip), %rsi
	mov $0x3f8, %dx
1:	lodsb
	test %al, %al
	jz 2f
	out %al, %dx
	jmp 1b
2:	cli
	hlt
	jmp 2b
	.p2align 3
gdt:
	.quad 0
	.quad 0x00209a0000000000
	.quad 0x0000920000000000
gdtr:
	.word gdtr - gdt - 1
	.long gdt
msg:
	.asciz "PODVISOR-KVM-PROBE-OK\r\n"
	.org 510
	.word 0xaa55
