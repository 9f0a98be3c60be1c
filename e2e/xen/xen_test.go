// Package xen is the Xen end-to-end suite: one boot of real Xen 4.17
// (Debian's) under QEMU TCG, whose dom0 starts guests with xl: HVM and PVH
// guests that boot the stub from kernel=/ramdisk=, through the vTPM that
// cmd/vtpmback creates and serves from swtpm, and PV and PVH guests that
// cmd/vtpmboot-loader boots as xl's bootloader=. What each guest must show
// is in guests(); docs/xen.md says what this proves and what it does not.
package xen

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/e2e"
	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/internal/xentest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// guest is one domU of the suite.
type guest struct {
	name string
	typ  string // xl type=: "hvm" or "pvh"
	// tpm is the vTPM behind xen-tpmfront: "" none, "1.2" or "2.0".
	tpm    string
	policy string // vtpmboot.tpm=
	// fatal, if set, is the stub's one FATAL line (prefix): the target
	// must never run. Otherwise the target must report.
	fatal string
	// memory in MiB (0: 512); extra xl lines.
	memory  int
	xlExtra string
	// loader: xl's bootloader= is vtpmboot-loader (no stub, no kexec),
	// measuring into an swtpm started by hand (admin), read by go-tpm
	// before and after. These guests have no vtpm= device: vtpmback
	// would reset the TPM the loader measured when the device appears,
	// since the loader does not announce its boot through vtpmctl yet
	// (host/loader.Run knows only SocketDir; docs/xen.md).
	loader bool
	// admin: the vTPM is an swtpm started by hand in dom0 (/run/vtpm);
	// otherwise vtpmback provisions it on first use, as a user's.
	admin bool
	// restrict runs xl with LIBXL_BOOTLOADER_RESTRICT=1 (XSA-443).
	restrict bool
	// reboot: the target reboots once (dom0 asks it through xenstore,
	// see xentarget's rebootKey); xl restarts the guest with a new
	// domid (on_reboot="restart") and the second boot reports again.
	reboot bool
}

// managed says vtpmback itself created the guest's vTPM.
func (g guest) managed() bool { return g.tpm != "" && !g.admin }

func guests() []guest {
	return []guest{
		{name: "hvm-tpm20", typ: "hvm", tpm: "2.0", policy: "required"},
		// TPM 1.2 by vtpmback's --config; rebooted once: both boots
		// must read the prediction (issue 16's bug gave boot 2 PCR 4 =
		// SHA-1(boot 1's PCR 4 || SHA-1(kernel))).
		{name: "hvm-tpm12", typ: "hvm", tpm: "1.2", policy: "required", reboot: true},
		{name: "hvm-notpm-optional", typ: "hvm", policy: "optional"},
		{name: "hvm-notpm-required", typ: "hvm", policy: "required", fatal: "vtpmboot: FATAL: no TPM: this guest has none"},
		// The PVH guest has a vTPM, so its PCRs prove the refusal came
		// before anything was measured.
		{name: "pvh-tpm20", typ: "pvh", tpm: "2.0", policy: "required", fatal: `vtpmboot: FATAL: Xen PVH guest: kexec needs Xen soft reset, which xl supports only for type="hvm"`},
		{name: "loader-pvh-tpm20", typ: "pvh", tpm: "2.0", loader: true, admin: true},
		{name: "loader-pv-tpm12", typ: "pv", tpm: "1.2", loader: true, admin: true, restrict: true},
	}
}

// loaderPath is where dom0's plan installs vtpmboot-loader: a directory
// the restricted picker's uid can reach (the test's share is 0700).
const loaderPath = "/usr/lib/vtpmboot/vtpmboot-loader"

// loaderExtra is the loader guests' extra=; libxl hands it to the loader
// as --args= and the loader appends it to the entry's arguments as
// pygrub's run_grub does (docs/loader.md, "The command line").
const loaderExtra = "console=hvc0"

// wantCmdlineFor is what the guest's target must read in /proc/cmdline
// and what PCR 5 holds: GRUB's BOOT_IMAGE= rule and the entry's arguments,
// then for a loader guest a space and xl's extra=.
func wantCmdlineFor(g guest) string {
	if g.loader {
		return wantCmdline + " " + loaderExtra
	}
	return wantCmdline
}

// The entry on every guest disk, written by hand: GRUB 2 prefixes
// BOOT_IMAGE= with the kernel's path (docs/config-grub2.md).
const (
	targetArgs  = "console=ttyS0 quiet panic=-1 e2e.xen=1"
	wantCmdline = "BOOT_IMAGE=/boot/vmlinuz " + targetArgs
	grubCfg     = "set default=0\nset timeout=3\nmenuentry 'vtpmboot xen e2e' {\n\tlinux /boot/vmlinuz " + targetArgs + "\n\tinitrd /boot/target.img\n}\n"
)

// selected honours VTPMBOOT_XEN_GUESTS (comma-separated names), for
// running part of the suite while working on it.
func selected() []guest {
	want := os.Getenv("VTPMBOOT_XEN_GUESTS")
	var out []guest
	for _, g := range guests() {
		if want == "" || strings.Contains(","+want+",", ","+g.name+",") {
			out = append(out, g)
		}
	}
	return out
}

type files struct {
	kernel, stub, target, pcrsim, vtpmback, pcrread, loader string
}

