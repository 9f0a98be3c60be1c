/*
 * observer: a tiny "kernel" that follows the Linux x86 boot protocol
 * (Documentation/arch/x86/boot.rst) so that real boot loaders load it like
 * a bzImage, and that reports over COM1 what the loader handed it: which
 * kernel file this is (a marker patched in per path), the command line
 * bytes, and the initrd range and bytes. It then ends the VM through
 * QEMU's isa-debug-exit device, so a boot costs about a second.
 *
 * Layout, as a bzImage: the real-mode part (boot sector + SETUP_SECTS
 * sectors, with the setup header at 0x1f1) followed by the protected-mode
 * part, which every loader puts at code32_start = 0x100000 because the
 * image is not relocatable.
 *
 * Two entries, both of which real loaders use:
 *  - setup+0x200, in real mode (SYSLINUX, GRUB legacy, GRUB2 linux16):
 *    CS = base+0x20, DS = base, where base:0 holds the boot sector and the
 *    setup header the loader filled in. It switches to flat 32-bit
 *    protected mode, as the kernel's own setup code does, and jumps to
 *    code32_start with ESI = linear address of base:0.
 *  - code32_start, in 32-bit flat protected mode (GRUB2 i386-pc linux):
 *    ESI = boot_params ("zero page").
 * Output, one line each, ASCII, so the host side can parse it exactly:
 *    VTPMOBS entry=16|32 loader=XX
 *    VTPMOBS marker=<marker string>
 *    VTPMOBS cmdline=<hex bytes up to the NUL>|none
 *    VTPMOBS initrd=<addr hex> <size hex>
 *    VTPMOBS initrd-data=<hex bytes>|toobig
 *    VTPMOBS end
 */

	.equ	SETUP_SECTS, 4
	.equ	COM1, 0x3f8
	.equ	DEBUG_EXIT, 0xf4
	.equ	BP_LOADER, 0x210	/* type_of_loader */
	.equ	BP_RAMDISK, 0x218
	.equ	BP_RAMDISK_SZ, 0x21c
	.equ	BP_CMDLINE, 0x228
	.equ	REALMODE_MAGIC, 0x4d455231	/* "1REM" in EDI: came through start16 */
	.equ	MAX_CMDLINE, 4096
	.equ	MAX_INITRD, 0x40000		/* printed in full up to 256 KiB */

	.section .setup, "ax"
	.code16
	.globl _start
_start:
	/* Boot sector: nothing boots from it, it only carries the header. */
	.org	0x1f1
setup_sects:	.byte	SETUP_SECTS
root_flags:	.word	0
syssize:	.long	0		/* patched: 16-byte units of the pm part */
ram_size:	.word	0
vid_mode:	.word	0xffff		/* NORMAL_VGA */
root_dev:	.word	0
boot_flag:	.word	0xaa55
	/* 0x200: the real-mode entry */
	.byte	0xeb, start16 - 1f	/* jmp short start16 */
1:
	.ascii	"HdrS"
version:	.word	0x020c		/* 2.12: cmdline_size, init_size, xloadflags honoured */
realmode_swtch:	.long	0
start_sys_seg:	.word	0x1000
kernel_version:	.word	0
type_of_loader:	.byte	0
loadflags:	.byte	0x01		/* LOADED_HIGH */
setup_move_size: .word	0x8000
code32_start:	.long	0x100000
ramdisk_image:	.long	0
ramdisk_size:	.long	0
bootsect_kludge: .long	0
heap_end_ptr:	.word	0
ext_loader_ver:	.byte	0
ext_loader_type: .byte	0
cmd_line_ptr:	.long	0
initrd_addr_max: .long	0x37ffffff	/* what Linux declares */
kernel_alignment: .long	0x1000
relocatable_kernel: .byte 0
min_alignment:	.byte	12
xloadflags:	.word	0x0003		/* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G: what
					 * kexec_file_load (and so vtpmboot) demands; the
					 * 16/32-bit loaders here ignore it */
cmdline_size:	.long	2047		/* Linux's COMMAND_LINE_SIZE - 1 */
hardware_subarch: .long	0
hardware_subarch_data: .quad 0
payload_offset:	.long	0
payload_length:	.long	0
setup_data:	.quad	0
pref_address:	.quad	0x100000
init_size:	.long	0		/* patched: pm part + bss + stack */
handover_offset: .long	0

start16:
	cli
	cld
	/* EBX = linear address of the boot parameters (DS:0). */
	xorl	%ebx, %ebx
	movw	%ds, %bx
	shll	$4, %ebx
	/* The GDT's linear address is only known now. Data references
	 * are DS-relative, and DS:0 is the start of this file. */
	leal	gdt(%ebx), %eax
	movl	%eax, gdt_desc + 2
	lgdtl	gdt_desc
	movl	code32_start, %eax
	movl	%eax, jump32 + 2	/* far jump target, patched in place */
	movl	%ebx, %esi
	movl	$REALMODE_MAGIC, %edi
	movl	%cr0, %eax
	orb	$1, %al
	movl	%eax, %cr0
	movw	$0x18, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
jump32:
	.byte	0x66, 0xea		/* ljmpl $0x10, $code32_start */
	.long	0
	.word	0x10

	.balign	8
gdt:
	.quad	0
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x10: flat 4 GiB code, 32-bit */
	.quad	0x00cf92000000ffff	/* 0x18: flat 4 GiB data */
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	0

	.org	(SETUP_SECTS + 1) * 512

