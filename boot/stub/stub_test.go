package stub

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// fakeSystem stands in for the machine: the real parts (module loading,
// BLKROSET, kexec, power-off) need PID 1 in a VM, which the e2e boots
// prove. The disks are real: images built with mkfs and sfdisk
// (internal/guestdisk), read by the same code the stub reads /dev/vda
// with; the memfds are real, and the TPM is a pcrbank.Soft bank.
type fakeSystem struct {
	t       *testing.T
	cmdline string
	xenType string // XenGuestType
	// announced: a TPM device is announced (xenstore, ACPI) even though
	// tpm is nil: it never becomes ready.
	announced bool
	fs        map[string][]byte // the files of the default disk's one ext4 partition
	disk      *guestdisk.Disk   // nil: the default disk, vda: MBR, ext4 "root" holding fs
	patch     func([]byte)      // changes the built image's bytes
	tpm       pcrbank.Target    // nil: no TPM device
	openErr   error
	now       time.Time
	devAfter  time.Duration // block devices appear this late

	calls                      []string
	loadedKernel, loadedInitrd []byte
	loadedCmdline              string
	kexecLoadErr               error
	memAvail                   int64 // 0: plenty
	execed, poweredOff         bool
	opened, closed             int
	// balloon: nil, no balloon driver; balloonBack: Xen gives ballooned
	// pages back this long after the target is raised (<0: never).
	balloon       *Balloon
	balloonBack   time.Duration
	balloonTarget int64
	balloonSetAt  time.Time
	// balloonLate: KiB the driver gives away at the first kexec load, as
	// when its first xenstore watch fires after the stub took the
	// balloon back; loads counts KexecLoad calls.
	balloonLate int64
	loads       int
}

func (f *fakeSystem) XenBalloon() (Balloon, bool, error) {
	if f.balloon == nil {
		return Balloon{}, false, nil
	}
	if f.balloonTarget > 0 && f.balloonBack >= 0 && !f.now.Before(f.balloonSetAt.Add(f.balloonBack)) {
		f.balloon.Current, f.balloon.Out = f.balloon.Current+f.balloon.Out, 0
	}
	return *f.balloon, true, nil
}

func (f *fakeSystem) SetXenBalloonTarget(kb int64) error {
	f.calls = append(f.calls, fmt.Sprintf("balloon-target %d", kb))
	f.balloonTarget, f.balloonSetAt = kb, f.now
	return nil
}

func (f *fakeSystem) MountBase() error { return nil }

// The fake has no firmware log area: the real one is exercised by
// boot/acpilog's tests on captured SeaBIOS areas and by the e2e boots.
func (f *fakeSystem) AppendFirmwareLog(pcrbank.Version, []measure.Measurement) (string, error) {
	return "", fmt.Errorf("no firmware log area in the fake system")
}
func (f *fakeSystem) Cmdline() (string, error) { return f.cmdline, nil }
func (f *fakeSystem) XenGuestType() string     { return f.xenType }
func (f *fakeSystem) LoadModules() ([]modload.Loaded, error) {
	f.calls = append(f.calls, "modules")
	return []modload.Loaded{{Module: modload.Module{Name: "xen_blkfront"}, Err: errors.New("no such device")}, {Module: modload.Module{Name: "virtio_blk"}}}, nil
}
func (f *fakeSystem) BlockNames() []string {
	if f.now.Before(time.Unix(0, 0).Add(f.devAfter)) {
		return nil
	}
	return []string{"vda", "vda1"}
}
func (f *fakeSystem) TPMPresent() bool   { return f.tpm != nil }
func (f *fakeSystem) TPMAnnounced() bool { return f.tpm != nil || f.announced }
func (f *fakeSystem) OpenTPM() (pcrbank.Target, error) {
	if f.openErr != nil {
		return nil, f.openErr
	}
	return f.tpm, nil
}