func build(t *testing.T, root, dir string) files {
	t.Helper()
	ctx := context.Background()
	kdir := e2e.KernelDir(root)
	f := files{
		kernel:   filepath.Join(kdir, "vmlinuz"),
		stub:     filepath.Join(dir, "stub.cpio.gz"),
		target:   filepath.Join(dir, "target.cpio.gz"),
		pcrsim:   filepath.Join(dir, "pcrsim"),
		vtpmback: filepath.Join(dir, "vtpmback"),
		pcrread:  filepath.Join(dir, "pcrread"),
		loader:   filepath.Join(dir, "vtpmboot-loader"),
	}
	stub, _, err := images.Stub(ctx, images.StubOptions{
		Init:       images.GoBuild{Package: images.DefaultInitPackage, Dir: root},
		ModulesDir: filepath.Join(kdir, "modules"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := stub.WriteFile(f.stub); err != nil {
		t.Fatal(err)
	}
	target, _, err := images.Stub(ctx, images.StubOptions{
		Init:       images.GoBuild{Package: "./internal/xentest/xentarget", Dir: root},
		ModulesDir: filepath.Join(kdir, "modules"),
		Modules:    []string{"xen-tpmfront"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := target.WriteFile(f.target); err != nil {
		t.Fatal(err)
	}
	for pkg, out := range map[string]string{"./cmd/pcrsim": f.pcrsim, "./cmd/vtpmback": f.vtpmback, "./internal/xentest/pcrread": f.pcrread, "./cmd/vtpmboot-loader": f.loader} {
		if err := e2e.GoBuild(ctx, root, pkg, out); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func uuid(i int) string { return fmt.Sprintf("00000000-7e57-4000-8000-%012d", i+1) }

// xlConfig is the guest's config as an admin would write it from
// docs/xen.md; dir holds its disk and console.
func xlConfig(g guest, i int, f files, dir string) string {
	var b strings.Builder
	mem := g.memory
	if mem == 0 {
		mem = 512
	}
	fmt.Fprintf(&b, "name = %q\ntype = %q\nmemory = %d\nvcpus = 1\n%s", g.name, g.typ, mem, g.xlExtra)
	onPoweroff := "destroy"
	if g.managed() {
		// Kept (shut down, renamed by xl) so that dom0 reads its PCRs
		// through vtpmback while the binding lives, then destroys it.
		onPoweroff = "preserve"
	}
	onReboot := "destroy"
	if g.reboot {
		onReboot = "restart"
	}
	tail := fmt.Sprintf("on_poweroff = %q\non_reboot = %q\non_crash = \"destroy\"\n", onPoweroff, onReboot)
	disk := fmt.Sprintf("disk = [ %q ]\n", "format=raw,vdev=xvda,access=rw,target="+filepath.Join(dir, "disk.img"))
	if g.loader {
		fmt.Fprintf(&b, "bootloader = %q\nbootloader_args = [ %q, %q, %q ]\nextra = %q\n%s%s", loaderPath,
			"--vtpm-uuid="+uuid(i), "--vtpm-socket-dir=/run/vtpm", "--state-dir="+filepath.Join(dir, "loader-state"), loaderExtra, disk, tail)
		return b.String()
	}
	fmt.Fprintf(&b, "kernel = %q\nramdisk = %q\n", f.kernel, f.stub)
	console := "ttyS0"
	if g.typ == "pvh" {
		console = "hvc0"
	}
	// quiet: under nested emulation every byte on the emulated serial
	// port costs a trip through Xen and the device model in dom0.
	fmt.Fprintf(&b, "extra = %q\n", "console="+console+" quiet panic=-1 vtpmboot.tpm="+g.policy)
	b.WriteString(disk)
	if g.tpm != "" {
		fmt.Fprintf(&b, "vtpm = [ %q ]\n", "backend=Domain-0,uuid="+uuid(i))
	}
	if g.typ == "hvm" {
		// The device model is restarted at soft reset: a file opened
		// with append=on keeps the stub's lines before the target's.
		fmt.Fprintf(&b, "vnc = 0\nserial = \"none\"\ndevice_model_args_hvm = [ \"-chardev\", \"file,id=vtpmcon,path=%s,append=on\", \"-device\", \"isa-serial,chardev=vtpmcon\" ]\n", filepath.Join(dir, "console"))
	}
	b.WriteString(tail + "on_soft_reset = \"soft-reset\"\n")
	return b.String()
}

// blockLoop replaces dom0's /etc/xen/scripts/block (the overlay is
// writable): Debian's hangs in the test's minimal dom0. It does the part
// xl needs for a file target, so the guests' xl configs stay as an admin
// writes them, with no script=, and pcrsim reads them unchanged.
const blockLoop = `#!/bin/bash
# Minimal vbd hotplug script, for the Xen tests' dom0 only. xl runs it
# with add/remove and XENBUS_PATH the backend's path.
set -e
case "$1" in
add)
  target=$(xenstore-read "$XENBUS_PATH/params")
  dev=$(losetup -f --show "$target")
  xenstore-write "$XENBUS_PATH/physical-device" "$(stat -L -c %t:%T "$dev")" \
    "$XENBUS_PATH/physical-device-path" "$dev" "$XENBUS_PATH/hotplug-status" connected ;;
remove)
  dev=$(xenstore-read "$XENBUS_PATH/physical-device-path" 2>/dev/null || true)
  [ -n "$dev" ] && losetup -d "$dev" || true ;;
esac
`

// planHead runs in dom0 before the guests. vtpmback runs as a user's
// would, its directories moved under the test's share (state, CA,
// configuration) and dom0's tmpfs (sockets, bindings): it provisions each
// vTPM on its first use. swtpm is started by hand only for the loader
// guests (start_tpm), which measure into /run/vtpm/<uuid>.sock.
const planHead = `
ip link set lo up
cp "$XENTEST_OUT/block-loop" /etc/xen/scripts/block
install -D -m 0755 "$LOADER" ` + loaderPath + `
# libxl's restricted bootloader runs as this user's uid + the domid
# (bootloader_uid, libxl_bootloader.c); Debian creates no such user.
echo 'xen-qemuuser-range-base:x:131072:131072:xl restricted bootloader:/nonexistent:/usr/sbin/nologin' >> /etc/passwd
mkdir -p /run/vtpm
VTPMRUN=/run/vtpmboot-test
VTPMCTL=$VTPMRUN/vtpmback.sock
"$VTPMBACK" --state-dir "$XENTEST_OUT/vtpm/state" --ca-dir "$XENTEST_OUT/vtpm/ca" --run-dir "$VTPMRUN" \
  --config "$XENTEST_OUT/vtpm/vtpm.conf" > "$XENTEST_OUT/vtpmback.log" 2>&1 &
VTPMBACK_PID=$!
for i in $(seq 100); do [ -S "$VTPMCTL" ] && break; sleep 0.1; done
[ -S "$VTPMCTL" ] || log "vtpmback's control socket $VTPMCTL did not appear"
vtpmctl_pcrs() { # name uuid before|after: PCRs 0-15 through vtpmback
  local d="$XENTEST_OUT/$1"
  "$PCRREAD" -vtpmctl "$VTPMCTL" -uuid "$2" > "$d/pcrs-$3.json" 2> "$d/pcrread-$3.log"
}
start_tpm() { # name version uuid
  local d="$XENTEST_OUT/$1" args
  mkdir -p "$d/tpmstate"
  args=(socket --tpmstate "dir=$d/tpmstate" --server "type=unixio,path=/run/vtpm/$3.sock" --ctrl "type=unixio,path=/run/vtpm/$3.ctrl"
    --flags not-need-init,startup-clear --log "file=$d/swtpm.log" --pid "file=/run/vtpm/$3.pid" --daemon)
  [ "$2" = 2.0 ] && args+=(--tpm2)
  swtpm "${args[@]}" || log "swtpm for $1 failed"
  for i in $(seq 50); do [ -S "/run/vtpm/$3.sock" ] && break; sleep 0.1; done
  "$PCRREAD" -socket "/run/vtpm/$3.sock" -version "$2" > "$d/pcrs-before.json" 2> "$d/pcrread-before.log"
}
stop_tpm() { # name version uuid
  local d="$XENTEST_OUT/$1"
  "$PCRREAD" -socket "/run/vtpm/$3.sock" -version "$2" > "$d/pcrs-after.json" 2> "$d/pcrread-after.log"
  kill "$(cat /run/vtpm/$3.pid)" 2>/dev/null
}
# xl runs in the foreground (-F) and the guest's life is xl's: a reboot
# (destroy, then a new domain under the same name) leaves a moment with
# no domain of that name, which polling the name would take for the end.
run_guest() { # name timeout-seconds
  local d="$XENTEST_OUT/$1" t0 t1 xlpid id first="" last="" key env=()
  [ -e "$d/restrict" ] && env=(LIBXL_BOOTLOADER_RESTRICT=1)
  t0=$(date +%s.%N)
  env "${env[@]}" xl -v create -F "$d/xl.cfg" > "$d/xl-create.log" 2>&1 &
  xlpid=$!
  ( while kill -0 $xlpid 2>/dev/null; do echo "$(date +%T) $(xl list | grep -- "$1")"; sleep 20; done ) > "$d/xl-list.log" 2>&1 &
  while kill -0 $xlpid 2>/dev/null; do
    sleep 1
    id=$(xl domid "$1" 2>/dev/null) || id=""
    if [ "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print int(b-a)}')" -ge "$2" ]; then
      log "$1: timeout, destroying"; echo timeout > "$d/timeout"
      [ -n "$id" ] && /usr/lib/xen-4.17/bin/xenctx -a "$id" 0 > "$d/xenctx.txt" 2>&1
      xl destroy "$1"; sleep 5; kill $xlpid 2>/dev/null
      break
    fi
    [ -n "$id" ] || continue
    [ "$id" != "$last" ] && echo "$id" >> "$d/domids"
    last=$id; [ -n "$first" ] || first=$id
    # The rebooting guest's first boot: its target reads this key and
    # reboots. Rewritten while missing, since the stub's soft reset
    # recreates /local/domain/<domid>; never written for a later domid.
    key=/local/domain/$id/data/xentest-reboot
    if [ -e "$d/reboot" ] && [ "$id" = "$first" ] && ! xenstore-read "$key" > /dev/null 2>&1; then
      xenstore-write "$key" 1 && xenstore-chmod "$key" n0 "r$id" && echo "$(date +%T) wrote $key" >> "$d/reboot.log"
    fi
    # kexec's purgatory spins on "jmp ." (eb fe) below 1 MiB when the
    # segments it checks no longer match their SHA-256: say so, now.
    if [ $(( $(date +%s) % 15 )) = 0 ] && /usr/lib/xen-4.17/bin/xenctx "$id" 0 > "$d/xenctx.now" 2>&1 &&
       grep -q '^rip: 00000000000' "$d/xenctx.now" && grep -q '<eb> fe' "$d/xenctx.now"; then
      log "$1: kexec purgatory loops (segment digest mismatch), destroying"; echo purgatory > "$d/purgatory"
      cp "$d/xenctx.now" "$d/xenctx.txt"
      [ -n "${XEN_DUMP:-}" ] && xl dump-core "$1" "$d/core" > "$d/dump-core.log" 2>&1
      xl destroy "$1"
    fi
  done
  wait $xlpid
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f\n", b-a}' > "$d/seconds"
  # A preserved domain still exists: its vTPM binding lives, and
  # vtpmback answers for it.
  [ -e "$d/managed-uuid" ] && vtpmctl_pcrs "$1" "$(cat "$d/managed-uuid")" after
  [ -n "$last" ] && xl destroy "$last" > /dev/null 2>&1
  cp "$d/xl-create.log" "$d/xl.log"
  cp /var/log/xen/qemu-dm-"$1".log "$d/qemu-dm.log" 2>/dev/null
  [ -n "$first" ] && cp "/var/log/xen/bootloader.$first.log" "$d/bootloader.log" 2>/dev/null
  log "$1: $(cat "$d/seconds")s"
}
`

// perGuest bounds one guest in dom0. Alone (as make test runs it) a
// guest took at most 310 s; beside other work hvm-tpm20 took 523 s. A
// guest that hangs costs the whole bound, and make test-xen may run the
// suite twice, so the bound is not larger than it must be.
var perGuest = guestTimeout()

// timeout bounds g in dom0: perGuest per boot (a rebooting guest boots
// twice; under a load of 13 on this machine each HVM boot took ~9 min).
func (g guest) timeout() int {
	if g.reboot {
		return 2 * perGuest
	}
	return perGuest
}

func guestTimeout() int {
	if n, err := strconv.Atoi(os.Getenv("VTPMBOOT_XEN_GUEST_TIMEOUT")); err == nil && n > 0 {
		return n
	}
	return 10 * 60
}

func TestXen(t *testing.T) {
	if testing.Short() {
		t.Skip("boots Xen under QEMU; skipped with -short")
	}
	testenv.NeedCommands(t, "go", "qemu-system-x86_64", "xl", "oxenstored", "swtpm", "swtpm_setup", "mkfs.ext4", "sfdisk")
	root := testenv.RepoRoot()
	testenv.NeedFile(t, filepath.Join(xentest.XenDir(root), "xen"), "run scripts/deps.sh")
	testenv.NeedFile(t, filepath.Join(e2e.KernelDir(root), "vmlinuz"), "run scripts/deps.sh")
	gs := selected()
	if len(gs) == 0 {
		t.Fatalf("VTPMBOOT_XEN_GUESTS=%q selects no guest", os.Getenv("VTPMBOOT_XEN_GUESTS"))
	}
	start := time.Now()
	// The share must be reachable under the same path in dom0: a fresh
	// directory of our own, not t.TempDir (removed while a failed run
	// may still be read).
	out, err := os.MkdirTemp("", "vtpmboot-xen-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("VTPMBOOT_XEN_KEEP") != "" {
			t.Logf("kept %s", out)
			return
		}
		os.RemoveAll(out)
	})
	f := build(t, root, out)
	disk := guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 48, Label: "boot", Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte(grubCfg)},
		{Path: "/boot/vmlinuz", Source: f.kernel},
		{Path: "/boot/target.img", Source: f.target},
	}}}}
	diskSum := map[string][32]byte{}
	var plan, vtpmConf strings.Builder
	total := 0
	fmt.Fprintf(&plan, "VTPMBACK=%q\nPCRREAD=%q\nLOADER=%q\nXEN_DUMP=%q\n%s", f.vtpmback, f.pcrread, f.loader, os.Getenv("VTPMBOOT_XEN_DUMP"), planHead)
	if err := os.WriteFile(filepath.Join(out, "block-loop"), []byte(blockLoop), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, g := range gs {
		dir := filepath.Join(out, g.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(dir, "disk.img")
		if err := guestdisk.Build(disk, img); err != nil {
			t.Fatal(err)
		}
		diskSum[g.name] = fileSum(t, img)
		if err := os.WriteFile(filepath.Join(dir, "xl.cfg"), []byte(xlConfig(g, i, f, dir)), 0o644); err != nil {
			t.Fatal(err)
		}
		marks := map[string]string{}
		if g.managed() {
			marks["managed-uuid"] = uuid(i)
			if g.tpm == "1.2" {
				// vtpmback makes TPM 2.0 unless its --config says
				// otherwise (docs/xen.md).
				fmt.Fprintf(&vtpmConf, "%s tpm=1.2\n", uuid(i))
			}
		}
		if g.reboot {
			marks["reboot"] = "1"
		}
		if g.restrict {
			marks["restrict"] = "1"
		}
		for name, v := range marks {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if g.admin && g.tpm == "2.0" {
			// Provisioned as an admin would, with the two banks the
			// loader must measure, as vtpmback provisions its own.
			st := filepath.Join(dir, "tpmstate")
			os.MkdirAll(st, 0o755)
			if out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", st, "--pcr-banks", "sha1,sha256").CombinedOutput(); err != nil {
				t.Fatalf("swtpm_setup: %v\n%s", err, out)
			}
		}
		if g.admin {
			fmt.Fprintf(&plan, "start_tpm %s %s %s\n", g.name, g.tpm, uuid(i))
		} else if g.managed() {
			// First use: vtpmback has not made it yet.
			fmt.Fprintf(&plan, "vtpmctl_pcrs %s %s before\n", g.name, uuid(i))
		}
		fmt.Fprintf(&plan, "run_guest %s %d\n", g.name, g.timeout())
		total += g.timeout()
		if g.admin {
			fmt.Fprintf(&plan, "stop_tpm %s %s %s\n", g.name, g.tpm, uuid(i))
		}
	}
	plan.WriteString("cp \"$VTPMRUN/bindings.json\" \"$XENTEST_OUT/vtpm/\" 2>/dev/null; kill $VTPMBACK_PID 2>/dev/null; sleep 0.5\n")
	if err := os.MkdirAll(filepath.Join(out, "vtpm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "vtpm", "vtpm.conf"), []byte(vtpmConf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "plan.sh"), []byte(plan.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the stub, target, disks and tools in %v", time.Since(start).Round(time.Second))

	// xentest.Lock takes every boot slot (qemutest.LockMachineAll, the one
	// throttle of emulated boots), so no other test's boot runs beside
	// Xen. Take it once: slots are flock(2)s, and a second LockMachineAll
	// in this process would wait for the first forever.
	unlock, err := xentest.Lock()
	if err != nil {
		t.Fatal(err)
	}
	p, err := xentest.BuildDom0(context.Background(), root, out)
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	res, err := xentest.Boot(context.Background(), p, xentest.Options{Out: out, Timeout: time.Duration(total+300) * time.Second})
	unlock()
	if res != nil {
		os.WriteFile(filepath.Join(out, "serial.log"), []byte(res.Console), 0o644)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, lastLines(res.Console, 60))
	}
	t.Logf("Xen boot with %d guests: %v", len(gs), res.Duration.Round(time.Second))
	if !strings.Contains(res.Console, "xentest: plan done") {
		t.Fatalf("dom0 did not finish its plan:\n%s", lastLines(res.Console, 60))
	}
	passed := map[string]bool{}
	for _, g := range gs {
		passed[g.name] = t.Run(g.name, func(t *testing.T) {
			check(t, g, f, filepath.Join(out, g.name), diskSum[g.name])
		})
	}
	// Last, so that a log cut to its tail (CI's) still says what each
	// guest did.
	var sum strings.Builder
	for _, g := range gs {
		sum.WriteString(summary(g, filepath.Join(out, g.name), passed[g.name]))
	}
	t.Logf("per guest:\n%s", sum.String())
}

// summary is one guest's line for the end of the log, and for a failed
// guest the facts that tell the failures apart: how the domain ended, how
// far the stub got, and what the target's report said.
func summary(g guest, dir string, ok bool) string {
	secs, _ := os.ReadFile(filepath.Join(dir, "seconds"))
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %s %s %ss", verdict, g.name, strings.TrimSpace(string(secs)))
	cb, consoleErr := os.ReadFile(consolePath(g, dir))
	// The stub's second kexec load (boot/stub/balloon.go), which the unit
	// tests cover and no run here had needed: worth seeing when it does.
	if bytes.Contains(cb, []byte("went out to Xen after the stub took it back")) {
		b.WriteString(" (the balloon went out late; the stub loaded kexec again)")
	}
	b.WriteString("\n")
	if ok {
		return b.String()
	}
	for _, flag := range []string{"timeout", "purgatory"} {
		if _, err := os.Stat(filepath.Join(dir, flag)); err == nil {
			fmt.Fprintf(&b, "    dom0 flagged: %s\n", flag)
		}
	}
	xllog, _ := os.ReadFile(filepath.Join(dir, "xl.log"))
	fmt.Fprintf(&b, "    xl: %s\n", shutdownReason(string(xllog)))
	if consoleErr != nil {
		fmt.Fprintf(&b, "    console: %v\n", consoleErr)
		return b.String()
	}
	console := strings.ReplaceAll(string(cb), "\r\n", "\n")
	var stubLast, targetLast string
	for _, l := range strings.Split(console, "\n") {
		switch {
		case strings.HasPrefix(l, "vtpmboot: "):
			stubLast = l
		case strings.HasPrefix(l, "xentarget: "):
			targetLast = l
		}
	}
	fmt.Fprintf(&b, "    console: %d bytes; stub's last line: %.160q; target's last line: %.160q\n", len(cb), stubLast, targetLast)
	if rep, err := report.Parse(console); err != nil {
		fmt.Fprintf(&b, "    target report: %v\n", err)
	} else {
		fmt.Fprintf(&b, "    target report: TPM %v, %d banks, errors %q\n", rep.Version, len(rep.PCRs), rep.Errors)
	}
	fmt.Fprintf(&b, "    console tail: %q\n", lastLines(strings.TrimRight(console, "\n"), 4))
	if g.tpm != "" {
		vb, _ := os.ReadFile(filepath.Join(dir, "..", "vtpmback.log"))
		fmt.Fprintf(&b, "    vtpmback log tail: %q\n", lastLines(strings.TrimRight(string(vb), "\n"), 3))
	}
	return b.String()
}

// consolePath is where a guest's console is kept: an HVM guest's serial
// port goes to its own file (xlConfig), a PV or PVH guest's hvc0 to
// xenconsoled's log.
func consolePath(g guest, dir string) string {
	if g.typ != "hvm" {
		return filepath.Join(dir, "..", "consoles", "guest-"+g.name+".log")
	}
	return filepath.Join(dir, "console")
}

// shutdownReason is xl's lines from the first shutdown on (a soft reset
// is a shutdown with reason code 5, and what xl did after it is what a
// failure after kexec needs), at most the last six.
func shutdownReason(xllog string) string {
	lines := strings.Split(strings.TrimRight(xllog, "\n"), "\n")
	for i, l := range lines {
		if strings.Contains(l, "has shut down, reason code") {
			rest := lines[i:]
			if len(rest) > 6 {
				rest = rest[len(rest)-6:]
			}
			return fmt.Sprintf("%q", strings.Join(rest, "\n"))
		}
	}
	return "no shutdown line in xl's log"
}

func check(t *testing.T, g guest, f files, dir string, diskSum [32]byte) {
	secs, _ := os.ReadFile(filepath.Join(dir, "seconds"))
	t.Logf("guest %s (%s, TPM %q, loader %v): %ss in Xen", g.name, g.typ, g.tpm, g.loader, strings.TrimSpace(string(secs)))
	_, err := os.Stat(filepath.Join(dir, "purgatory"))
	purgatory := err == nil
	if _, err := os.Stat(filepath.Join(dir, "timeout")); err == nil {
		t.Errorf("%s did not end within %ds", g.name, g.timeout())
	}
	cb, err := os.ReadFile(consolePath(g, dir))
	if err != nil {
		t.Fatalf("no console: %v", err)
	}
	console := strings.ReplaceAll(string(cb), "\r\n", "\n")
	defer func() {
		if t.Failed() {
			xllog, _ := os.ReadFile(filepath.Join(dir, "xl.log"))
			t.Logf("console:\n%s\nxl log:\n%s", lastLines(console, 80), lastLines(string(xllog), 30))
		}
	}()
	if after := fileSum(t, filepath.Join(dir, "disk.img")); after != diskSum {
		t.Errorf("guest disk changed: sha256 %x, was %x", after, diskSum)
	}
	kernel, _ := os.ReadFile(f.kernel)
	initrd, _ := os.ReadFile(f.target)
	before, afterPCRs := vtpmReadings(t, g, dir)
	if g.admin {
		// A fresh swtpm: every PCR zero (read by go-tpm before the
		// guest), as Xen gives a vTPM no firmware measurements.
		for bank, pcrs := range before {
			for i, v := range pcrs {
				if strings.Trim(v, "0") != "" {
					t.Errorf("fresh vTPM %s PCR %s = %s, want zero", bank, i, v)
				}
			}
		}
	}
	if g.loader {
		checkLoader(t, g, f, dir, console, afterPCRs, kernel, initrd)
		return
	}
	rep, repErr := report.Parse(console)
	if g.fatal != "" {
		if n := strings.Count(console, "FATAL"); n != 1 {
			t.Errorf("%d FATAL lines, want 1", n)
		}
		if !strings.Contains(console, g.fatal) {
			t.Errorf("console lacks %q", g.fatal)
		}
		if repErr == nil || strings.Contains(console, report.Begin) {
			t.Errorf("the target ran after a FATAL")
		}
		if g.typ == "pvh" && strings.Contains(console, "phase modules") {
			t.Errorf("the PVH refusal came after the modules phase: disks or TPM were touched")
		}
		checkWait(t, console)
		return
	}
	boots := 1
	if g.reboot {
		boots = 2
	}
	// What the stub did, before kexec, checked on the stub's console and
	// in the vTPM itself through vtpmback after the guest powered off.
	if n := strings.Count(console, "vtpmboot: booting /boot/vmlinuz"); n != boots {
		t.Fatalf("the stub reached kexec %d times, want %d", n, boots)
	}
	if strings.Contains(console, "FATAL") {
		t.Errorf("FATAL on the console")
	}
	// xl's target is below the domain's allocation: the balloon driver
	// hands pages back, and the stub must take them back before kexec.
	if !strings.Contains(console, "vtpmboot: phase balloon ") {
		t.Errorf("no balloon phase: the stub kexec'd without checking that no page is ballooned out")
	}
	var want map[string]map[int][]byte
	if g.tpm == "" {
		if n := strings.Count(console, "NOTHING WAS MEASURED"); n < 2 {
			t.Errorf("NOTHING WAS MEASURED printed %d times, want before measuring and before kexec", n)
		}
		checkWait(t, console)
	} else {
		if !strings.Contains(console, "vtpmboot: TPM TPM "+g.tpm) {
			t.Errorf("the stub did not open a TPM %s (xen-tpmfront + vtpmback)", g.tpm)
		}
		want = checkVTPM(t, g, f, dir, afterPCRs, kernel, initrd)
	}
	t.Run("target", func(t *testing.T) {
		if purgatory {
			ctx, _ := os.ReadFile(filepath.Join(dir, "xenctx.txt"))
			// What the stub's balloon hold (boot/stub/balloon.go) is
			// there to prevent: docs/xen.md "kexec after the soft reset".
			t.Fatalf("after the soft reset kexec's purgatory found the loaded segments' SHA-256 changed and spins (jmp . below 1 MiB): were pages ballooned out? vCPU:\n%s", lastLines(string(ctx), 30))
		}
		if !g.reboot {
			checkTarget(t, g, console, rep, repErr, want)
			return
		}
		reps := splitReports(console)
		if len(reps) != 2 {
			t.Fatalf("%d target reports on the console, want 2 (one per boot)", len(reps))
		}
		for n, c := range reps {
			t.Run(fmt.Sprintf("boot%d", n+1), func(t *testing.T) {
				rep, err := report.Parse(c)
				checkTarget(t, g, c, rep, err, want)
			})
		}
		checkReboot(t, g, dir)
	})
}

// vtpmReadings are the vTPM's PCRs read in dom0 before and after the
// guest by pcrread: go-tpm on an admin-started swtpm's socket, or
// vtpmback's answer through its control socket for a vTPM it owns (read
// while the preserved domain still holds it).
func vtpmReadings(t *testing.T, g guest, dir string) (before, after map[string]map[string]string) {
	t.Helper()
	if g.tpm == "" {
		return nil, nil
	}
	errLog := func(which string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "pcrread-"+which+".log"))
		return strings.TrimSpace(string(b))
	}
	if g.admin {
		return readPCRFile(t, dir, "before"), readPCRFile(t, dir, "after")
	}
	// vtpmback makes a vTPM on its first use: before the guest it does
	// not know it (docs/vtpmctl.md, unknown-vtpm).
	if l := errLog("before"); !strings.Contains(l, "vtpmctl unknown-vtpm") {
		t.Errorf("before the guest, vtpmback answered for vTPM %s (%q): want unknown-vtpm, a vTPM made on first use", uuidOf(dir), l)
	}
	if g.fatal != "" {
		// The stub refused before loading xen-tpmfront: vtpmback never
		// served (nor made) this vTPM, so nothing can be in it.
		if l := errLog("after"); !strings.Contains(l, "vtpmctl unknown-vtpm") {
			t.Errorf("after the refusal, vtpmback answered for vTPM %s (%q): want unknown-vtpm (never served)", uuidOf(dir), l)
		}
		return nil, nil
	}
	return nil, readPCRFile(t, dir, "after")
}

func uuidOf(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "managed-uuid"))
	return string(b)
}

