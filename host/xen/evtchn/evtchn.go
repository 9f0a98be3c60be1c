//go:build linux

// Package evtchn binds Xen event channels through Linux's /dev/xen/evtchn
// (include/uapi/xen/evtchn.h): a backend binds the port its frontend
// allocated, waits for its notifications and sends its own.
package evtchn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl numbers: _IOC(_IOC_NONE, 'E', nr, size), checked against the C
// header in the tests.
const (
	ioctlBindInterdomain = 0x00084501 // nr 1, struct { u32 remote_domain, remote_port; }
	ioctlUnbind          = 0x00044503 // nr 3, struct { u32 port; }
	ioctlNotify          = 0x00044504 // nr 4, struct { u32 port; }
)

// DevicePath is the evtchn device.
var DevicePath = "/dev/xen/evtchn"

// Dev is one open of the device; ports bound through it deliver their
// events only to it.
type Dev struct {
	f *os.File
}

// Open opens the device non-blocking, so that Close interrupts a Wait.
func Open() (*Dev, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", DevicePath, err)
	}
	return &Dev{f: os.NewFile(uintptr(fd), DevicePath)}, nil
}

func (d *Dev) ioctl(req uintptr, arg unsafe.Pointer) (int, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var r uintptr
	var errno unix.Errno
	if cerr := rc.Control(func(fd uintptr) {
		r, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); cerr != nil {
		return 0, cerr
	}
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// BindInterdomain binds the remote domain's port (an unbound port it
// allocated for us) and returns our local port.
func (d *Dev) BindInterdomain(domid, remotePort uint32) (uint32, error) {
	arg := [2]uint32{domid, remotePort}
	p, err := d.ioctl(ioctlBindInterdomain, unsafe.Pointer(&arg))
	if err != nil {
		return 0, fmt.Errorf("bind event channel %d of domain %d: %w", remotePort, domid, err)
	}
	return uint32(p), nil
}

// Unbind releases a local port.
func (d *Dev) Unbind(port uint32) error {
	arg := port
	if _, err := d.ioctl(ioctlUnbind, unsafe.Pointer(&arg)); err != nil {
		return fmt.Errorf("unbind event channel %d: %w", port, err)
	}
	return nil
}

// Notify signals the other end of a local port.
func (d *Dev) Notify(port uint32) error {
	arg := port
	if _, err := d.ioctl(ioctlNotify, unsafe.Pointer(&arg)); err != nil {
		return fmt.Errorf("notify event channel %d: %w", port, err)
	}
	return nil
}

// ErrClosed is Wait's error after Close.
var ErrClosed = errors.New("evtchn: closed")

// Wait blocks until a bound port fires and returns it. The port stays
// masked until Unmask, so events are not lost while it is handled: the
// handler must re-check the shared state after unmasking.
func (d *Dev) Wait() (uint32, error) {
	var b [4]byte
	_, err := d.f.Read(b[:])
	if errors.Is(err, os.ErrClosed) {
		return 0, ErrClosed
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", DevicePath, err)
	}
	return binary.NativeEndian.Uint32(b[:]), nil
}

// Unmask re-enables delivery for port.
func (d *Dev) Unmask(port uint32) error {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], port)
	if _, err := d.f.Write(b[:]); err != nil {
		return fmt.Errorf("unmask event channel %d: %w", port, err)
	}
	return nil
}

// Close closes the device; the kernel unbinds its ports.
func (d *Dev) Close() error { return d.f.Close() }