// OpenDisks builds the disk image now, so a test can change the files
// first.
func (f *fakeSystem) OpenDisks() ([]disks.Disk, func(), error) {
	f.calls = append(f.calls, "disks")
	d := f.disk
	if d == nil {
		var files []guestdisk.File
		for p, b := range f.fs {
			files = append(files, guestdisk.File{Path: "/" + p, Data: b})
		}
		d = &guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Label: "root", Files: files}}}
	}
	img := filepath.Join(f.t.TempDir(), "vda.img")
	if err := guestdisk.Build(*d, img); err != nil {
		f.t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.patch != nil {
		f.patch(b)
	}
	f.opened++
	return []disks.Disk{{Linux: "vda", R: bytes.NewReader(b), Size: int64(len(b))}}, func() { f.closed++ }, nil
}

// memImage is an Image in plain memory: the fake machine's NewImage. The
// real one (sealed memfds) is tested in boot/kexec and by the e2e boots.
type memImage struct{ *bytes.Reader }

func (memImage) Close() error { return nil }

func (f *fakeSystem) NewImage(name string, r io.Reader) (Image, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return memImage{bytes.NewReader(b)}, nil
}

func (f *fakeSystem) KexecLoad(kernel, initrd Image, cmdline string) error {
	if f.closed != f.opened {
		return errors.New("kexec with guest disks still open")
	}
	f.loads++
	if f.balloonLate > 0 {
		f.balloon.Current -= f.balloonLate
		f.balloon.Out += f.balloonLate
		f.balloonTarget, f.balloonLate = 0, 0
	}
	f.loadedKernel = read(kernel)
	f.loadedInitrd = read(initrd)
	f.loadedCmdline = cmdline
	return f.kexecLoadErr
}
func (f *fakeSystem) KexecExec() error { f.execed = true; return nil }
func (f *fakeSystem) PowerOff()        { f.poweredOff = true }
func (f *fakeSystem) MemAvailable() (int64, error) {
	if f.memAvail == 0 {
		return 1 << 40, nil
	}
	return f.memAvail, nil
}
func (f *fakeSystem) Now() time.Time        { return f.now }
func (f *fakeSystem) Sleep(d time.Duration) { f.now = f.now.Add(d) }

func read(im Image) []byte {
	if im == nil {
		return nil
	}
	b := make([]byte, im.Size())
	im.ReadAt(b, 0)
	return b
}

const grubCfg = `set default=0
set timeout=5
menuentry 'Debian' {
	linux /boot/vmlinuz root=/dev/xvda1 ro quiet
	initrd /boot/initrd-a /boot/initrd-b
}
menuentry 'Bare' {
	linux /boot/vmlinuz console=hvc0
}
menuentry 'Broken' {
	linux /boot/missing
}
`

// kernelBytes is the guest's kernel: a setup header kexec accepts, then
// a payload.
var kernelBytes = fakekernel.Image([]byte("kernel bytes"))

func guestFS() map[string][]byte {
	return map[string][]byte{
		"boot/grub/grub.cfg": []byte(grubCfg),
		"boot/vmlinuz":       kernelBytes,
		"boot/initrd-a":      []byte("first initrd|"),
		"boot/initrd-b":      []byte("second initrd"),
	}
}

