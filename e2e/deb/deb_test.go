// Package deb tests the Debian package the way an admin meets it: built
// with `make deb` (lintian errors fail the build), installed with
// `apt-get install ./vtpmboot_*.deb` into a throwaway Debian 12 root made
// with debootstrap from Debian's packages (never on this machine, which the
// rest of the suite shares), and run there with no Go anywhere on PATH.
//
// The root is cached as a tarball under .cache/debroot (debootstrap takes
// minutes; extracting it takes seconds). Everything runs as root, in a
// private mount namespace (unshare -m) so the /proc, /dev and kernel module
// mounts vanish with the command.
package deb

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// rootPackages are installed into the Debian root beforehand: the
// package's Depends (so apt-get resolves them offline) and initramfs-tools
// for the update-initramfs hook. Changing the list makes a new cache.
var rootPackages = []string{"swtpm", "swtpm-tools", "initramfs-tools"}

const suite = "bookworm"

func mirror() string {
	if m := os.Getenv("VTPMBOOT_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// debianRoot returns the cached tarball of a minbase Debian 12 root with
// rootPackages, making it with debootstrap when missing.
func debianRoot(t *testing.T, repo string) string {
	t.Helper()
	key := sha256.Sum256([]byte(suite + " " + strings.Join(rootPackages, ",")))
	dir := filepath.Join(repo, ".cache", "debroot")
	tarball := filepath.Join(dir, fmt.Sprintf("%s-%x.tar", suite, key[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Two test runs at once must not debootstrap twice into one place.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tarball); err == nil {
		return tarball
	}
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	start := time.Now()
	target := filepath.Join(work, "root")
	run(t, "debootstrap", "--variant=minbase", "--include="+strings.Join(rootPackages, ","), suite, target, mirror())
	// No package lists are kept: apt-get must resolve the .deb's Depends
	// from what is installed, as on an offline machine.
	run(t, "tar", "-C", target, "--numeric-owner", "-cf", tarball+".tmp", ".")
	if err := os.Rename(tarball+".tmp", tarball); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap %s (%s): %v, cached in %s", suite, strings.Join(rootPackages, " "), time.Since(start).Round(time.Second), tarball)
	return tarball
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out.String())
	}
	return out.String()
}

// buildDeb runs make deb, or takes VTPMBOOT_DEB (one make deb built).
func buildDeb(t *testing.T, repo string) string {
	t.Helper()
	if p := os.Getenv("VTPMBOOT_DEB"); p != "" {
		return p
	}
	start := time.Now()
	cmd := exec.Command("make", "-s", "deb")
	cmd.Dir = repo
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make deb: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Fields(stdout.String())
	if len(lines) == 0 {
		t.Fatalf("make deb printed no package:\n%s", stderr.String())
	}
	deb := filepath.Join(repo, lines[len(lines)-1])
	// lintian's verdict is part of make deb; its warnings are shown here.
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "W: ") || strings.HasPrefix(l, "E: ") {
			t.Logf("lintian: %s", l)
		}
	}
	t.Logf("make deb: %s in %v", filepath.Base(deb), time.Since(start).Round(time.Second))
	return deb
}

// chroot is an extracted Debian root.
type chroot struct {
	t          *testing.T
	dir        string
	release    string // the kernel's, mounted at /lib/modules/<release>
	modulesDir string
}

// sh runs a shell script in the root with a clean environment (PATH has
// no Go) and returns its combined output.
func (c *chroot) sh(script string) (string, error) {
	c.t.Helper()
	mods := filepath.Join(c.dir, "lib", "modules", c.release)
	outer := strings.Join([]string{
		"set -e",
		`mount -t proc proc "$R/proc"`,
		`mount --rbind /dev "$R/dev"`,
		`mount --bind -o ro "$M" "$R/lib/modules/$V"`,
		`exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 /bin/sh -ec "$S"`,
	}, "\n")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", outer)
	cmd.Env = append(os.Environ(), "R="+c.dir, "M="+c.modulesDir, "V="+c.release, "S=cd /root\n"+script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *chroot) must(script string) string {
	c.t.Helper()
	out, err := c.sh(script)
	if err != nil {
		c.t.Fatalf("in the Debian root: %s\n%v\n%s", script, err, out)
	}
	return out
}

func (c *chroot) read(p string) []byte {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, p))
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

