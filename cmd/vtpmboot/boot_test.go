//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/e2e/report"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

func fileSHA256(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return s[:]
}

func h(parts ...[]byte) []byte {
	s := sha256.New()
	for _, p := range parts {
		s.Write(p)
	}
	return s.Sum(nil)
}

// TestRealBoot is the one real proof of the stub: the Debian kernel boots
// the stub initramfs under QEMU with an swtpm TPM 2.0, the stub finds a
// grub.cfg on a virtio disk (whose ext4 journal is dirty), measures and
// kexecs the Debian kernel with a target initrd that reports the PCRs.
// Expected PCRs are computed here with crypto/sha256 from the files, on
// top of PCR 4's firmware value replayed from the firmware's own log.
func TestRealBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU (about a minute)")
	}
	testenv.NeedCommands(t, "qemu-system-x86_64", "swtpm", "mkfs.ext4", "sfdisk", "debugfs")
	root := testenv.RepoRoot()
	kdir := filepath.Join(root, ".cache", "kernel")
	testenv.NeedFile(t, filepath.Join(kdir, "vmlinuz"), "run scripts/fetch-kernel.sh")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	stub, _, err := images.Stub(ctx, images.StubOptions{Init: images.GoBuild{Package: "./cmd/vtpmboot", Dir: root}, ModulesDir: filepath.Join(kdir, "modules")})
	if err != nil {
		t.Fatal(err)
	}
	stubPath := filepath.Join(dir, "stub.cpio.gz")
	if err := stub.WriteFile(stubPath); err != nil {
		t.Fatal(err)
	}
	tbin, err := images.GoBuild{Package: "./internal/e2e/targetinit", Dir: root}.Binary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target := &images.Initramfs{}
	target.AddData("init", tbin, 0o755)
	for _, d := range []string{"dev", "proc", "sys"} {
		target.Add(images.File{Path: d, Dir: true})
	}
	targetPath := filepath.Join(dir, "target.cpio.gz")
	if err := target.WriteFile(targetPath); err != nil {
		t.Fatal(err)
	}
	grub := "set default=1\nmenuentry 'wrong' {\n linux /boot/nope\n}\nmenuentry 'Debian target' {\n linux /boot/vmlinuz console=ttyS0 panic=-1 quiet\n initrd /boot/target.img\n}\n"
	disk := filepath.Join(dir, "disk.img")
	if err := guestdisk.Build(guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 64, Label: "guestboot", DirtyJournal: true, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte(grub)},
		{Path: "/boot/vmlinuz", Source: filepath.Join(kdir, "vmlinuz")},
		{Path: "/boot/target.img", Source: targetPath},
	}}}}, disk); err != nil {
		t.Fatal(err)
	}
	diskBefore := fileSHA256(t, disk)

	state := filepath.Join(dir, "tpm")
	os.MkdirAll(state, 0o700)
	sock := filepath.Join(state, "sock")
	sw := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state, "--ctrl", "type=unixio,path="+sock, "--terminate", "--flags", "startup-clear")
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sw.Process.Kill(); sw.Wait() }()
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}

	q := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "1024", "-smp", "1",
		"-nographic", "-no-reboot", "-serial", "stdio", "-monitor", "none",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", stubPath,
		"-append", "console=ttyS0 panic=-1 quiet vtpmboot.debug",
		"-drive", "file="+disk+",if=virtio,format=raw",
		"-chardev", "socket,id=chrtpm,path="+sock, "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0")
	var console bytes.Buffer
	q.Stdout, q.Stderr = &console, &console
	start := time.Now()
	err = q.Run()
	t.Logf("QEMU ran %v", time.Since(start).Round(time.Millisecond))
	out := console.String()
	os.WriteFile(filepath.Join(os.TempDir(), "vtpmboot-realboot.log"), console.Bytes(), 0o644)
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	for _, m := range regexp.MustCompile(`vtpmboot: phase \S+ \d+ms`).FindAllString(out, -1) {
		t.Log(m)
	}
	if strings.Contains(out, "FATAL") {
		t.Fatalf("stub failed:\n%s", out)
	}
	rep, err := report.Parse(out)
	if err != nil {
		t.Fatalf("target report: %v\n%s", err, out)
	}
	wantCmdline := "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 panic=-1 quiet"
	if strings.TrimSuffix(rep.Cmdline, "\n") != wantCmdline {
		t.Errorf("target /proc/cmdline %q, want %q", rep.Cmdline, wantCmdline)
	}
	// SeaBIOS measured into PCR 4 before the stub; replay its log (read by
	// the booted target) for the starting value.
	fw, err := eventlog.Parse(rep.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	soft, _ := tpmfront.NewSoft([]tpmfront.Alg{tpmfront.SHA256})
	if err := fw.Replay(soft); err != nil {
		t.Fatal(err)
	}
	init4, _ := soft.ReadPCR(4, tpmfront.SHA256)
	init5, _ := soft.ReadPCR(5, tpmfront.SHA256)
	want4 := h(init4, fileSHA256(t, filepath.Join(kdir, "vmlinuz")))
	want5 := h(h(init5, h([]byte(wantCmdline))), fileSHA256(t, targetPath))
	if got := rep.PCRs[tpmfront.SHA256][4]; !bytes.Equal(got, want4) {
		t.Errorf("PCR 4 = %x, want %x", got, want4)
	}
	if got := rep.PCRs[tpmfront.SHA256][5]; !bytes.Equal(got, want5) {
		t.Errorf("PCR 5 = %x, want %x", got, want5)
	}
	if !bytes.Equal(fileSHA256(t, disk), diskBefore) {
		t.Error("the guest disk changed (dirty journal replayed?)")
	}
}