// expected is every bank's PCRs 0-15 after one boot, from the files with
// crypto/sha*: zero but for PCR 4 (kernel) and 5 (cmdline, initrd).
func expected(t *testing.T, banks []string, kernel, initrd []byte, cmdline string) map[string]map[int][]byte {
	t.Helper()
	out := map[string]map[int][]byte{}
	for _, bank := range banks {
		a, err := pcrbank.ParseAlg(bank)
		if err != nil {
			t.Fatal(err)
		}
		h := hashFor(t, a)
		m := map[int][]byte{}
		for i := 0; i <= 15; i++ {
			m[i] = make([]byte, a.Size())
		}
		m[4] = sum(h, make([]byte, a.Size()), sum(h, kernel))
		m[5] = sum(h, sum(h, make([]byte, a.Size()), sum(h, []byte(cmdline))), sum(h, initrd))
		out[bank] = m
	}
	return out
}

// checkVTPM compares the vTPM's PCRs 0-15 read after the guest (the last
// boot) with crypto/sha* of the files and PCRs 4/5 with pcrsim's
// prediction from the same xl config, and returns what was expected.
func checkVTPM(t *testing.T, g guest, f files, dir string, afterPCRs map[string]map[string]string, kernel, initrd []byte) map[string]map[int][]byte {
	t.Helper()
	var banks []string
	for b := range afterPCRs {
		banks = append(banks, b)
	}
	sort.Strings(banks)
	wantBanks := map[string]string{"1.2": "sha1", "2.0": "sha1,sha256"}[g.tpm]
	if strings.Join(banks, ",") != wantBanks {
		t.Errorf("vTPM banks %v, want %s", banks, wantBanks)
	}
	if len(banks) == 0 {
		return nil
	}
	want := expected(t, banks, kernel, initrd, wantCmdlineFor(g))
	predicted := pcrsimPredict(t, f.pcrsim, filepath.Join(dir, "xl.cfg"), banks)
	reader := "go-tpm read from swtpm"
	if g.managed() {
		reader = "vtpmback answered (vtpmctl pcrs)"
	}
	for _, bank := range banks {
		for i := 0; i <= 15; i++ {
			got := afterPCRs[bank][strconv.Itoa(i)]
			if got != hex.EncodeToString(want[bank][i]) {
				t.Errorf("%s PCR %d: %s %s after the guest, want %x (crypto/%s of the files)", bank, i, reader, got, want[bank][i], bank)
			}
			if (i == 4 || i == 5) && predicted[bank][strconv.Itoa(i)] != got {
				t.Errorf("%s PCR %d: pcrsim predict --xl-config %s says %s, the vTPM holds %s", bank, i, filepath.Join(dir, "xl.cfg"), predicted[bank][strconv.Itoa(i)], got)
			}
		}
	}
	t.Logf("vTPM after the guest (%s): PCRs 0-15 = crypto, 4/5 = pcrsim predict --xl-config, banks %v", reader, banks)
	return want
}