func (c *chroot) write(p string, b []byte) {
	c.t.Helper()
	p = filepath.Join(c.dir, p)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// installed extracts the root, installs the package with apt-get and
// checks that no Go is reachable.
func installed(t *testing.T) (*chroot, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the package and a Debian root; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("e2e/deb needs root (chroot, mounts in a private namespace); CI runs as root")
	}
	testenv.NeedCommands(t, "make", "dpkg-buildpackage", "lintian", "debootstrap", "unshare", "chroot", "tar", "go", "man")
	repo := testenv.RepoRoot()
	kdir := filepath.Join(repo, ".cache", "kernel")
	testenv.NeedFile(t, filepath.Join(kdir, "vmlinuz"), "run scripts/fetch-kernel.sh")
	deb := buildDeb(t, repo)
	tarball := debianRoot(t, repo)
	rel, err := os.ReadFile(filepath.Join(kdir, "release"))
	if err != nil {
		t.Fatal(err)
	}
	c := &chroot{t: t, dir: filepath.Join(t.TempDir(), "root"), release: strings.TrimSpace(string(rel)), modulesDir: filepath.Join(kdir, "modules")}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run(t, "tar", "-C", c.dir, "--numeric-owner", "-xpf", tarball)
	run(t, "cp", deb, filepath.Join(c.dir, "root"))
	run(t, "cp", filepath.Join(kdir, "vmlinuz"), filepath.Join(c.dir, "boot", "vmlinuz-"+c.release))
	t.Logf("Debian root extracted in %v", time.Since(start).Round(time.Millisecond))

	if out, err := c.sh("command -v go || ls /usr/local/go"); err == nil {
		t.Fatalf("the Debian root has a Go: %s", out)
	}
	start = time.Now()
	out := c.must("DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./" + filepath.Base(deb) + " 2>&1")
	t.Logf("apt-get install in %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "Setting up vtpmboot") {
		t.Fatalf("apt-get install did not set up vtpmboot:\n%s", out)
	}
	return c, deb
}

// TestInstalled installs the package once and runs the commands, then the
// initramfs hook, in that root.
func TestInstalled(t *testing.T) {
	c, deb := installed(t)
	t.Run("commands", func(t *testing.T) { c.t = t; testCommands(t, c, deb) })
	t.Run("initramfs-hook", func(t *testing.T) { c.t = t; testInitramfsHook(t, c) })
}

