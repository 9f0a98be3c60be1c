package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

var (
	guestOnce   sync.Once
	guestInitrd string
	guestPcrsim []byte
	guestErr    error
)

// guestParts builds the installed system's initrd (targetinit with the
// modules to mount its own disk: virtio_pci, virtio_blk, ext4) and a
// static pcrsim for its /usr/local/bin.
func guestParts(t *testing.T, p *Parts) (string, []byte) {
	guestOnce.Do(func() {
		root := testenv.RepoRoot()
		ctx := context.Background()
		ir, _, err := images.Stub(ctx, images.StubOptions{
			Init:       images.GoBuild{Package: "./internal/target/targetinit", Dir: root},
			ModulesDir: filepath.Join(KernelDir(root), "modules"),
			Modules:    []string{"virtio_pci", "virtio_blk", "ext4"},
		})
		if err != nil {
			guestErr = err
			return
		}
		guestInitrd = filepath.Join(filepath.Dir(p.Stub), "guest.cpio.gz")
		if guestErr = ir.WriteFile(guestInitrd); guestErr != nil {
			return
		}
		guestPcrsim, guestErr = images.GoBuild{Package: "./cmd/pcrsim", Dir: root}.Binary(ctx)
	})
	if guestErr != nil {
		t.Fatalf("building the guest's parts: %v", guestErr)
	}
	return guestInitrd, guestPcrsim
}

