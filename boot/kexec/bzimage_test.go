package kexec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// Debian's kernel is what the stub boots: its header passes, and its
// limit is the 2016 bytes measured by booting it (2016 boots, 2017 fails
// in kexec_file_load with EINVAL; the e2e boundary boots repeat that).
func TestCheckRealKernel(t *testing.T) {
	p := filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "vmlinuz")
	testenv.NeedFile(t, p, "run scripts/fetch-kernel.sh")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h, err := CheckKernel(b[:HeaderSize], int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if h.CmdlineSize != 2047 || h.MaxCmdline() != 2016 {
		t.Errorf("cmdline_size %d, max %d; want 2047, 2016", h.CmdlineSize, h.MaxCmdline())
	}
	if err := CheckCmdline(strings.Repeat("a", 2016), h); err != nil {
		t.Errorf("2016 bytes: %v", err)
	}
	if err := CheckCmdline(strings.Repeat("a", 2017), h); !errors.Is(err, ErrNotBootable) || !strings.Contains(err.Error(), "at most 2016") {
		t.Errorf("2017 bytes: %v", err)
	}
	// The fixture other tests use has the same header values.
	fh, err := CheckKernel(fakekernel.Image(nil), 1024)
	if err != nil || fh.CmdlineSize != h.CmdlineSize || fh.Version != h.Version {
		t.Errorf("fake kernel header %+v, %v; Debian's %+v", fh, err, h)
	}
}

func TestCheckKernelRefuses(t *testing.T) {
	good := fakekernel.Image(make([]byte, 100))
	patch := func(off int, b ...byte) []byte {
		c := append([]byte(nil), good...)
		copy(c[off:], b)
		return c
	}
	for name, c := range map[string]struct {
		b    []byte
		size int64
		want string
	}{
		"short":        {good[:600], 600, "too short"},
		"no HdrS":      {patch(0x202, 'X'), int64(len(good)), "not a bzImage"},
		"no signature": {patch(0x1fe, 0, 0), int64(len(good)), "boot sector"},
		"old protocol": {patch(0x206, 0x0b, 0x02), int64(len(good)), "2.11"},
		"zImage":       {patch(0x211, 0), int64(len(good)), "zImage"},
		"32-bit":       {patch(0x236, 0x02, 0), int64(len(good)), "XLF_KERNEL_64"},
		"below 4G":     {patch(0x236, 0x01, 0), int64(len(good)), "ABOVE_4G"},
		"truncated":    {patch(0x1f1, 30), int64(len(good)), "truncated"},
	} {
		if _, err := CheckKernel(c.b, c.size); !errors.Is(err, ErrNotBootable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	h, _ := CheckKernel(good, int64(len(good)))
	if err := CheckCmdline("root=/dev/xvda1\x00evil", h); !errors.Is(err, ErrNotBootable) || !strings.Contains(err.Error(), "NUL byte at offset 15") {
		t.Errorf("NUL: %v", err)
	}
}
