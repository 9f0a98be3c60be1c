// Package contract is the tests' oracle for the measurement contract
// (docs/measurements.md), written from the contract's text with
// crypto/sha* and nothing else: it imports no production code, so a bug
// in boot/measure, tpmfront or pcrsim cannot make its own expected values.
// Every test that needs expected PCR values takes them from here.
//
//	PCR4 = H(init4 ‖ H(kernel))
//	PCR5 = H(H(init5 ‖ H(cmdline)) ‖ H(initrd image))
//
// The initrd image is the initrd files in order, every file but the last
// followed by zero bytes up to a multiple of 4 (as GRUB2's
// grub_initrd_load lays them out); one file is itself, none is empty.
package contract

import (
	"crypto"
	_ "crypto/sha1" // register the banks' hashes
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
)

// Hash is the hash of a PCR bank named as TPM tools name it.
func Hash(bank string) crypto.Hash {
	switch bank {
	case "sha1":
		return crypto.SHA1
	case "sha256":
		return crypto.SHA256
	case "sha384":
		return crypto.SHA384
	case "sha512":
		return crypto.SHA512
	}
	panic(fmt.Sprintf("contract: no bank %q", bank))
}

// Digest is H(parts[0] ‖ parts[1] ‖ ...).
func Digest(h crypto.Hash, parts ...[]byte) []byte {
	d := h.New()
	for _, p := range parts {
		d.Write(p)
	}
	return d.Sum(nil)
}

// Extend is the TPM's extend: H(pcr ‖ digest).
func Extend(h crypto.Hash, pcr, digest []byte) []byte { return Digest(h, pcr, digest) }

// Zero is a PCR's value after reset in bank h.
func Zero(h crypto.Hash) []byte { return make([]byte, h.Size()) }

// InitrdImage lays initrd files out as the next kernel receives them.
func InitrdImage(files ...[]byte) []byte {
	var img []byte
	for i, f := range files {
		img = append(img, f...)
		if i < len(files)-1 {
			for len(img)%4 != 0 {
				img = append(img, 0)
			}
		}
	}
	return img
}

// Boot is what one boot measures.
type Boot struct {
	Kernel  []byte
	Initrds [][]byte
	Cmdline string
}

// PCR4 is PCR 4 after the boot, starting from init (nil: zero).
func (b Boot) PCR4(h crypto.Hash, init []byte) []byte {
	if init == nil {
		init = Zero(h)
	}
	return Extend(h, init, Digest(h, b.Kernel))
}

// PCR5 is PCR 5 after the boot, starting from init (nil: zero).
func (b Boot) PCR5(h crypto.Hash, init []byte) []byte {
	if init == nil {
		init = Zero(h)
	}
	return Extend(h, Extend(h, init, Digest(h, []byte(b.Cmdline))), Digest(h, InitrdImage(b.Initrds...)))
}

// Digests are the three digests the boot extends, in order: kernel,
// command line, initrd image.
func (b Boot) Digests(h crypto.Hash) [3][]byte {
	return [3][]byte{Digest(h, b.Kernel), Digest(h, []byte(b.Cmdline)), Digest(h, InitrdImage(b.Initrds...))}
}
