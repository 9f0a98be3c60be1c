//go:build !linux

package xendom

import "errors"

// Hypervisor is available on Linux dom0s only.
type Hypervisor struct{}

// Open fails: privcmd is Linux's.
func Open() (*Hypervisor, error) { return nil, errors.New("xendom: Xen's privcmd needs Linux") }

// Exists cannot ask.
func (h *Hypervisor) Exists(uint32) (bool, error) { return false, errors.New("xendom: no privcmd") }

// Close does nothing.
func (h *Hypervisor) Close() error { return nil }
