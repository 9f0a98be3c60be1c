//go:build linux

package kexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Seals is what Seal sets: no write, no resize, and no removing seals.
const Seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL

// Buffer is a memfd being filled. Seal turns it into an Image.
type Buffer struct {
	name string
	f    *os.File
	size int64
}

// NewBuffer creates an empty memfd; name shows up in /proc/self/fd only.
func NewBuffer(name string) (*Buffer, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create %s: %w", name, err)
	}
	return &Buffer{name: name, f: os.NewFile(uintptr(fd), "memfd:"+name)}, nil
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	n, err := b.f.Write(p)
	b.size += int64(n)
	if err != nil {
		return n, b.writeErr(err)
	}
	return n, nil
}

func (b *Buffer) writeErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EFBIG) {
		return fmt.Errorf("%w: %s at %d bytes: %w", ErrNoMemory, b.name, b.size, err)
	}
	return fmt.Errorf("write %s: %w", b.name, err)
}

// Fill appends everything r yields. The reader decides what the file is
// (measure.ExactReader refuses one that changes size while it is read);
// the buffer only accounts for memory.
func (b *Buffer) Fill(name string, r io.Reader) error {
	if _, err := io.Copy(onlyWriter{b}, r); err != nil {
		if errors.Is(err, ErrNoMemory) {
			return err
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

// onlyWriter hides ReadFrom so io.Copy cannot pick os.File's
// copy_file_range path and bypass the accounting in Write.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// Size is the number of bytes written so far.
func (b *Buffer) Size() int64 { return b.size }

// Close discards the buffer.
func (b *Buffer) Close() error { return b.f.Close() }

// Seal freezes the contents and returns them as a read-only Image. The
// writable descriptor is closed: kexec_file_load refuses a file that is
// open for writing anywhere (ETXTBSY), and the seals make sure no later
// opener can write or resize it either.
func (b *Buffer) Seal() (*Image, error) {
	defer b.f.Close()
	fd := int(b.f.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, Seals); err != nil {
		return nil, fmt.Errorf("seal %s: %w", b.name, err)
	}
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen %s read-only: %w", b.name, err)
	}
	st, err := ro.Stat()
	if err != nil {
		ro.Close()
		return nil, fmt.Errorf("stat %s: %w", b.name, err)
	}
	if st.Size() != b.size {
		ro.Close()
		return nil, fmt.Errorf("%s: sealed %d bytes, wrote %d", b.name, st.Size(), b.size)
	}
	return &Image{name: b.name, f: ro, size: b.size}, nil
}

// Image is sealed, read-only file content.
type Image struct {
	name string
	f    *os.File
	size int64
}

// Name is the name given to NewBuffer.
func (im *Image) Name() string { return im.name }

// Size is the content length.
func (im *Image) Size() int64 { return im.size }

// ReadAt reads the sealed content; measurements read through it.
func (im *Image) ReadAt(p []byte, off int64) (int, error) { return im.f.ReadAt(p, off) }

// Fd is the read-only descriptor handed to kexec_file_load.
func (im *Image) Fd() int { return int(im.f.Fd()) }

// File is the read-only file.
func (im *Image) File() *os.File { return im.f }

// Close releases the memory once nothing else holds it.
func (im *Image) Close() error { return im.f.Close() }

// Load asks the running kernel to stage kernel, initrd (nil: none) and
// cmdline for kexec. cmdline is passed byte for byte. The entry was
// checked before it was measured (CheckKernel, CheckCmdline, through
// boot/discover); they run again here on the sealed bytes, so that no
// caller can reach the system call with what it would refuse.
func Load(kernel, initrd *Image, cmdline string) error {
	head := make([]byte, min(HeaderSize, kernel.Size()))
	if _, err := kernel.ReadAt(head, 0); err != nil {
		return fmt.Errorf("read %s: %w", kernel.name, err)
	}
	h, err := CheckKernel(head, kernel.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", kernel.name, err)
	}
	if err := CheckCmdline(cmdline, h); err != nil {
		return fmt.Errorf("%s: %w", kernel.name, err)
	}
	initrdFd, flags := -1, 0
	if initrd == nil {
		flags = unix.KEXEC_FILE_NO_INITRAMFS
	} else {
		initrdFd = initrd.Fd()
	}
	if err := unix.KexecFileLoad(kernel.Fd(), initrdFd, cmdline, flags); err != nil {
		return loadErr(kernel, cmdline, err)
	}
	return nil
}

func loadErr(kernel *Image, cmdline string, err error) error {
	var hint string
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		hint = "not a kernel this kernel can kexec (x86 needs a 64-bit bzImage)"
	case errors.Is(err, syscall.EINVAL):
		hint = "kernel image or command line rejected, although it passed the same checks as kexec_file_load's (CheckKernel, CheckCmdline)"
	case errors.Is(err, syscall.EKEYREJECTED), errors.Is(err, syscall.EPERM):
		hint = "refused by kernel lockdown or signature policy"
	case errors.Is(err, syscall.ENOMEM):
		hint = "not enough guest memory for the kernel and initrd"
	case errors.Is(err, syscall.ENOSYS):
		hint = "this kernel has no kexec_file_load (CONFIG_KEXEC_FILE)"
	case errors.Is(err, syscall.ETXTBSY):
		hint = "an image is still open for writing"
	}
	if hint != "" {
		return fmt.Errorf("kexec_file_load %s: %w (%s)", kernel.name, err, hint)
	}
	return fmt.Errorf("kexec_file_load %s: %w", kernel.name, err)
}

// Exec jumps into the loaded kernel. It returns only on failure.
func Exec() error {
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC); err != nil {
		return fmt.Errorf("reboot(LINUX_REBOOT_CMD_KEXEC): %w", err)
	}
	return errors.New("reboot(LINUX_REBOOT_CMD_KEXEC) returned")
}