func soft(t *testing.T) *pcrbank.Soft {
	s, err := pcrbank.NewSoft([]pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newFake(t *testing.T, cmdline string) *fakeSystem {
	testenv.NeedCommands(t, "mkfs.ext4", "sfdisk")
	return &fakeSystem{t: t, cmdline: cmdline, fs: guestFS(), tpm: soft(t), now: time.Unix(0, 0)}
}

// The initrd image as the contract lays it out, written by hand: the
// 13-byte first file is followed by 3 zero bytes so the second starts
// 4-byte aligned, as GRUB2 loads several initrds.
const paddedInitrds = "first initrd|\x00\x00\x00second initrd"

func TestBootMeasuresWhatItLoads(t *testing.T) {
	f := newFake(t, "console=ttyS0")
	var out bytes.Buffer
	res := Run(f, &out)
	if res.Err != nil || !f.execed || f.poweredOff {
		t.Fatalf("err %v execed %v poweredOff %v\n%s", res.Err, f.execed, f.poweredOff, out.String())
	}
	wantCmdline := "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 ro quiet"
	if f.loadedCmdline != wantCmdline {
		t.Errorf("kexec cmdline %q, want %q", f.loadedCmdline, wantCmdline)
	}
	if !bytes.Equal(f.loadedKernel, kernelBytes) || string(f.loadedInitrd) != paddedInitrds {
		t.Errorf("kexec got kernel %q initrd %q", f.loadedKernel, f.loadedInitrd)
	}
	// PCR values from the contract oracle (internal/contract).
	boot := contract.Boot{Kernel: kernelBytes, Initrds: [][]byte{guestFS()["boot/initrd-a"], guestFS()["boot/initrd-b"]}, Cmdline: wantCmdline}
	pcr4, pcr5 := boot.PCR4(crypto.SHA256, nil), boot.PCR5(crypto.SHA256, nil)
	for pcr, want := range map[int][]byte{4: pcr4, 5: pcr5} {
		got, _ := f.tpm.ReadPCR(pcr, pcrbank.SHA256)
		if !bytes.Equal(got, want) {
			t.Errorf("PCR %d = %x, want %x", pcr, got, want)
		}
	}
	s := out.String()
	for _, want := range []string{"vtpmboot: phase modules ", "vtpmboot: phase measure ", "vtpmboot: phase kexec ", "vtpmboot: phase total ",
		`* 0 "Debian"`, "chosen: grub2 /boot/grub/grub.cfg on vda1", `extend PCR 4 with kernel "/boot/vmlinuz"`, "warning: module xen_blkfront"} {
		if !strings.Contains(s, want) {
			t.Errorf("console lacks %q:\n%s", want, s)
		}
	}
	// The printed event log replays to the same PCRs.
	_, rest, _ := strings.Cut(s, "vtpmboot: BEGIN EVENTLOG\n")
	b64, _, _ := strings.Cut(rest, "vtpmboot: END EVENTLOG")
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(b64, "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(b64), "\n") {
		if len(l) > 76 {
			t.Errorf("event log line of %d chars", len(l))
		}
	}
	log, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	replay := soft(t)
	if err := log.Replay(replay); err != nil {
		t.Fatal(err)
	}
	if got, _ := replay.ReadPCR(5, pcrbank.SHA256); !bytes.Equal(got, pcr5) {
		t.Errorf("event log replays PCR 5 to %x, want %x", got, pcr5)
	}
}

func TestNoInitrdSelectedByTitle(t *testing.T) {
	f := newFake(t, `vtpmboot.entry="Bare"`)
	var out bytes.Buffer
	if res := Run(f, &out); res.Err != nil || !f.execed {
		t.Fatalf("%v\n%s", res.Err, out.String())
	}
	if f.loadedInitrd != nil || f.loadedCmdline != "BOOT_IMAGE=/boot/vmlinuz console=hvc0" {
		t.Errorf("initrd %q cmdline %q", f.loadedInitrd, f.loadedCmdline)
	}
	want := contract.Boot{Cmdline: f.loadedCmdline}.PCR5(crypto.SHA256, nil)
	if got, _ := f.tpm.ReadPCR(5, pcrbank.SHA256); !bytes.Equal(got, want) {
		t.Errorf("PCR 5 = %x, want the empty-initrd value %x", got, want)
	}
}

// checkFatal asserts the guest was powered off, not booted, with one
// FATAL line containing each of wants.
func checkFatal(t *testing.T, f *fakeSystem, out string, wants ...string) {
	t.Helper()
	if f.execed || f.loadedKernel != nil {
		t.Errorf("kexec happened (execed %v, loaded %d bytes)", f.execed, len(f.loadedKernel))
	}
	if !f.poweredOff {
		t.Error("not powered off")
	}
	if n := strings.Count(out, "FATAL"); n != 1 {
		t.Errorf("%d FATAL lines", n)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("console lacks %q:\n%s", w, out)
		}
	}
}

func TestNoTPMRequiredPowersOff(t *testing.T) {
	f := newFake(t, "")
	f.tpm = nil
	var out bytes.Buffer
	Run(f, &out)
	checkFatal(t, f, out.String(), "FATAL: no TPM: this guest has none", `vtpm=["backend=`, "-tpmdev", "vtpmboot.tpm=optional")
	// Nothing announced a TPM, so nothing was waited for beyond the
	// block devices' settle time (virtual time).
	if got := f.now.Sub(time.Unix(0, 0)); got > time.Second {
		t.Errorf("waited %v with no TPM announced", got)
	}
}

// A TPM that is announced (a vtpm device in xenstore, an ACPI TPM) but
// never becomes ready gets the whole timeout, then a different message.
func TestAnnouncedTPMWaitsTimeout(t *testing.T) {
	for _, policy := range []string{"required", "optional"} {
		f := newFake(t, "vtpmboot.tpm="+policy)
		f.tpm, f.announced = nil, true
		var out bytes.Buffer
		res := Run(f, &out)
		if got := f.now.Sub(time.Unix(0, 0)); got < 10*time.Second {
			t.Errorf("%s: waited %v for an announced TPM, want the 10s default", policy, got)
		}
		if policy == "required" {
			checkFatal(t, f, out.String(), "FATAL: no TPM: a TPM is announced but neither /dev/tpmrm0 nor /dev/tpm0 appeared within 10s")
			continue
		}
		if res.Err != nil || !f.execed || res.Measured {
			t.Errorf("optional: err %v execed %v measured %v", res.Err, f.execed, res.Measured)
		}
	}
}

func TestNoTPMOptionalBootsLoudly(t *testing.T) {
	f := newFake(t, "vtpmboot.tpm=optional")
	f.tpm = nil
	var out bytes.Buffer
	res := Run(f, &out)
	if res.Err != nil || !f.execed || res.Measured {
		t.Fatalf("err %v execed %v measured %v", res.Err, f.execed, res.Measured)
	}
	if n := strings.Count(out.String(), "NOTHING WAS MEASURED"); n < 2 {
		t.Errorf("warning printed %d times, want before measuring and before kexec:\n%s", n, out.String())
	}
	if got := f.now.Sub(time.Unix(0, 0)); got > time.Second {
		t.Errorf("waited %v with no TPM announced (timeout 10s)", got)
	}
}

// The PVH refusal comes before anything touches a disk or the TPM: a PVH
// guest's kexec ends in xl destroying it, so measuring would only leave
// PCRs describing a boot that never happened.
func TestXenPVHRefusedBeforeDisks(t *testing.T) {
	f := newFake(t, "")
	f.xenType = "PVH"
	tpm := f.tpm.(*pcrbank.Soft)
	var out bytes.Buffer
	Run(f, &out)
	checkFatal(t, f, out.String(), `FATAL: Xen PVH guest: kexec needs Xen soft reset, which xl supports only for type="hvm"`)
	if len(f.calls) != 0 {
		t.Errorf("PVH guest: %v before the refusal", f.calls)
	}
	if n := strings.Count(out.String(), "FATAL"); n != 1 {
		t.Errorf("%d FATAL lines", n)
	}
	for _, pcr := range []int{4, 5} {
		v, err := tpm.ReadPCR(pcr, pcrbank.SHA256)
		if err != nil || !bytes.Equal(v, make([]byte, 32)) {
			t.Errorf("PCR %d = %x, %v: the refusal extended something", pcr, v, err)
		}
	}
}

func TestBrokenTPMIsFatalEvenIfOptional(t *testing.T) {
	f := newFake(t, "vtpmboot.tpm=optional")
	f.openErr = errors.New("TPM 2.0 startup failed")
	var out bytes.Buffer
	Run(f, &out)
	checkFatal(t, f, out.String(), "FATAL: open TPM: TPM 2.0 startup failed")
}

// failingTPM fails its second extend, after the kernel is measured.
type failingTPM struct {
	*pcrbank.Soft
	n int
}

func (f *failingTPM) Extend(pcr int, d pcrbank.Digests) error {
	if f.n++; f.n == 2 {
		return errors.New("TPM_RC_LOCALITY")
	}
	return f.Soft.Extend(pcr, d)
}

func TestExtendFailurePowersOff(t *testing.T) {
	for _, policy := range []string{"required", "optional"} {
		f := newFake(t, "vtpmboot.tpm="+policy)
		f.tpm = &failingTPM{Soft: soft(t)}
		var out bytes.Buffer
		Run(f, &out)
		checkFatal(t, f, out.String(), "FATAL: TPM extend 2 of 3 (cmdline into PCR 5)", "TPM_RC_LOCALITY")
	}
}

func TestFaults(t *testing.T) {
	for name, tc := range map[string]struct {
		cmdline string
		mod     func(*fakeSystem)
		wants   []string
	}{
		"no config":       {"", func(f *fakeSystem) { delete(f.fs, "boot/grub/grub.cfg") }, []string{"FATAL: choose boot entry", "no boot configuration found"}},
		"missing kernel":  {"vtpmboot.entry=2", nil, []string{"FATAL: choose boot entry", "/boot/missing"}},
		"kernel vanished": {"", func(f *fakeSystem) { delete(f.fs, "boot/vmlinuz") }, []string{"FATAL", "/boot/vmlinuz"}},
		"no such entry":   {"vtpmboot.entry=7", nil, []string{"FATAL", `no entry at position "7"`}},
		"bad option":      {"vtpmboot.tpm=sometimes", nil, []string{"FATAL: options", "vtpmboot.tpm"}},
		"xen pv":          {"", func(f *fakeSystem) { f.xenType = "PV" }, []string{"FATAL: Xen PV guest", `use type="hvm"`}},
		"no disk match":   {"vtpmboot.disk=LABEL=nope", nil, []string{"FATAL: find filesystems", "vtpmboot.disk=LABEL=nope", `vda1 (ext4 label="root"`}},
		"bad gpt": {"", func(f *fakeSystem) {
			f.disk = &guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{{Path: "/boot/grub/grub.cfg", Data: []byte(grubCfg)}}}}}
			f.patch = func(b []byte) { b[512+16] ^= 1 } // the header's CRC32
		}, []string{"FATAL: read disk vda", "GPT header", "CRC32"}},
		"kexec refuses": {"", func(f *fakeSystem) { f.kexecLoadErr = errors.New("exec format error") }, []string{"FATAL: kexec /boot/vmlinuz on vda1: exec format error"}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, tc.cmdline)
			if tc.mod != nil {
				tc.mod(f)
			}
			var out bytes.Buffer
			Run(f, &out)
			if name == "kexec refuses" {
				// Measured and loaded, but never executed.
				if f.execed || !f.poweredOff || !strings.Contains(out.String(), tc.wants[0]) {
					t.Errorf("execed %v poweredOff %v\n%s", f.execed, f.poweredOff, out.String())
				}
				return
			}
			checkFatal(t, f, out.String(), tc.wants...)
		})
	}
}