/* ---- protected-mode part, linked at 0x100000 ---- */
	.section .text32, "ax"
	.code32
	.globl	entry32
entry32:
	cli
	cld
	movl	$stack_top, %esp
	movl	%esi, %ebp		/* EBP = boot_params for the rest */
	movl	%edi, %ebx
	call	serial_init

	movl	$s_entry, %esi
	call	puts
	movb	$'3', %al
	movb	$'2', %ah
	cmpl	$REALMODE_MAGIC, %ebx
	jne	1f
	movb	$'1', %al
	movb	$'6', %ah
1:	call	putc
	movb	%ah, %al
	call	putc
	movl	$s_loader, %esi
	call	puts
	movzbl	BP_LOADER(%ebp), %eax
	call	hex8
	call	newline

	movl	$s_marker, %esi
	call	puts
	movl	$marker, %esi
	call	puts
	call	newline

	movl	$s_cmdline, %esi
	call	puts
	movl	BP_CMDLINE(%ebp), %esi
	testl	%esi, %esi
	jnz	2f
	movl	$s_none, %esi
	call	puts
	jmp	3f
2:	movl	$MAX_CMDLINE, %ecx
4:	movzbl	(%esi), %eax
	testb	%al, %al
	jz	3f
	call	hex8
	incl	%esi
	loop	4b
3:	call	newline

	movl	$s_initrd, %esi
	call	puts
	movl	BP_RAMDISK(%ebp), %eax
	call	hex32
	movb	$' ', %al
	call	putc
	movl	BP_RAMDISK_SZ(%ebp), %eax
	call	hex32
	call	newline

	movl	$s_initrd_data, %esi
	call	puts
	movl	BP_RAMDISK(%ebp), %esi
	movl	BP_RAMDISK_SZ(%ebp), %ecx
	cmpl	$MAX_INITRD, %ecx
	jbe	5f
	movl	$s_toobig, %esi
	call	puts
	jmp	6f
5:	jecxz	6f
7:	movzbl	(%esi), %eax
	call	hex8
	incl	%esi
	loop	7b
6:	call	newline

	movl	$s_end, %esi
	call	puts
	call	newline
	/* isa-debug-exit: QEMU exits with status (value << 1) | 1 = 99, a
	 * status QEMU's own errors (1) cannot be confused with. */
	movb	$0x31, %al
	outb	%al, $DEBUG_EXIT
9:	hlt
	jmp	9b

/* 115200 8N1; QEMU ignores the rate but a real UART needs it. */
serial_init:
	movw	$COM1 + 1, %dx
	movb	$0, %al
	outb	%al, %dx		/* no interrupts */
	movw	$COM1 + 3, %dx
	movb	$0x80, %al
	outb	%al, %dx		/* DLAB */
	movw	$COM1, %dx
	movb	$1, %al
	outb	%al, %dx		/* divisor 1 */
	movw	$COM1 + 1, %dx
	movb	$0, %al
	outb	%al, %dx
	movw	$COM1 + 3, %dx
	movb	$3, %al
	outb	%al, %dx		/* 8N1 */
	ret

/* putc: AL to COM1 once the transmitter is empty. Keeps every register. */
putc:
	pushl	%edx
	pushl	%eax
	movw	$COM1 + 5, %dx
1:	inb	%dx, %al
	testb	$0x20, %al
	jz	1b
	popl	%eax
	movw	$COM1, %dx
	outb	%al, %dx
	popl	%edx
	ret

/* puts: the NUL-terminated string at ESI. */
puts:
	pushl	%eax
	pushl	%esi
1:	lodsb
	testb	%al, %al
	jz	2f
	call	putc
	jmp	1b
2:	popl	%esi
	popl	%eax
	ret

newline:
	pushl	%eax
	movb	$'\n', %al
	call	putc
	popl	%eax
	ret

/* hex8: AL as two lower-case hex digits. */
hex8:
	pushl	%eax
	pushl	%ebx
	movl	%eax, %ebx
	shrb	$4, %al
	andl	$0x0f, %eax
	movb	hexdigits(%eax), %al
	call	putc
	movl	%ebx, %eax
	andl	$0x0f, %eax
	movb	hexdigits(%eax), %al
	call	putc
	popl	%ebx
	popl	%eax
	ret

/* hex32: EAX as eight hex digits. */
hex32:
	pushl	%eax
	pushl	%ecx
	movl	$4, %ecx
1:	roll	$8, %eax
	call	hex8
	loop	1b
	popl	%ecx
	popl	%eax
	ret

hexdigits:	.ascii	"0123456789abcdef"
s_entry:	.asciz	"\nVTPMOBS entry="
s_loader:	.asciz	" loader="
s_marker:	.asciz	"VTPMOBS marker="
s_cmdline:	.asciz	"VTPMOBS cmdline="
s_none:		.asciz	"none"
s_initrd:	.asciz	"VTPMOBS initrd="
s_initrd_data:	.asciz	"VTPMOBS initrd-data="
s_toobig:	.asciz	"toobig"
s_end:		.asciz	"VTPMOBS end"

/* The host patches each kernel file's marker here (NUL-padded, printable
 * ASCII only); "VTPMOBS-MARKER:" opens the field so it can be found. */
	.balign	16
	.globl	marker
marker:
	.ascii	"VTPMOBS-MARKER:"
	.fill	128 - 15, 1, 0
	.byte	0

	.section .bss32, "aw", @nobits
	.balign	16
	.fill	4096, 1, 0
stack_top:
