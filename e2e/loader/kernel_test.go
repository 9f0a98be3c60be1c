package loader

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/loaderimg"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// kernelCases are booted twice: into the observer and into the real Debian
// kernel with an initramfs whose /init prints /proc/cmdline. Both must see
// the same command line bytes (so the kernel itself adds nothing, and the
// observer reads what the kernel would), and the kernel must have unpacked
// every initrd archive the observer saw.
var kernelCases = []struct {
	loader loaderimg.Loader
	text   string
}{
	{loaderimg.GRUB2, `source: cross-check: GRUB2 linux (32-bit entry), two initrds, quoting
kernel: /boot/vmlinuz
initrd: /boot/initrd.img
initrd: /boot/extra.img
-- boot/grub/grub.cfg --
set timeout=0
menuentry 'x' {
	linux /boot/vmlinuz root=/dev/sda1 ro "a b" c\"d 'e\f'  end
	initrd /boot/initrd.img /boot/extra.img
}
`},
	{loaderimg.GRUB2, `source: cross-check: GRUB2 linux16 (real-mode entry)
kernel: /boot/vmlinuz
initrd: /boot/initrd.img
-- boot/grub/grub.cfg --
set timeout=0
menuentry 'x' {
	linux16 /boot/vmlinuz ro quiet x=1
	initrd16 /boot/initrd.img
}
`},
	{loaderimg.Syslinux, `source: cross-check: SYSLINUX, two initrds
kernel: /vmlinuz
initrd: /initrd.img
initrd: /extra.img
-- syslinux.cfg --
DEFAULT l
LABEL l
  LINUX /vmlinuz
  APPEND root=/dev/sda1 "q r" initrd=/initrd.img,/extra.img
`},
	{loaderimg.GRUBLegacy, `source: cross-check: GRUB legacy
kernel: /boot/vmlinuz
initrd: /boot/initrd.img
-- boot/grub/menu.lst --
timeout 0
title x
root (hd0,0)
kernel /boot/vmlinuz root=/dev/hda1   ro  "x y"
initrd /boot/initrd.img
`},
}

func TestObserverMatchesRealKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
	root := testenv.RepoRoot()
	vmlinuz := filepath.Join(root, ".cache", "kernel", "vmlinuz")
	testenv.NeedFile(t, vmlinuz, "run scripts/fetch-kernel.sh")
	for _, l := range loaders {
		testenv.NeedCommands(t, loaderimg.Commands(l)...)
	}
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	observer, err := loaderimg.BuildObserver(ctx, work)
	if err != nil {
		t.Fatal(err)
	}
	initBin := filepath.Join(work, "init")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", initBin, "./internal/loaderimg/kernelinit")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build kernelinit: %v: %s", err, out)
	}
	for i, kc := range kernelCases {
		c, err := loaderimg.ParseCase(kc.loader, fmt.Sprintf("kernel-%d", i), []byte(kc.text))
		if err != nil {
			t.Fatal(err)
		}
		// Subtest names become directory names, which QEMU's option
		// syntax takes only without commas.
		name := strings.NewReplacer(",", "", " ", "_").Replace(c.Source[len("cross-check: "):])
		t.Run(string(kc.loader)+"/"+name, func(t *testing.T) {
			odir, kdir := t.TempDir(), t.TempDir()
			img, err := loaderimg.BuildDisk(ctx, c, loaderimg.ObserverPayload(observer), odir)
			if err != nil {
				t.Fatal(err)
			}
			ob, err := loaderimg.Boot(ctx, img, loaderimg.DefaultDeadline)
			if err != nil || ob.Observed == nil {
				t.Fatalf("observer boot: %v %+v %q", err, ob, tail(ob.Console, 400))
			}
			// The real kernel gets the same config; the first initrd is
			// the initramfs with /init, every one carries a marker file.
			pl := loaderimg.Payload{
				Kernel: func(string) ([]byte, error) { return readFile(vmlinuz) },
				Initrd: func(p string) ([]byte, error) {
					var ir images.Initramfs
					if p == c.Initrds[0] {
						ir.Add(images.File{Path: "/init", Source: initBin, Mode: 0o755})
					}
					ir.AddData("/vtpm/"+path.Base(p), []byte(p), 0o644)
					var b bytes.Buffer
					err := ir.WriteCPIO(&b)
					return b.Bytes(), err
				},
			}
			kimg, err := loaderimg.BuildDisk(ctx, c, pl, kdir)
			if err != nil {
				t.Fatal(err)
			}
			kb, err := loaderimg.Boot(ctx, kimg, 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			got, files, err := parseKernelReport(kb.Console)
			if err != nil {
				t.Fatalf("real kernel: %v (waited %v, %v); console tail %q", err, kb.Waited, kb.Err, tail(kb.Console, 2000))
			}
			if !bytes.Equal(got, ob.Observed.Cmdline) {
				t.Errorf("/proc/cmdline %q, observer saw %q", got, ob.Observed.Cmdline)
			}
			var want []string
			for _, p := range c.Initrds {
				want = append(want, path.Base(p))
			}
			if fmt.Sprint(files) != fmt.Sprint(sortedCopy(want)) {
				t.Errorf("initrd files unpacked by the kernel %v, want %v", files, want)
			}
			t.Logf("cmdline %q; initrds %v; observer boot %.1fs, kernel boot %.1fs", got, files, ob.Duration.Seconds(), kb.Duration.Seconds())
		})
	}
}

func parseKernelReport(console []byte) ([]byte, []string, error) {
	s := strings.ReplaceAll(string(console), "\r", "")
	i := strings.LastIndex(s, "\nVTPMKERNEL cmdline=")
	if i < 0 || !strings.Contains(s[i:], "\nVTPMKERNEL end") {
		return nil, nil, fmt.Errorf("no complete VTPMKERNEL report")
	}
	var cmdline []byte
	var files []string
	for _, l := range strings.Split(s[i+1:], "\n") {
		if v, ok := strings.CutPrefix(l, "VTPMKERNEL cmdline="); ok {
			b, err := hex.DecodeString(v)
			if err != nil {
				return nil, nil, err
			}
			cmdline = b
		}
		if v, ok := strings.CutPrefix(l, "VTPMKERNEL initrd-file="); ok {
			files = append(files, v)
		}
	}
	return cmdline, files, nil
}