type panicTPM struct{ *pcrbank.Soft }

func (panicTPM) Extend(int, pcrbank.Digests) error { panic("boom") }

func TestPanicPowersOff(t *testing.T) {
	f := newFake(t, "")
	f.tpm = panicTPM{soft(t)}
	var out bytes.Buffer
	Run(f, &out)
	checkFatal(t, f, out.String(), "FATAL: internal error: panic: boom")
}

func TestWaitStopsWhenSettled(t *testing.T) {
	f := newFake(t, "")
	f.devAfter = 2 * time.Second
	var out bytes.Buffer
	if res := Run(f, &out); res.Err != nil {
		t.Fatal(res.Err)
	}
	// Virtual time: devices at 2s, then 300ms of stability.
	if got := f.now.Sub(time.Unix(0, 0)); got < 2300*time.Millisecond || got > 2500*time.Millisecond {
		t.Errorf("wait ended at %v (virtual), want just after 2.3s", got)
	}
}

// The stub reads the disks itself: every partition is listed with what it
// holds, vtpmboot.disk= selects, and the one rule (disks.Skippable) says
// which unreadable partitions the search may pass over. The phase lines
// stay in boot order.
func TestDisksAndTheSkipRule(t *testing.T) {
	boot := func(label string) guestdisk.Partition {
		var files []guestdisk.File
		for p, b := range guestFS() {
			files = append(files, guestdisk.File{Path: "/" + p, Data: b})
		}
		return guestdisk.Partition{FS: "ext4", SizeMB: 8, Label: label, Files: files}
	}
	fat := guestdisk.Partition{FS: "vfat", SizeMB: 8, Label: "EFI"}
	raw := guestdisk.Partition{FS: "raw", SizeMB: 1}
	for name, tc := range map[string]struct {
		cmdline string
		disk    guestdisk.Disk
		chosen  string   // partition the boot came from; "" for a FATAL
		wants   []string // console lines
	}{
		"fat then ext4": {"", guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{fat, boot("root")}}, "vda2",
			[]string{`vda1 (hd0,gpt1): vfat label="EFI"`, `vda2 (hd0,gpt2): ext4 label="root"`}},
		"disk selector":  {"vtpmboot.disk=vda2", guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{boot("one"), boot("two")}}, "vda2", nil},
		"label selector": {"vtpmboot.disk=LABEL=two", guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{boot("one"), boot("two")}}, "vda2", nil},
		"no filesystem is passed over": {"", guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{raw, boot("root")}}, "vda2",
			[]string{`vda1 (hd0,msdos1): not searched: "/dev/vda partition 1: no recognised filesystem`}},
		"corrupt before the config refuses": {"", guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Corrupt: true}, boot("root")}}, "",
			[]string{"FATAL: choose boot entry: vda1 cannot be read", "0 inodes per group", "searched before vda2, which holds /boot/grub/grub.cfg", "vtpmboot.disk=vda2"}},
		"corrupt excluded by selector": {"vtpmboot.disk=vda2", guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Corrupt: true}, boot("root")}}, "vda2", nil},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, tc.cmdline)
			f.disk = &tc.disk
			var out bytes.Buffer
			res := Run(f, &out)
			if tc.chosen == "" {
				checkFatal(t, f, out.String(), tc.wants...)
				return
			}
			if res.Err != nil || !f.execed {
				t.Fatalf("%v\n%s", res.Err, out.String())
			}
			if got := res.Choice.Volume.Name; got != tc.chosen {
				t.Errorf("booted from %s, want %s", got, tc.chosen)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out.String(), w) {
					t.Errorf("console lacks %q:\n%s", w, out.String())
				}
			}
			var phases []string
			for _, l := range strings.Split(out.String(), "\n") {
				if p, ok := strings.CutPrefix(l, PhasePrefix); ok {
					phases = append(phases, strings.Fields(p)[0])
				}
			}
			if got, want := strings.Join(phases, " "), "init modules wait tpm scan choose load measure kexec total"; got != want {
				t.Errorf("phases %q, want %q", got, want)
			}
			if strings.Join(f.calls, " ") != "modules disks" {
				t.Errorf("calls %q", f.calls)
			}
		})
	}
}