// checkTarget: the kexec'd (or loaded) system runs with the measured
// command line and reads, through /dev/tpm0, the PCRs crypto expects.
func checkTarget(t testing.TB, g guest, console string, rep *report.Report, repErr error, want map[string]map[int][]byte) {
	if repErr != nil {
		t.Fatalf("no target report: %v", repErr)
	}
	for _, e := range rep.Errors {
		t.Errorf("target: %s", e)
	}
	if w := wantCmdlineFor(g) + "\n"; rep.Cmdline != w {
		t.Errorf("target /proc/cmdline = %q, want %q", rep.Cmdline, w)
	}
	if g.tpm == "" || g.loader {
		// A loader guest has no vtpm device (see guest.loader).
		if rep.Version != pcrbank.VersionSoftware {
			t.Errorf("target found a TPM %v", rep.Version)
		}
		return
	}
	wantVersion := map[string]pcrbank.Version{"1.2": pcrbank.Version12, "2.0": pcrbank.Version20}[g.tpm]
	if rep.Version != wantVersion {
		t.Errorf("target sees TPM %v through /dev/tpm0, want %s", rep.Version, g.tpm)
	}
	// xen-tpmfront registers every chip as 1.2: the target must have had
	// to probe, and the kernel offers no resource manager.
	for _, w := range []string{"xentarget: /dev/tpm0 present: true", "xentarget: /dev/tpmrm0 present: false", "xentarget: sysfs tpm_version_major: 1"} {
		if !strings.Contains(console, w) {
			t.Errorf("console lacks %q", w)
		}
	}
	if len(rep.PCRs) != len(want) {
		t.Errorf("target read %d banks, the vTPM has %d", len(rep.PCRs), len(want))
	}
	for a, pcrs := range rep.PCRs {
		for i := 0; i <= 9; i++ {
			if w := want[a.String()][i]; !bytes.Equal(pcrs[i], w) {
				t.Errorf("%v PCR %d: target read %x through /dev/tpm0, want %x (crypto of the files)", a, i, pcrs[i], w)
			}
		}
	}
}

