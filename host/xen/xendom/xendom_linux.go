package xendom

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Hypervisor answers Exists through privcmd.
type Hypervisor struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte // one locked page the hypervisor reads the domid from
}

// Open opens /dev/xen/privcmd.
func Open() (*Hypervisor, error) { return OpenPath(defaultPrivcmd) }

// OpenPath opens privcmd at path.
func OpenPath(path string) (*Hypervisor, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s (is this Xen's dom0, with privcmd loaded?): %w", path, err)
	}
	// The hypervisor copies the argument from dom0's memory by virtual
	// address: it must be mapped and stay put, which Go's heap does not
	// promise; an anonymous locked mapping does (libxc uses hypercall
	// buffers for the same reason).
	buf, err := syscall.Mmap(-1, 0, os.Getpagesize(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_LOCKED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("hypercall buffer: %w", err)
	}
	return &Hypervisor{f: f, buf: buf}, nil
}

// Exists says whether domid exists (dying included). An error means
// the hypervisor could not be asked, not that the domain is gone.
func (h *Hypervisor) Exists(domid uint32) (bool, error) {
	if domid >= domidFirstReserved {
		return false, fmt.Errorf("domid %d is reserved", domid)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// struct xen_memory_domain { domid_t domid; } (xen/memory.h)
	*(*uint16)(unsafe.Pointer(&h.buf[0])) = uint16(domid)
	var call [6]uint64
	call[0] = hypervisorMemoryOp
	call[1] = xenmemCurrentReservation
	call[2] = uint64(uintptr(unsafe.Pointer(&h.buf[0])))
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, h.f.Fd(), ioctlPrivcmdHypercall, uintptr(unsafe.Pointer(&call)))
	switch {
	case e == 0:
		return true, nil
	case errors.Is(e, syscall.ESRCH):
		return false, nil
	default:
		return false, fmt.Errorf("XENMEM_current_reservation for domain %d: %w", domid, e)
	}
}

// Close releases privcmd and the buffer.
func (h *Hypervisor) Close() error {
	syscall.Munmap(h.buf)
	return h.f.Close()
}