// vtpmboot.debug splits the measure phase by cause, for reading timings
// of emulated boots.
func TestDebugSplitsMeasurePhase(t *testing.T) {
	f := newFake(t, "vtpmboot.debug")
	var out bytes.Buffer
	if res := Run(f, &out); res.Err != nil {
		t.Fatal(res.Err)
	}
	// 1065 bytes: the 1024-byte fake kernel setup area, its 12-byte payload,
	// and the 13+3+13 bytes of the initrd image.
	if !regexp.MustCompile(`vtpmboot: measure: hashing \d+ms \(1065 bytes, 2 banks\), TPM \d+ms \(3 extends\), console \d+ms`).MatchString(out.String()) {
		t.Errorf("no measure split line:\n%s", out.String())
	}
}

// An entry whose files cannot be held through kexec is refused before
// anything is read: running out of memory as PID 1 would be a kernel panic
// with no message. The fake's numbers stand in for /proc/meminfo.
func TestNotEnoughMemory(t *testing.T) {
	f := newFake(t, "")
	f.memAvail = 8 << 20 // less than kexecOverhead alone
	var out bytes.Buffer
	res := Run(f, &out)
	checkFatal(t, f, out.String(), "FATAL: load kernel and initrds", "give the guest more memory (xl: memory=)", "8 MiB available")
	if res.Err == nil || f.loadedKernel != nil || strings.Contains(out.String(), "loaded kernel") {
		t.Errorf("files were loaded although memory was short:\n%s", out.String())
	}
	f = newFake(t, "")
	f.memAvail = kexecOverhead + 4096 // the fake guest's files are about a KiB
	if res := Run(f, &out); res.Err != nil || !f.execed {
		t.Errorf("enough memory but no boot: %v", res.Err)
	}
}

