//go:build linux

// Package gnttab maps pages another domain granted us, through Linux's
// /dev/xen/gntdev (include/uapi/xen/gntdev.h).
package gnttab

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl numbers: _IOC(_IOC_NONE, 'G', nr, size), checked against the C
// header in the tests.
const (
	ioctlMapGrantRef   = 0x00184700 // nr 0, struct ioctl_gntdev_map_grant_ref (one ref): 24 bytes
	ioctlUnmapGrantRef = 0x00104701 // nr 1, struct ioctl_gntdev_unmap_grant_ref: 16 bytes
)

// PageSize is Xen's grant granularity on x86.
const PageSize = 4096

// DevicePath is the gntdev device.
var DevicePath = "/dev/xen/gntdev"

type mapGrantRef struct {
	count, pad uint32
	index      uint64
	domid, ref uint32
}

type unmapGrantRef struct {
	index      uint64
	count, pad uint32
}

// Mapping is one granted page mapped into our memory.
type Mapping struct {
	f     *os.File
	index uint64
	// Page is the shared memory itself: the other domain sees every
	// store, and may change it at any time.
	Page []byte
}

// Map maps grant ref of domain domid, read-write.
func Map(domid, ref uint32) (*Mapping, error) {
	f, err := os.OpenFile(DevicePath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", DevicePath, err)
	}
	arg := mapGrantRef{count: 1, domid: domid, ref: ref}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ioctlMapGrantRef, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		f.Close()
		return nil, fmt.Errorf("map grant %d of domain %d: %w", ref, domid, errno)
	}
	page, err := unix.Mmap(int(f.Fd()), int64(arg.index), PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unmap(f, arg.index)
		f.Close()
		return nil, fmt.Errorf("mmap grant %d of domain %d: %w", ref, domid, err)
	}
	return &Mapping{f: f, index: arg.index, Page: page}, nil
}

func unmap(f *os.File, index uint64) error {
	arg := unmapGrantRef{index: index, count: 1}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ioctlUnmapGrantRef, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return errno
	}
	return nil
}

// Close unmaps the page (munmap, then the grant) and closes the device.
func (m *Mapping) Close() error {
	var first error
	if m.Page != nil {
		if err := unix.Munmap(m.Page); err != nil {
			first = fmt.Errorf("munmap grant: %w", err)
		}
		m.Page = nil
	}
	if err := unmap(m.f, m.index); err != nil && first == nil {
		first = fmt.Errorf("unmap grant: %w", err)
	}
	if err := m.f.Close(); err != nil && first == nil {
		first = err
	}
	return first
}
