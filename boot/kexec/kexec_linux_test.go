//go:build linux

package kexec

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
)

func sealed(t *testing.T, parts ...[]byte) *Image {
	t.Helper()
	b, err := NewBuffer("test")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		if err := b.Fill(fmt.Sprintf("part%d", i), bytes.NewReader(p)); err != nil {
			t.Fatal(err)
		}
	}
	im, err := b.Seal()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { im.Close() })
	return im
}

func TestSealedImage(t *testing.T) {
	a := make([]byte, 3<<20+17)
	rand.Read(a)
	c := []byte("second initrd")
	im := sealed(t, a, nil, c)
	want := append(append([]byte(nil), a...), c...)
	if im.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", im.Size(), len(want))
	}
	got, err := io.ReadAll(io.NewSectionReader(im, 0, im.Size()))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("content differs from the concatenation (err %v)", err)
	}

	seals, err := unix.FcntlInt(uintptr(im.Fd()), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if seals&Seals != Seals {
		t.Errorf("seals = %#x, want %#x set", seals, Seals)
	}
	// Our own descriptor is read-only...
	if _, err := im.File().Write([]byte("x")); err == nil {
		t.Error("write through the image's descriptor succeeded")
	}
	// ...and nobody else can write or resize it either: a fresh writable
	// open of the same memfd gets EPERM from the seals.
	rw, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", im.Fd()), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("write = %v, want EPERM", err)
	}
	if err := rw.Truncate(10); !errors.Is(err, syscall.EPERM) {
		t.Errorf("shrink = %v, want EPERM", err)
	}
	if err := rw.Truncate(im.Size() + 4096); !errors.Is(err, syscall.EPERM) {
		t.Errorf("grow = %v, want EPERM", err)
	}
	if _, err := unix.FcntlInt(uintptr(rw.Fd()), unix.F_ADD_SEALS, 0); err == nil {
		// F_SEAL_SEAL: adding no seal is still adding.
		t.Error("F_ADD_SEALS after F_SEAL_SEAL succeeded")
	}
	if _, err := unix.Mmap(int(rw.Fd()), 0, 4096, unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, syscall.EPERM) {
		t.Errorf("shared writable mmap = %v, want EPERM", err)
	}
	got, _ = io.ReadAll(io.NewSectionReader(im, 0, im.Size()))
	if !bytes.Equal(got, want) {
		t.Error("content changed")
	}
}

func TestEmptyImage(t *testing.T) {
	im := sealed(t)
	if im.Size() != 0 {
		t.Errorf("size %d", im.Size())
	}
}

// A read error reaches the caller with the file's name.
func TestFillReadError(t *testing.T) {
	b, err := NewBuffer("x")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errors.New("EIO")))
	if err := b.Fill("/boot/initrd", r); err == nil || !strings.Contains(err.Error(), "/boot/initrd") || !strings.Contains(err.Error(), "EIO") {
		t.Errorf("Fill = %v", err)
	}
}

func TestLoadRefusesNUL(t *testing.T) {
	im := sealed(t, fakekernel.Image([]byte("not really a kernel")))
	if err := Load(im, nil, "a\x00b"); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("Load = %v", err)
	}
}