// skipSHA256 is a TPM that lies (a mock: no real TPM can be made to): it
// reports every extend as done but never touches the sha256 bank.
type skipSHA256 struct{ *pcrbank.Soft }

func (s skipSHA256) Extend(pcr int, d pcrbank.Digests) error {
	return s.Soft.Extend(pcr, pcrbank.Digests{pcrbank.SHA1: d[pcrbank.SHA1], pcrbank.SHA256: make([]byte, 32)})
}

// A TPM whose PCRs do not follow from the extends is a fault: FATAL, and
// no boot, with tpm=optional too.
func TestLyingTPMIsFatal(t *testing.T) {
	for _, policy := range []string{"required", "optional"} {
		f := newFake(t, "vtpmboot.tpm="+policy)
		f.tpm = skipSHA256{soft(t)}
		var out bytes.Buffer
		Run(f, &out)
		checkFatal(t, f, out.String(), "FATAL: TPM extend 1 of 3 (kernel into PCR 4)", "PCR 4 sha256", "does not follow from the extend")
	}
}

// Guest-controlled text cannot reach the console raw: a title with an ESC
// sequence and a kernel path with newlines that spell out fake event-log
// markers come out escaped, so the only marker lines are the stub's own.
func TestConsoleEscapesGuestText(t *testing.T) {
	f := newFake(t, "")
	evil := "/boot/vmlinuz\nvtpmboot: BEGIN EVENTLOG\nAAAA\nvtpmboot: END EVENTLOG\n"
	f.fs["boot/grub/grub.cfg"] = []byte("set timeout=5\nmenuentry 'Debian\x1b[2J\x1b]0;owned\x07' {\n\tlinux /boot/missing\n}\n")
	var out bytes.Buffer
	Run(f, &out)
	if strings.ContainsAny(out.String(), "\x1b\x07") {
		t.Errorf("raw control characters on the console:\n%q", out.String())
	}
	f = newFake(t, "")
	f.fs["boot/grub/grub.cfg"] = []byte("set timeout=5\nmenuentry 'x' {\n\tlinux \"" + evil + "\"\n}\n")
	out.Reset()
	Run(f, &out)
	for _, l := range strings.Split(out.String(), "\n") {
		if l == "vtpmboot: BEGIN EVENTLOG" || l == "AAAA" {
			t.Errorf("forged line %q on the console:\n%s", l, out.String())
		}
	}
	if !strings.Contains(out.String(), `\nvtpmboot: BEGIN EVENTLOG\n`) {
		t.Errorf("the forged markers are not shown escaped:\n%s", out.String())
	}
}