// TestGuest is the guest admin's day, under TPM 1.2 and 2.0: boot an
// installed system (/ on vda1, /boot on vda2, as Debian lays it out) through
// the stub; inside it, `pcrsim verify --current` and `--eventlog
// binary_bios_measurements` must exit 0; after a kernel update (the booted
// kernel file grows, grub.cfg's command line changes) `verify --current`
// must exit 1 and `pcrsim predict --root /` predicts the next boot. Then
// the same disk boots again with the same swtpm state: its PCR 4 and 5
// must be the prediction, in every bank, and `verify --current` exits 0
// again. The GRUB device in BOOT_IMAGE= is (hd0,msdos2), so a prediction
// that took / with its mounted /boot as one partition would be wrong in
// PCR 5.
func TestGuest(t *testing.T) {
	t.Parallel()
	p := needParts(t)
	initrd, bin := guestParts(t, p)
	rel, err := os.ReadFile(filepath.Join(KernelDir(testenv.RepoRoot()), "release"))
	if err != nil {
		t.Fatal(err)
	}
	kname := "vmlinuz-" + strings.TrimSpace(string(rel))
	testenv.NeedCommands(t, "busybox")
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []pcrbank.Version{pcrbank.Version12, pcrbank.Version20} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			banks := "sha1"
			if v == pcrbank.Version20 {
				banks = "sha1,sha256,sha384,sha512"
			}
			text := func(path, s string) guestdisk.File { return guestdisk.File{Path: path, Data: []byte(s)} }
			cfg := `set default=0
set timeout=5
menuentry 'Debian GNU/Linux (e2e guest)' {
	linux ($root)/` + kname + ` root=/dev/vda1 ro console=ttyS0 panic=-1 quiet e2e.guest=1 e2e.kernel=/boot/` + kname + ` e2e.banks=` + banks + `
	initrd /initrd.img
}
`
			// The hook as make install writes it, with busybox for its shell.
			hookSrc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "packaging", "hooks", "zz-vtpmboot-predict"))
			if err != nil {
				t.Fatal(err)
			}
			hookFiles := []guestdisk.File{
				{Path: "/etc/kernel/postinst.d/zz-vtpmboot-predict", Data: bytes.ReplaceAll(hookSrc, []byte("@BINDIR@"), []byte("/usr/local/bin")), Mode: 0o755},
				text("/etc/default/vtpmboot-predict", "VTPMBOOT_PREDICT=yes\nVTPMBOOT_PREDICT_ARGS=\"--bank "+banks+"\"\n"),
				{Path: "/bin/busybox", Source: busybox, Mode: 0o755},
				text("/var/lib/.keep", ""),
			}
			for _, app := range []string{"sh", "mkdir", "mktemp", "chmod", "mv", "rm", "echo"} {
				hookFiles = append(hookFiles, guestdisk.File{Path: "/bin/" + app, Symlink: "busybox"})
			}
			disk := filepath.Join(t.TempDir(), "disk.img")
			if err := guestdisk.Build(guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 32, Label: "root", Files: append([]guestdisk.File{
					{Path: "/usr/local/bin/pcrsim", Data: bin, Mode: 0o755},
					// Mount points: the disk has them, as an installed system does.
					text("/boot/.mountpoint", ""), text("/proc/.mountpoint", ""), text("/sys/.mountpoint", ""), text("/dev/.mountpoint", ""),
					text("/etc/fstab", "/dev/vda1 / ext4 defaults 0 1\n/dev/vda2 /boot ext4 defaults 0 2\n"),
				}, hookFiles...)},
				{FS: "ext4", SizeMB: 48, Label: "boot", Files: []guestdisk.File{
					text("/grub/grub.cfg", cfg),
					{Path: "/" + kname, Source: p.Kernel},
					{Path: "/initrd.img", Source: initrd},
				}},
			}}, disk); err != nil {
				t.Fatal(err)
			}
			state := t.TempDir()
			one := guestBoot(t, p, disk, state, v)
			wantCmdline := "BOOT_IMAGE=(hd0,msdos2)/" + kname + " root=/dev/vda1 ro console=ttyS0 panic=-1 quiet e2e.guest=1 e2e.kernel=/boot/" + kname + " e2e.banks=" + banks + "\n"
			if one.Cmdline != wantCmdline {
				t.Errorf("first boot /proc/cmdline %q, want %q", one.Cmdline, wantCmdline)
			}
			wantExit(t, one, "verify-current", "0")
			wantExit(t, one, "verify-eventlog", "0")
			wantExit(t, one, "verify-updated", "1")
			if out := one.Extra["verify-updated-out"]; !strings.Contains(out, "MISMATCH") {
				t.Errorf("verify --current after the update shows no mismatch:\n%s", out)
			}
			wantExit(t, one, "predict", "0")
			var doc pcrfile.JSONDoc
			if err := json.Unmarshal([]byte(one.Extra["predict-out"]), &doc); err != nil {
				t.Fatalf("predict output: %v\n%s", err, one.Extra["predict-out"])
			}

			// The kernel postinst hook wrote the same prediction, and its
			// sealing format (pcrsim policy json) of it.
			wantExit(t, one, "hook", "0")
			if got := one.Extra["hook-next-boot.json"]; got != one.Extra["predict-out"] {
				t.Errorf("hook's next-boot.json differs from pcrsim predict --root /:\n%s\nvs\n%s\nhook stderr: %s", got, one.Extra["predict-out"], one.Extra["hook-err"])
			}
			if !strings.Contains(one.Extra["hook-next-boot.policy.json"], "sha1") {
				t.Errorf("hook's next-boot.policy.json: %q", one.Extra["hook-next-boot.policy.json"])
			}

			two := guestBoot(t, p, disk, state, v)
			if !strings.Contains(two.Cmdline, "e2e.guest=2") {
				t.Fatalf("second boot did not boot the updated entry: %q", two.Cmdline)
			}
			wantExit(t, two, "verify-current", "0")
			wantExit(t, two, "verify-eventlog", "0")
			for _, a := range PCRs(two.PCRs).Banks() {
				for _, i := range []int{4, 5} {
					want, err := hex.DecodeString(doc.Banks[a.String()][string(rune('0'+i))])
					if err != nil || !bytes.Equal(want, two.PCRs[a][i]) {
						t.Errorf("%v PCR %d: predicted before the reboot %x, the next boot's TPM has %x", a, i, want, two.PCRs[a][i])
					}
				}
				if bytes.Equal(one.PCRs[a][4], two.PCRs[a][4]) || bytes.Equal(one.PCRs[a][5], two.PCRs[a][5]) {
					t.Errorf("%v: PCR 4 or 5 did not change with the update", a)
				}
			}
			if len(PCRs(two.PCRs).Banks()) == 0 {
				t.Error("second boot reports no PCRs")
			}
		})
	}
}

func guestBoot(t *testing.T, p *Parts, disk, state string, v pcrbank.Version) *qemutest.TargetReport {
	t.Helper()
	res := boot(t, qemutest.Options{
		Kernel: p.Kernel, Initrd: p.Stub, Append: StubAppend("quiet"),
		Disks: []qemutest.Disk{{Path: disk}}, TPM: v, TPMStateDir: state,
	})
	if f := FatalLines(res.Console); len(f) > 0 || res.ExitErr != nil {
		t.Fatalf("stub failed (QEMU exit %v): %q\n%s", res.ExitErr, f, res.Tail(6000))
	}
	r, err := qemutest.ParseTarget(res.Console)
	if err != nil {
		t.Fatalf("no report from the guest: %v\n%s", err, res.Tail(6000))
	}
	if len(r.Errors) > 0 {
		t.Errorf("guest reported errors: %q", r.Errors)
	}
	return r
}

func wantExit(t *testing.T, r *qemutest.TargetReport, name, code string) {
	t.Helper()
	if got := r.Extra[name+"-exit"]; got != code {
		t.Errorf("in the guest, pcrsim %s exited %q, want %s\nstdout:\n%s\nstderr:\n%s", name, got, code, r.Extra[name+"-out"], r.Extra[name+"-err"])
	}
}