// splitReports cuts a console holding several boots into one piece per
// boot: each piece ends with a target report's last line and starts after
// the previous one's, so it holds that boot's stub and target lines.
func splitReports(console string) []string {
	var out []string
	lines := strings.SplitAfter(console, "\n")
	start, begun := 0, false
	for i, l := range lines {
		switch {
		case strings.TrimRight(l, "\r\n") == report.Begin:
			begun = true
		case begun && strings.HasPrefix(l, "==== VTPMBOOT TARGET REPORT END"):
			out = append(out, strings.Join(lines[start:i+1], ""))
			start, begun = i+1, false
		}
	}
	return out
}

// checkReboot: the second boot was a new domain (xl's reboot), and
// vtpmback reset the vTPM for it, once.
func checkReboot(t *testing.T, g guest, dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, "domids"))
	ids := strings.Fields(string(b))
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Errorf("domids seen %q, want two (xl's reboot is a new domain)", ids)
	}
	vb, _ := os.ReadFile(filepath.Join(dir, "..", "vtpmback.log"))
	u := uuidOf(dir)
	for n, id := range ids {
		w := fmt.Sprintf("vTPM %s: boot %d of domain %s (", u, n+1, id)
		if !strings.Contains(string(vb), w) {
			t.Errorf("vtpmback's log lacks %q (a reset for this boot)", w)
		}
	}
	t.Logf("domids %v; vtpmback reset the vTPM once per boot", ids)
}