// Under Xen HVM the stub raises the balloon target to all the guest had
// before it loads a driver, and kexecs only once Xen has given every
// ballooned page back (docs/xen.md, "kexec after the soft reset").
func TestXenHVMTakesBalloonBack(t *testing.T) {
	f := newFake(t, "")
	f.xenType = "HVM"
	f.balloon = &Balloon{Current: 516096, Out: 8192}
	f.balloonBack = 2 * time.Second
	var out bytes.Buffer
	res := Run(f, &out)
	if res.Err != nil || !f.execed {
		t.Fatalf("err %v execed %v\n%s", res.Err, f.execed, out.String())
	}
	if len(f.calls) == 0 || f.calls[0] != "balloon-target 524288" {
		t.Errorf("calls %v: want the target raised to 524288 KiB (516096 held + 8192 out) before anything else", f.calls)
	}
	if f.balloon.Out != 0 {
		t.Errorf("kexec with %d KiB still ballooned out", f.balloon.Out)
	}
	for _, w := range []string{"xen balloon: 8192 KiB handed back to Xen", "phase balloon "} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("console lacks %q:\n%s", w, out.String())
		}
	}
}

// Xen that never gives the pages back: one FATAL line, nothing measured,
// no kexec.
func TestXenHVMBalloonStuckIsFatalBeforeMeasuring(t *testing.T) {
	f := newFake(t, "vtpmboot.timeout=3")
	f.xenType = "HVM"
	f.balloon = &Balloon{Current: 516096, Out: 8192}
	f.balloonBack = -1
	tpm := f.tpm.(*pcrbank.Soft)
	var out bytes.Buffer
	Run(f, &out)
	checkFatal(t, f, out.String(), "FATAL: Xen balloon driver: guest memory is still ballooned out to Xen")
	if f.loadedCmdline != "" || f.execed {
		t.Errorf("kexec staged or run with pages ballooned out")
	}
	for _, pcr := range []int{4, 5} {
		if v, _ := tpm.ReadPCR(pcr, pcrbank.SHA256); !bytes.Equal(v, make([]byte, 32)) {
			t.Errorf("PCR %d = %x: measured a boot that cannot run", pcr, v)
		}
	}
}

