//go:build linux

package stub

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/kexec"
)

// The sysfs layouts are the ones a Xen HVM guest and a QEMU guest show:
// xenbus names its devices vtpm-<id>, ACPI <HID>:<instance>.
func TestTPMAnnounced(t *testing.T) {
	for name, tc := range map[string]struct {
		dirs []string
		want bool
	}{
		"xen guest, no vtpm":  {[]string{"bus/xen/devices/vbd-51712", "bus/acpi/devices/PNP0A03:00"}, false},
		"xen guest with vtpm": {[]string{"bus/xen/devices/vbd-51712", "bus/xen/devices/vtpm-0", "bus/acpi/devices/PNP0A03:00"}, true},
		"qemu tpm2 crb/tis":   {[]string{"bus/acpi/devices/MSFT0101:00"}, true},
		"qemu tpm1.2 tis":     {[]string{"bus/acpi/devices/PNP0C31:00"}, true},
		"qemu, no tpm":        {[]string{"bus/acpi/devices/PNP0A03:00", "bus/acpi/devices/PNP0501:00"}, false},
		"already registered":  {[]string{"bus/acpi/devices/PNP0A03:00", "class/tpm/tpm0"}, true},
		"cannot tell":         {[]string{"bus/platform/devices/serial8250"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range tc.dirs {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if got := tpmAnnounced(root); got != tc.want {
				t.Errorf("tpmAnnounced = %v, want %v", got, tc.want)
			}
		})
	}
}

// The real machine's images are sealed memfds: they hold exactly what was
// read, nothing can write them, and KexecLoad refuses an image it did not
// make.
func TestMachineImages(t *testing.T) {
	m := &Machine{}
	im, err := m.NewImage("/boot/"+strings.Repeat("long name ", 40), strings.NewReader("kernel bytes"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	b := make([]byte, im.Size())
	if _, err := im.ReadAt(b, 0); err != nil || string(b) != "kernel bytes" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if _, err := im.(*kexec.Image).File().WriteAt([]byte("X"), 0); err == nil {
		t.Error("a sealed image could be written")
	}
	if err := m.KexecLoad(struct{ Image }{im}, nil, ""); err == nil || !strings.Contains(err.Error(), "not made by NewImage") {
		t.Errorf("foreign image: %v", err)
	}
}
