// Package loaderimg builds what the real-loader differential test
// (e2e/loader) boots: an observer "kernel" that real boot loaders load like
// a bzImage and that reports what it was handed, guest disks with GRUB 2,
// SYSLINUX or GRUB legacy installed the way their installers do it, and a
// bounded QEMU boot that collects the observer's report.
package loaderimg

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed observer/observer.S
var observerSrc []byte

//go:embed observer/observer.ld
var observerLds []byte

// Offsets in the setup header (Documentation/arch/x86/boot.rst).
const (
	hdrSetupSects = 0x1f1
	hdrSyssize    = 0x1f4
	hdrInitSize   = 0x260
	markerMagic   = "VTPMOBS-MARKER:"
	markerField   = 128 // bytes after the magic, NUL included
)

// BuildObserver assembles the observer with binutils (as, ld, objcopy) in
// dir and returns the bzImage bytes with syssize and init_size filled in.
func BuildObserver(ctx context.Context, dir string) ([]byte, error) {
	src := filepath.Join(dir, "observer.S")
	lds := filepath.Join(dir, "observer.ld")
	obj := filepath.Join(dir, "observer.o")
	elf := filepath.Join(dir, "observer.elf")
	bin := filepath.Join(dir, "observer.bin")
	if err := os.WriteFile(src, observerSrc, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(lds, observerLds, 0o644); err != nil {
		return nil, err
	}
	for _, c := range [][]string{
		{"as", "--32", "-o", obj, src},
		{"ld", "-m", "elf_i386", "--no-warn-rwx-segments", "-T", lds, "-o", elf, obj},
		{"objcopy", "-O", "binary", "-j", ".setup", "-j", ".text32", elf, bin},
	} {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	img, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	// The bss (stack) size is the one number the binary does not carry.
	out, err := exec.CommandContext(ctx, "nm", elf).Output()
	if err != nil {
		return nil, fmt.Errorf("nm %s: %w", elf, err)
	}
	var end uint32
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[2] == "_end32" {
			fmt.Sscanf(f[0], "%x", &end)
		}
	}
	setup := (int(img[hdrSetupSects]) + 1) * 512
	if end <= 0x100000 || len(img) <= setup || string(img[0x202:0x206]) != "HdrS" {
		return nil, fmt.Errorf("observer build: unexpected layout (size %d, _end32 %#x)", len(img), end)
	}
	pm := len(img) - setup
	binary.LittleEndian.PutUint32(img[hdrSyssize:], uint32((pm+15)/16))
	binary.LittleEndian.PutUint32(img[hdrInitSize:], (end-0x100000+0xfff)&^0xfff)
	return img, nil
}

// Kernel returns a copy of the observer that reports marker (printable
// ASCII, at most 127 bytes) as the identity of the kernel file.
func Kernel(observer []byte, marker string) ([]byte, error) {
	if len(marker) >= markerField {
		return nil, fmt.Errorf("marker %q longer than %d bytes", marker, markerField-1)
	}
	for i := 0; i < len(marker); i++ {
		if marker[i] < 0x20 || marker[i] > 0x7e {
			return nil, fmt.Errorf("marker %q is not printable ASCII", marker)
		}
	}
	i := bytes.Index(observer, []byte(markerMagic))
	if i < 0 {
		return nil, fmt.Errorf("observer has no marker field")
	}
	k := bytes.Clone(observer)
	f := k[i+len(markerMagic) : i+len(markerMagic)+markerField]
	clear(f)
	copy(f, marker)
	return k, nil
}

// Observation is what the observer reported.
type Observation struct {
	// Entry is 16 when the loader entered at setup+0x200 in real mode,
	// 32 when it jumped to code32_start in protected mode.
	Entry int
	// LoaderType is boot_params.hdr.type_of_loader as the loader set it.
	LoaderType byte
	// Marker identifies the kernel file (see Kernel).
	Marker string
	// Cmdline is the command line bytes up to the NUL; HasCmdline is
	// false when cmd_line_ptr was 0.
	Cmdline    []byte
	HasCmdline bool
	InitrdAddr uint32
	InitrdSize uint32
	// Initrd is the initrd area's bytes (nil when there is none).
	Initrd []byte
}

// ParseObservation reads the observer's report out of a serial log, which
// may hold the loader's own output before it. It fails unless the report
// is complete and self-consistent.
func ParseObservation(console []byte) (*Observation, error) {
	s := strings.ReplaceAll(string(console), "\r", "")
	i := strings.LastIndex(s, "\nVTPMOBS entry=")
	if i < 0 {
		return nil, fmt.Errorf("no observer report on the console")
	}
	o := &Observation{}
	seen := map[string]bool{}
	for _, l := range strings.Split(s[i+1:], "\n") {
		rest, ok := strings.CutPrefix(l, "VTPMOBS ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(rest, "=")
		seen[k] = true
		var err error
		switch k {
		case "entry":
			var lt uint
			if _, err = fmt.Sscanf(v, "%d loader=%x", &o.Entry, &lt); err == nil {
				o.LoaderType = byte(lt)
			}
		case "marker":
			o.Marker = strings.TrimPrefix(v, markerMagic)
		case "cmdline":
			if v != "none" {
				o.HasCmdline = true
				o.Cmdline, err = hex.DecodeString(v)
			}
		case "initrd":
			_, err = fmt.Sscanf(v, "%x %x", &o.InitrdAddr, &o.InitrdSize)
		case "initrd-data":
			if v == "toobig" {
				err = fmt.Errorf("initrd of %d bytes too big to print", o.InitrdSize)
			} else if o.Initrd, err = hex.DecodeString(v); err == nil && len(o.Initrd) != int(o.InitrdSize) {
				err = fmt.Errorf("initrd data has %d bytes, size says %d", len(o.Initrd), o.InitrdSize)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("observer line %q: %w", l, err)
		}
	}
	for _, k := range []string{"entry", "marker", "cmdline", "initrd", "initrd-data", "end"} {
		if !seen[k] {
			return nil, fmt.Errorf("observer report incomplete: no %s line", k)
		}
	}
	if o.InitrdSize == 0 {
		o.Initrd = nil
	}
	return o, nil
}