// The driver gives pages away after the stub took them back (its first
// xenstore watch came late), after kexec chose its destinations: the
// stub takes them back and loads the same images again before it boots.
func TestXenHVMBalloonLateReloadsKexec(t *testing.T) {
	f := newFake(t, "")
	f.xenType = "HVM"
	f.balloon = &Balloon{Current: 516096, Out: 8192}
	f.balloonBack = time.Second
	f.balloonLate = 8192
	var out bytes.Buffer
	res := Run(f, &out)
	if res.Err != nil || !f.execed {
		t.Fatalf("err %v execed %v\n%s", res.Err, f.execed, out.String())
	}
	if f.loads != 2 {
		t.Errorf("%d kexec loads, want 2: one before the pages went out, one after they came back", f.loads)
	}
	if f.balloon.Out != 0 {
		t.Errorf("kexec with %d KiB still ballooned out", f.balloon.Out)
	}
	if !strings.Contains(out.String(), "xen balloon: 8192 KiB went out to Xen after the stub took it back") {
		t.Errorf("console does not say why kexec was loaded again:\n%s", out.String())
	}
	if string(f.loadedKernel) != string(f.fs["boot/vmlinuz"]) {
		t.Errorf("the second load staged other kernel bytes")
	}
}

// Pages that go out after the stub took them back and never return: one
// FATAL line and no kexec, although the boot is measured by then.
func TestXenHVMBalloonLateStuckIsFatal(t *testing.T) {
	f := newFake(t, "vtpmboot.timeout=3")
	f.xenType = "HVM"
	f.balloon = &Balloon{Current: 516096, Out: 0}
	// Xen gives nothing back once the late pages are out.
	f.balloonBack = -1
	f.balloonLate = 4096
	var out bytes.Buffer
	Run(f, &out)
	if f.execed || !f.poweredOff {
		t.Errorf("execed %v, powered off %v: want no kexec and power off", f.execed, f.poweredOff)
	}
	if n := strings.Count(out.String(), "FATAL"); n != 1 {
		t.Errorf("%d FATAL lines, want 1", n)
	}
	for _, w := range []string{"FATAL: Xen balloon driver: guest memory is still ballooned out to Xen", "(4096 KiB still out after 3s"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("console lacks %q:\n%s", w, out.String())
		}
	}
	if f.loads != 1 {
		t.Errorf("%d kexec loads, want 1 (no reload while the pages are out)", f.loads)
	}
}

// Not Xen HVM, or no balloon driver: nothing is asked of it and nothing
// waited for. The first case has a driver with pages out, so a stub that
// ignored the guest type would be caught touching it.
func TestNoBalloonNoWait(t *testing.T) {
	for _, c := range []struct {
		typ     string
		balloon *Balloon
	}{
		{"", &Balloon{Current: 516096, Out: 8192}},
		{"HVM", nil},
	} {
		f := newFake(t, "")
		f.xenType, f.balloon, f.balloonBack = c.typ, c.balloon, -1
		var out bytes.Buffer
		if res := Run(f, &out); res.Err != nil || !f.execed {
			t.Fatalf("%q: err %v, execed %v\n%s", c.typ, res.Err, f.execed, out.String())
		}
		for _, call := range f.calls {
			if strings.HasPrefix(call, "balloon") {
				t.Errorf("%q: %s", c.typ, call)
			}
		}
		if strings.Contains(out.String(), "balloon") {
			t.Errorf("%q: balloon on the console:\n%s", c.typ, out.String())
		}
		if f.loads != 1 {
			t.Errorf("%q: %d kexec loads, want 1", c.typ, f.loads)
		}
	}
}