// testCommands: each installed command answers --version, the man pages
// and completion are where man and bash look, mkstub builds a stub from
// Debian's kernel outside any source tree, the same initramfs as the tree
// builds, and pcrsim predicts a real disk image as the contract says.
func testCommands(t *testing.T, c *chroot, deb string) {
	version := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version"))
	for _, cmd := range []string{"pcrsim", "mkstub", "vtpmback", "/usr/lib/vtpmboot/vtpmboot-loader"} {
		out := c.must(cmd + " --version")
		name := cmd[strings.LastIndexByte(cmd, '/')+1:]
		if !strings.HasPrefix(out, name+" ") {
			t.Errorf("%s --version: %q", cmd, out)
		}
		if !strings.Contains(out, version) {
			t.Errorf("%s --version %q does not name the package version %s", cmd, out, version)
		}
	}
	for _, f := range []string{
		"usr/share/man/man1/pcrsim.1.gz", "usr/share/man/man1/mkstub.1.gz", "usr/share/man/man8/vtpmback.8.gz", "usr/share/man/man8/vtpmboot-loader.8.gz",
		"usr/share/bash-completion/completions/pcrsim", "usr/lib/vtpmboot/init",
		"etc/kernel/postinst.d/zz-vtpmboot-predict", "etc/initramfs/post-update.d/zz-vtpmboot-predict",
		"lib/systemd/system/vtpmboot-predict.path",
	} {
		if _, err := os.Stat(filepath.Join(c.dir, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	// man(1) renders each page (the root's minbase has no man).
	for page, want := range map[string]string{"man1/pcrsim.1.gz": "pcrsim - predict", "man1/mkstub.1.gz": "mkstub - build", "man8/vtpmback.8.gz": "vtpmback - own and serve", "man8/vtpmboot-loader.8.gz": "vtpmboot-loader - measuring bootloader="} {
		cmd := exec.Command("man", "--warnings", "-l", filepath.Join(c.dir, "usr/share/man", page))
		cmd.Env = append(os.Environ(), "MANWIDTH=100", "LC_ALL=C.UTF-8")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) || strings.Contains(string(out), "warning") {
			t.Errorf("man -l %s: %v\n%s", page, err, out)
		}
	}
	if out := c.must("dpkg-query -W -f '${Status} ${Version}' vtpmboot"); out != "install ok installed "+version {
		t.Errorf("dpkg-query: %q", out)
	}

	// mkstub from Debian's kernel in /root, which is no source tree.
	out := c.must(fmt.Sprintf("mkstub --kernel /boot/vmlinuz-%[1]s --modules /lib/modules/%[1]s -o /root/stub", c.release))
	if !strings.Contains(out, "init: /usr/lib/vtpmboot/init\n") {
		t.Errorf("mkstub did not pack the installed /init:\n%s", out)
	}
	got := c.read("root/stub/vtpmboot.cpio.gz")
	sum := sha256.Sum256(got)
	if !strings.Contains(out, hex.EncodeToString(sum[:])+"  /root/stub/vtpmboot.cpio.gz") {
		t.Errorf("mkstub's printed sha256 is not the file's %x:\n%s", sum, out)
	}
	// The reproducibility guarantee across the two ways: the tree's
	// /init (built here with go) and the same kernel give the same bytes.
	ir, _, err := images.Stub(t.Context(), images.StubOptions{
		Init:       images.GoBuild{Package: images.DefaultInitPackage, Dir: testenv.RepoRoot()},
		ModulesDir: c.modulesDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(t.TempDir(), "tree.cpio.gz")
	if err := ir.WriteFile(want); err != nil {
		t.Fatal(err)
	}
	wb, _ := os.ReadFile(want)
	if !bytes.Equal(got, wb) {
		ws := sha256.Sum256(wb)
		t.Errorf("installed mkstub's initramfs %x differs from the source tree's %x", sum, ws)
	}

	// pcrsim predicts a disk made with real mkfs.
	rng := rand.New(rand.NewSource(21))
	rnd := func(n int) []byte { b := make([]byte, n); rng.Read(b); return b }
	k, i1 := fakekernel.Image(rnd(2<<20)), rnd(1<<20+3)
	img := filepath.Join(c.dir, "root", "guest.img")
	if err := guestdisk.Build(guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 16, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set default=0\nset timeout=5\nmenuentry 'Debian GNU/Linux' {\n\tlinux /boot/vmlinuz root=/dev/xvda1 ro quiet\n\tinitrd /boot/initrd.img\n}\n")},
		{Path: "/boot/vmlinuz", Data: k}, {Path: "/boot/initrd.img", Data: i1},
	}}}}, img); err != nil {
		t.Fatal(err)
	}
	boot := contract.Boot{Kernel: k, Initrds: [][]byte{i1}, Cmdline: "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 ro quiet"}
	checkPrediction(t, []byte(c.must("pcrsim predict --disk /root/guest.img --format json")), boot)
}

// predictionDoc is the part of pcrsim's JSON this test reads.
type predictionDoc struct {
	Banks map[string]map[string]string `json:"banks"`
}

// checkPrediction compares pcrsim's PCR 4 and 5 with the contract oracle.
func checkPrediction(t *testing.T, js []byte, b contract.Boot) {
	t.Helper()
	var d predictionDoc
	if err := json.Unmarshal(js, &d); err != nil {
		t.Fatalf("pcrsim JSON: %v\n%s", err, js)
	}
	for bank, h := range map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256} {
		if g, w := d.Banks[bank]["4"], hex.EncodeToString(b.PCR4(h, nil)); g != w {
			t.Errorf("%s PCR 4: pcrsim %s, contract %s", bank, g, w)
		}
		if g, w := d.Banks[bank]["5"], hex.EncodeToString(b.PCR5(h, nil)); g != w {
			t.Errorf("%s PCR 5: pcrsim %s, contract %s", bank, g, w)
		}
	}
}

