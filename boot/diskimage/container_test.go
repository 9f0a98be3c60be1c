package diskimage

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// TestContainerFormats converts a real MBR disk with qemu-img into every
// container format QEMU writes: a fixed VHD reads exactly as the raw disk,
// everything else is refused naming the format and the conversion.
func TestContainerFormats(t *testing.T) {
	testenv.NeedCommands(t, "qemu-img")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "boot", "grub", "grub.cfg"), []byte("menuentry x {\n}\n"))
	raw, _ := buildDisk(t, "label: dos\nstart=2048, type=83\n", 8, map[int]string{1: mkext(t, src, "6M")})
	dir := t.TempDir()
	for _, tc := range []struct {
		format, opts, want string
	}{
		{"qcow2", "", "a qcow2 image"},
		{"qcow", "", "a qcow image"},
		{"qed", "", "a qed image"},
		{"vdi", "", "a vdi image"},
		{"vmdk", "", "a vmdk image"},
		{"vhdx", "", "a vhdx image"},
		{"vpc", "subformat=dynamic", "a dynamic VHD image"},
		{"vpc", "subformat=fixed", ""},
	} {
		name := tc.format + strings.ReplaceAll(tc.opts, "subformat=", "-")
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(dir, name)
			args := []string{"convert", "-O", tc.format}
			if tc.opts != "" {
				args = append(args, "-o", tc.opts)
			}
			sh(t, "qemu-img", append(args, raw, out)...)
			im, err := Open(out)
			if tc.want != "" {
				wantErr(t, err, out, tc.want, "qemu-img convert -O raw "+out+" "+out+".raw")
				if !errors.Is(err, ErrContainer) {
					t.Errorf("%v is not ErrContainer", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			ps := im.Partitions()
			if len(ps) != 1 || ps[0].Index != 1 || ps[0].FS == nil {
				t.Fatalf("partitions %+v", ps)
			}
			b, err := fs.ReadFile(ps[0].FS, "boot/grub/grub.cfg")
			if err != nil || string(b) != "menuentry x {\n}\n" {
				t.Errorf("grub.cfg = %q, %v", b, err)
			}
		})
	}
	t.Run("vpc-fixed-bare", func(t *testing.T) {
		// A bare filesystem is the whole disk: its size shows the footer
		// is not part of it. qemu-img info -f vpc (a fixed VHD probes as raw:
		// its only signature is at the end) gives the guest's disk size.
		out := filepath.Join(dir, "bare.vhd")
		sh(t, "qemu-img", "convert", "-O", "vpc", "-o", "subformat=fixed", mkext(t, src, "6M"), out)
		var info struct {
			VirtualSize int64 `json:"virtual-size"`
		}
		if err := json.Unmarshal([]byte(sh(t, "qemu-img", "info", "-f", "vpc", "--output=json", out)), &info); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(out)
		if info.VirtualSize != st.Size()-512 {
			t.Fatalf("qemu-img: virtual size %d of a %d-byte file", info.VirtualSize, st.Size())
		}
		_, p := openBare(t, out)
		if p.Size != info.VirtualSize {
			t.Errorf("whole disk is %d bytes, qemu-img says %d", p.Size, info.VirtualSize)
		}
	})
	t.Run("vhd-footer-checksum", func(t *testing.T) {
		out := filepath.Join(dir, "bad.vhd")
		sh(t, "qemu-img", "convert", "-O", "vpc", "-o", "subformat=fixed", raw, out)
		st, _ := os.Stat(out)
		f, _ := os.OpenFile(out, os.O_RDWR, 0)
		f.WriteAt([]byte{0xff}, st.Size()-512+48) // current size, checksum left stale
		f.Close()
		_, err := Open(out)
		wantErr(t, err, out, "VHD footer checksum")
	})
}