// checkLoader: vtpmboot-loader, run by libxl as bootloader=, measured the
// files crypto and pcrsim expect into the swtpm, and the guest booted
// exactly those with the measured command line.
func checkLoader(t *testing.T, g guest, f files, dir, console string, afterPCRs map[string]map[string]string, kernel, initrd []byte) {
	bl, err := os.ReadFile(filepath.Join(dir, "bootloader.log"))
	if err != nil {
		t.Errorf("no bootloader log (/var/log/xen/bootloader.<domid>.log): %v", err)
	}
	if !strings.Contains(string(bl), "measured into vTPM "+uuidFromConfig(t, dir)) {
		t.Errorf("the loader's log does not say it measured:\n%s", bl)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "domids"))
	ids := strings.Fields(string(b))
	m := regexp.MustCompile(`disk read by uid (\d+), capabilities ([0-9a-f]+)`).FindStringSubmatch(string(bl))
	switch {
	case m == nil:
		t.Errorf("the loader's log does not say who read the disk")
	case len(ids) == 0:
		t.Errorf("no domid recorded")
	case g.restrict:
		// libxl's bootloader_uid: xen-qemuuser-range-base (131072 in
		// dom0's passwd) + the domid.
		id, _ := strconv.Atoi(ids[0])
		if m[1] != strconv.Itoa(131072+id) || strings.Trim(m[2], "0") != "" {
			t.Errorf("restricted: the disk was read by uid %s with capabilities %s, want uid %d and none", m[1], m[2], 131072+id)
		}
	default:
		if m[1] != "0" {
			t.Errorf("unrestricted: the disk was read by uid %s, want 0", m[1])
		}
	}
	if m != nil {
		t.Logf("the picker read the disk as uid %s, capabilities %s", m[1], m[2])
	}
	if want := checkVTPM(t, g, f, dir, afterPCRs, kernel, initrd); want == nil {
		return
	}
	rep, repErr := report.Parse(console)
	checkTarget(t, g, console, rep, repErr, nil)
	if !strings.Contains(console, "xentarget: xenbus vtpm devices: 0") {
		t.Errorf("the loader guest has a vtpm device")
	}
}

