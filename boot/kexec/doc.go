// Package kexec loads what the stub measured and jumps into it: file bytes
// go into sealed memfds once, the measurement reads those memfds, and
// kexec_file_load gets the very same file descriptors, so the bytes
// measured and the bytes booted cannot differ. Loading is Linux only; the
// checks kexec_file_load applies (bzimage.go) are not, so pcrsim applies
// them too.
package kexec

import "errors"

// ErrNoMemory is wrapped when the guest ran out of memory (or tmpfs
// space) holding a kernel or initrd.
var ErrNoMemory = errors.New("not enough guest memory")
