package loader

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// frame builds a picker answer: the header, then each blob.
func frame(t testing.TB, h pickHeader, blobs ...[]byte) []byte {
	var b bytes.Buffer
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeBlob(&b, bytes.NewReader(hb)); err != nil {
		t.Fatal(err)
	}
	for _, x := range blobs {
		if err := writeBlob(&b, bytes.NewReader(x)); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// FuzzReceive feeds the parent's reader of the picker's answer arbitrary
// bytes: a subverted picker controls them. It must never panic, never
// write outside the directory, and leave files only when it succeeds.
func FuzzReceive(f *testing.F) {
	f.Add(frame(f, pickHeader{Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Cmdline: "root=/dev/xvda1"}, []byte("kernel"), []byte("initrd")))
	f.Add(frame(f, pickHeader{Kernel: "/boot/vmlinuz", Cmdline: ""}, []byte("k")))
	f.Add(frame(f, pickHeader{Error: "disk x: no configuration"}))
	f.Add(frame(f, pickHeader{Kernel: "k", Cmdline: " leading"}, []byte("k")))
	seeds, _ := filepath.Glob("testdata/receive/*")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// One directory for every input, emptied after each: a new
	// directory per input made each run take milliseconds, and input
	// minimization then stalled the fuzzer.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		defer func() {
			os.Remove(filepath.Join(dir, "kernel"))
			os.Remove(filepath.Join(dir, "ramdisk"))
		}()
		p, err := receive(bytes.NewReader(b), dir, []pcrbank.Alg{pcrbank.SHA256})
		ents, _ := os.ReadDir(dir)
		if err != nil {
			if len(ents) != 0 {
				t.Fatalf("error %v left %d files", err, len(ents))
			}
			return
		}
		if p.KernelPath != filepath.Join(dir, "kernel") || (p.InitrdPath != "" && p.InitrdPath != filepath.Join(dir, "ramdisk")) {
			t.Fatalf("files %q %q outside %s", p.KernelPath, p.InitrdPath, dir)
		}
		// The digests are of the bytes in the files.
		for path, d := range map[string]pcrbank.Digests{p.KernelPath: p.KernelDigests, p.InitrdPath: p.InitrdDigests} {
			if path == "" {
				continue
			}
			content, err := os.ReadFile(path)
			if sum := sha256.Sum256(content); err != nil || !bytes.Equal(d[pcrbank.SHA256], sum[:]) {
				t.Fatalf("%s: digest %x, file's %x (%v)", path, d[pcrbank.SHA256], sum, err)
			}
		}
		if c, err := FinalCmdline(p.Cmdline, ""); err != nil || c != p.Cmdline || strings.ContainsRune(p.Cmdline, 0) {
			t.Fatalf("accepted command line %q", p.Cmdline)
		}
	})
}

// FuzzParseArgs: bootloader_args are the admin's, but a malformed one
// must be one error, never a panic.
func FuzzParseArgs(f *testing.F) {
	f.Add("--output=/var/lib/xen/bootloader.3.out\x00--output-format=simple0\x00--output-directory=/var/lib/xen/bootloader.3.d\x00vtpmboot.entry=1\x00/dev/vg/g")
	f.Add("--args=root=/dev/xvda1 vtpmboot.tpm=optional\x00--runas=131075\x00--quiet\x00/x")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseArgs(strings.Split(s, "\x00"))
		if err == nil && (a.Disk == "" || a.Output == "") {
			t.Fatalf("accepted %q without disk or output", s)
		}
	})
}