func uuidFromConfig(t *testing.T, dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "xl.cfg"))
	m := regexp.MustCompile(`--vtpm-uuid=([0-9a-f-]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no --vtpm-uuid= in %s/xl.cfg", dir)
	}
	return string(m[1])
}

var waitPhase = regexp.MustCompile(`vtpmboot: phase wait (\d+)ms`)

// checkWait: with no TPM announced the stub must not wait for one (the
// default vtpmboot.timeout is 10 s).
func checkWait(t *testing.T, console string) {
	t.Helper()
	m := waitPhase.FindStringSubmatch(console)
	if m == nil {
		if !strings.Contains(console, "Xen PVH guest") {
			t.Errorf("no wait phase line")
		}
		return
	}
	ms, _ := strconv.Atoi(m[1])
	t.Logf("stub wait phase: %dms", ms)
	if ms >= 10000 {
		t.Errorf("the stub waited %dms for a TPM nothing announced", ms)
	}
}

func pcrsimPredict(t *testing.T, pcrsim, cfg string, banks []string) map[string]map[string]string {
	t.Helper()
	args := []string{"predict", "--xl-config", cfg, "--format", "json", "--bank", strings.Join(banks, ",")}
	var stderr bytes.Buffer
	cmd := exec.Command(pcrsim, args...)
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("pcrsim %s: %v\n%s%s", strings.Join(args, " "), err, outb, stderr.String())
	}
	var docs []struct {
		Error string                       `json:"error"`
		Banks map[string]map[string]string `json:"banks"`
	}
	if err := json.Unmarshal(outb, &docs); err != nil || len(docs) != 1 {
		t.Fatalf("pcrsim output %q: %v", outb, err)
	}
	if docs[0].Error != "" {
		t.Fatalf("pcrsim: %s", docs[0].Error)
	}
	return docs[0].Banks
}

func readPCRFile(t *testing.T, dir, which string) map[string]map[string]string {
	t.Helper()
	p := filepath.Join(dir, "pcrs-"+which+".json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("PCR read in dom0 %s the guest: %v", which, err)
		return nil
	}
	var m map[string]map[string]string
	if err := json.Unmarshal(b, &m); err != nil || len(m) == 0 {
		log, _ := os.ReadFile(filepath.Join(dir, "pcrread-"+which+".log"))
		t.Errorf("PCR read in dom0 %s the guest, %s: %q %v %s", which, p, b, err, log)
	}
	return m
}

func hashFor(t *testing.T, a pcrbank.Alg) func() hash.Hash {
	switch a {
	case pcrbank.SHA1:
		return sha1.New
	case pcrbank.SHA256:
		return sha256.New
	}
	t.Fatalf("no hash for %v", a)
	return nil
}

func sum(h func() hash.Hash, parts ...[]byte) []byte {
	x := h()
	for _, p := range parts {
		x.Write(p)
	}
	return x.Sum(nil)
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	io.Copy(h, fh)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