// pcrsimStandIn replaces the installed pcrsim for `predict --root /` only:
// --root / reads the block devices of a booted system (/sys/class/block,
// /proc/self/mountinfo), which a chroot does not have; e2e TestGuest tests
// that part in a QEMU guest. Here it predicts the same boot from the files,
// so the values still show which initrd the hook saw. Every call is logged.
const pcrsimStandIn = `#!/bin/sh
echo "$*" >>/root/pcrsim-calls
if [ "$1 $2 $3" = "predict --root /" ]; then
  shift 3
  exec /usr/bin/pcrsim.distrib predict --kernel /boot/vmlinuz-%[1]s --initrd /boot/initrd.img-%[1]s --cmdline "root=/dev/xvda1 ro" "$@"
fi
exec /usr/bin/pcrsim.distrib "$@"
`

// testInitramfsHook: Debian's own update-initramfs -u (initramfs-tools from
// Debian's packages) runs the installed post-update.d hook, which writes the
// next boot's prediction for the initrd it has just written; a second
// update with different contents refreshes it. Off by default, and skipped
// during a kernel package's configure (the kernel hook predicts after
// zz-update-grub there).
func testInitramfsHook(t *testing.T, c *chroot) {
	const next = "var/lib/vtpmboot/next-boot.json"
	// A small initrd: only the modules listed, gzip (no zstd in minbase).
	c.write("etc/initramfs-tools/conf.d/zz-vtpmboot-test", []byte("MODULES=list\nCOMPRESS=gzip\n"))
	// mkinitramfs checks the kernel's config for its compressor;
	// scripts/fetch-kernel.sh keeps only vmlinuz and the modules, and
	// Debian's 6.1 config has CONFIG_RD_GZIP=y.
	c.write("boot/config-"+c.release, []byte("CONFIG_RD_GZIP=y\n"))
	start := time.Now()
	c.must("update-initramfs -c -k " + c.release + " 2>&1")
	t.Logf("update-initramfs -c: %v", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(c.dir, next)); err == nil {
		t.Fatal("the hook predicted although /etc/default/vtpmboot-predict leaves it off")
	}
	c.must("dpkg-divert --local --rename --add /usr/bin/pcrsim >/dev/null")
	c.write("usr/bin/pcrsim", []byte(fmt.Sprintf(pcrsimStandIn, c.release)))
	if err := os.Chmod(filepath.Join(c.dir, "usr/bin/pcrsim"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.must("echo VTPMBOOT_PREDICT=yes >>/etc/default/vtpmboot-predict")

	kernel := c.read("boot/vmlinuz-" + c.release)
	var last []byte
	for _, mod := range []string{"ext4", "xfs"} {
		// A new module in the initrd, as a cryptsetup or microcode
		// trigger would change it: same kernel, new PCR 5.
		c.must("echo " + mod + " >>/etc/initramfs-tools/modules")
		os.Remove(filepath.Join(c.dir, next))
		start := time.Now()
		out := c.must("update-initramfs -u -k " + c.release + " 2>&1")
		t.Logf("update-initramfs -u (+%s): %v", mod, time.Since(start).Round(time.Millisecond))
		if !strings.Contains(out, "next-boot.json") {
			t.Errorf("update-initramfs -u did not run the prediction:\n%s", out)
		}
		initrd := c.read("boot/initrd.img-" + c.release)
		if bytes.Equal(initrd, last) {
			t.Fatalf("adding %s did not change the initrd", mod)
		}
		last = initrd
		checkPrediction(t, c.read(next), contract.Boot{Kernel: kernel, Initrds: [][]byte{initrd}, Cmdline: "root=/dev/xvda1 ro"})
	}
	if calls := string(c.read("root/pcrsim-calls")); strings.Count(calls, "predict --root /") != 2 {
		t.Errorf("pcrsim calls:\n%s", calls)
	}

	// The hook as run-parts runs it, inside a kernel package's configure
	// and inside another package's trigger.
	os.Remove(filepath.Join(c.dir, next))
	hook := "/etc/initramfs/post-update.d/zz-vtpmboot-predict " + c.release + " /boot/initrd.img-" + c.release
	c.must("DPKG_MAINTSCRIPT_PACKAGE=linux-image-" + c.release + " " + hook)
	if _, err := os.Stat(filepath.Join(c.dir, next)); err == nil {
		t.Error("the hook predicted during a kernel package's configure, before zz-update-grub")
	}
	c.must("DPKG_MAINTSCRIPT_PACKAGE=intel-microcode " + hook + " 2>&1")
	if _, err := os.Stat(filepath.Join(c.dir, next)); err != nil {
		t.Errorf("the hook did not predict from another package's trigger: %v", err)
	}
}
