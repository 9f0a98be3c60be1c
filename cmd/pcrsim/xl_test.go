package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
)

// TestPredictXL runs --xl-config over a directory of guests sharing real
// disk images: options from the command line xl builds, disks in xvd
// order, vtpmboot.entry= and vtpmboot.disk= (device name and LABEL=)
// applied as the stub applies them, one failing guest (qcow2) that does
// not stop the others, files that are not configs skipped with a note.
func TestPredictXL(t *testing.T) {
	needDiskTools(t)
	cs := formatCases()
	grub, bls := cs[0], cs[3]
	bls.disk.Partitions[0].Label = "bootfs"
	dir := t.TempDir()
	imgs := filepath.Join(dir, "images")
	os.Mkdir(imgs, 0o755)
	build := func(name string, d guestdisk.Disk) {
		if err := guestdisk.Build(d, filepath.Join(imgs, name)); err != nil {
			t.Fatal(err)
		}
	}
	build("grub.img", grub.disk)
	build("bls.img", bls.disk)
	build("data.img", guestdisk.Disk{Partitions: []guestdisk.Partition{{FS: "vfat", SizeMB: 4, Files: []guestdisk.File{{Path: "/data.txt", Data: []byte("x")}}}}})
	os.WriteFile(filepath.Join(imgs, "grub.qcow2"), []byte("QFI\xfb\x00\x00\x00\x03"), 0o644)

	cfgs := filepath.Join(dir, "xen")
	os.Mkdir(cfgs, 0o755)
	guest := func(file, name, extra string, disks ...string) {
		typ := "hvm"
		if name == "hotel" {
			typ = "pvh"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "name = %q\ntype = %q\nkernel = \"/usr/lib/vtpmboot/vmlinuz\"\nramdisk = \"/usr/lib/vtpmboot/initramfs.cpio\"\nmemory = 512\n", name, typ)
		if extra != "" {
			fmt.Fprintf(&b, "extra = %q\n", extra)
		}
		b.WriteString("disk = [ ")
		for i, d := range disks {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", d)
		}
		b.WriteString(" ]\n")
		if err := os.WriteFile(filepath.Join(cfgs, file), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rel := func(img string) string { return "../images/" + img } // relative to the config's directory
	guest("a.cfg", "alpha", "console=hvc0", "format=raw, vdev=xvda, access=rw, target="+rel("grub.img"))
	guest("b.cfg", "bravo", "console=hvc0 vtpmboot.entry=debian", "format=raw, vdev=hda, access=rw, target="+rel("grub.img"))
	guest("c.cfg", "charlie", "", rel("bls.img")+",raw,xvdb,rw", rel("data.img")+",raw,xvda,rw")
	guest("d.cfg", "delta", "vtpmboot.disk=xvdb1", rel("grub.img")+",raw,xvda,rw", rel("bls.img")+",raw,xvdb,rw")
	guest("e.cfg", "echo", "", rel("grub.qcow2")+",qcow2,xvda,rw")
	guest("g.cfg", "golf", "vtpmboot.disk=LABEL=bootfs vtpmboot.frobnicate=1", rel("grub.img")+",raw,xvda,rw", rel("bls.img")+",raw,xvdb,rw")
	// A PVH guest is flagged, not predicted: the stub refuses PVH.
	guest("h.cfg", "hotel", "", "format=raw, vdev=xvda, access=rw, target="+rel("grub.img"))
	os.WriteFile(filepath.Join(cfgs, "README"), []byte("Guests of this host.\n"), 0o644)
	os.WriteFile(filepath.Join(cfgs, "xl.conf"), []byte("autoballoon=\"off\"\n"), 0o644)

	debian := want{grub.want.kernel, grub.want.initrds[:1], "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 ro quiet"}
	expect := []struct {
		guest string
		w     *want
		err   string
	}{
		{"alpha", &grub.want, ""},
		{"bravo", &debian, ""},
		{"charlie", &bls.want, ""},
		{"delta", &bls.want, ""},
		{"echo", nil, "format qcow2 is not supported"},
		{"golf", &bls.want, ""},
		{"hotel", nil, `type pvh: the stub refuses PVH guests: kexec needs Xen soft reset, which xl supports only for type="hvm"`},
	}

	r := pcrsim(t, nil, "predict", "--xl-config", cfgs)
	if r.code != 1 {
		t.Fatalf("exit %d (want 1: two guests failed): %s", r.code, r.stderr)
	}
	var docs []guestDoc
	if err := json.Unmarshal([]byte(r.stdout), &docs); err != nil {
		t.Fatalf("decode %q: %v", r.stdout, err)
	}
	if len(docs) != len(expect) {
		t.Fatalf("%d guests, want %d: %s", len(docs), len(expect), r.stdout)
	}
	for i, e := range expect {
		d := docs[i]
		if d.Guest != e.guest || !strings.HasSuffix(d.Config, ".cfg") {
			t.Errorf("guest %d = %q (%s), want %q", i, d.Guest, d.Config, e.guest)
			continue
		}
		if e.w == nil {
			if !strings.Contains(d.Error, e.err) || d.Banks != nil {
				t.Errorf("%s: error %q, want %q", e.guest, d.Error, e.err)
			}
			continue
		}
		if d.Error != "" {
			t.Errorf("%s: %s", e.guest, d.Error)
			continue
		}
		checkBanks(t, e.guest, d.Banks, *e.w)
	}
	if !strings.Contains(docs[5].Reason, "xvdb1") || len(docs[5].Notes) != 1 || !strings.Contains(docs[5].Notes[0], "vtpmboot.frobnicate") {
		t.Errorf("golf: reason %q, notes %q", docs[5].Reason, docs[5].Notes)
	}
	for _, s := range []string{"README: skipped", "xl.conf: skipped", "7 guests, 2 failed",
		// alpha: kernel + initrd group; bravo: the same kernel, another
		// initrd group; charlie: BLS kernel + initrds; delta and golf reuse.
		"hashed 5 distinct file groups, 5 reused"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}

	// jsonl: one document per line, same values; --no-cache: same values.
	for _, extra := range [][]string{{"--format", "jsonl"}, {"--format", "jsonl", "--no-cache", "--workers", "1"}} {
		r := pcrsim(t, nil, append([]string{"predict", "--xl-config", cfgs}, extra...)...)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 1 || len(lines) != len(expect) {
			t.Fatalf("%q: exit %d, %d lines", extra, r.code, len(lines))
		}
		var d guestDoc
		json.Unmarshal([]byte(lines[1]), &d)
		checkBanks(t, fmt.Sprint(extra), d.Banks, debian)
	}
	// A single file, as a table.
	r = pcrsim(t, nil, "predict", "--xl-config", filepath.Join(cfgs, "b.cfg"), "--format", "table")
	p := debian.pcrs()
	if r.code != 0 || !strings.Contains(r.stdout, "bravo") || !strings.Contains(r.stdout, `0 "Debian GNU/Linux"`) ||
		!strings.Contains(r.stdout, p["sha1"]["4"][:16]+" "+p["sha1"]["5"][:16]) || !strings.Contains(r.stdout, p["sha256"]["5"][:16]) {
		t.Errorf("table: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Usage errors: exit 2, one line.
	for _, c := range [][]string{
		{"--xl-config", cfgs, "--disk", "x"},
		{"--xl-config", filepath.Join(dir, "nope")},
		{"--xl-config", imgs}, // no configs at all
		{"--xl-config", cfgs, "--format", "text"},
		{"--no-cache", "--kernel", "x", "--cmdline", ""},
	} {
		r := pcrsim(t, nil, append([]string{"predict"}, c...)...)
		if r.code != 2 || !strings.HasPrefix(lastLine(r.stderr), "pcrsim predict: --") {
			t.Errorf("%q: exit %d, %q", c, r.code, r.stderr)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// Options past what the stub's kernel keeps of its command line (2047
// bytes on x86) never reach the stub: the guest is an error, not a
// prediction that honours them.
func TestPredictXLCmdlineTooLong(t *testing.T) {
	needDiskTools(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "grub.img")
	if err := guestdisk.Build(formatCases()[0].disk, img); err != nil {
		t.Fatal(err)
	}
	extra := "console=hvc0 " + strings.Repeat("x", 2040) + " vtpmboot.entry=1"
	cfg := filepath.Join(dir, "long.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = \"long\"\ntype = \"hvm\"\nkernel = \"/var/lib/vtpmboot/vmlinuz\"\nextra = %q\ndisk = [ \"format=raw, vdev=xvda, access=rw, target=%s\" ]\n", extra, img)), 0o644)
	r := pcrsim(t, nil, "predict", "--xl-config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "keeps only the first 2047") {
		t.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}
