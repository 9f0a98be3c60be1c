package measure

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

func slurp(t *testing.T, s Source) ([]byte, error) {
	t.Helper()
	rc, err := s.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// The image is written out by hand from the contract: 5 bytes + 3 zero
// bytes, 4 bytes + none, then the last file unpadded; an empty file in the
// middle adds nothing.
func TestInitrdImageLayout(t *testing.T) {
	img := InitrdImage([]Source{
		BytesSource("/a", []byte("aaaaa")),
		BytesSource("/e", nil),
		BytesSource("/b", []byte("bbbb")),
		BytesSource("/c", []byte("cc")),
	})
	got, err := slurp(t, img)
	if err != nil {
		t.Fatal(err)
	}
	if want := "aaaaa\x00\x00\x00bbbbcc"; string(got) != want {
		t.Errorf("image %q, want %q", got, want)
	}
	if img.Name() != "/a /e /b /c" {
		t.Errorf("name %q", img.Name())
	}
	// Read in 1-byte pieces: the same bytes.
	rc, _ := img.Open()
	one, err := io.ReadAll(iotest.OneByteReader(rc))
	if err != nil || !bytes.Equal(one, got) {
		t.Errorf("one byte at a time: %q, %v", one, err)
	}
	if got, _ := slurp(t, InitrdImage(nil)); len(got) != 0 {
		t.Errorf("no initrd: %q", got)
	}
	single := BytesSource("/only", []byte("x"))
	if InitrdImage([]Source{single}) != single {
		t.Error("one initrd is not its own image")
	}
}

type keyedBytes struct {
	Source
	key string
}

func (k keyedBytes) CacheKey() string { return k.key }

func TestInitrdImageCacheKey(t *testing.T) {
	a, b := keyedBytes{BytesSource("/a", []byte("1")), "k:a"}, keyedBytes{BytesSource("/b", []byte("2")), "k:b"}
	k1 := InitrdImage([]Source{a, b}).(cacheKeyer).CacheKey()
	k2 := InitrdImage([]Source{b, a}).(cacheKeyer).CacheKey()
	if k1 == "" || k1 == k2 {
		t.Errorf("keys %q and %q: want distinct, non-empty keys for different orders", k1, k2)
	}
	if k := InitrdImage([]Source{a, BytesSource("/c", nil)}).(cacheKeyer).CacheKey(); k != "" {
		t.Errorf("a file without a key gave the image key %q", k)
	}
}

// One rule for a file whose size changes while it is read: shorter or
// longer than when it was opened fails, naming the file.
func TestExactReader(t *testing.T) {
	if b, err := io.ReadAll(ExactReader("/f", strings.NewReader("abcd"), 4)); err != nil || string(b) != "abcd" {
		t.Errorf("exact: %q, %v", b, err)
	}
	if _, err := io.ReadAll(ExactReader("/boot/initrd", strings.NewReader("short"), 10)); err == nil || !strings.Contains(err.Error(), "/boot/initrd") || !strings.Contains(err.Error(), "changed") {
		t.Errorf("short: %v", err)
	}
	if _, err := io.ReadAll(ExactReader("/boot/vmlinuz", strings.NewReader("longer than said"), 4)); err == nil || !strings.Contains(err.Error(), "grew") {
		t.Errorf("long: %v", err)
	}
	eio := errors.New("EIO")
	if _, err := io.ReadAll(ExactReader("/f", iotest.ErrReader(eio), 4)); !errors.Is(err, eio) {
		t.Errorf("read error: %v", err)
	}
}

// A host file (FileSource) that grows between open and the end of the
// read fails the measurement rather than measuring a mix.
func TestFileSourceChangingSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "initrd")
	os.WriteFile(p, []byte("1234"), 0o644)
	rc, err := FileSource(p).Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	os.WriteFile(p, []byte("12345678"), 0o644) // same inode, now longer
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "grew") {
		t.Errorf("grown file: %v", err)
	}
}

// The files together are capped, whatever each file's own limit was.
func TestInitrdImageLimit(t *testing.T) {
	img := initrdImage{files: []Source{BytesSource("/a", make([]byte, 6)), BytesSource("/b", make([]byte, 6))}, limit: 10}
	if _, err := slurp(t, img); !errors.Is(err, entry.ErrTooLarge) || !strings.Contains(err.Error(), "/a /b") {
		t.Errorf("over the limit: %v", err)
	}
	open := initrdImage{files: []Source{BytesSource("/a", []byte("x")), failing{}}, limit: 10}
	if _, err := slurp(t, open); err == nil || !strings.Contains(err.Error(), "open /gone") {
		t.Errorf("open failure: %v", err)
	}
}

type failing struct{}

func (failing) Name() string                 { return "/gone" }
func (failing) Open() (io.ReadCloser, error) { return nil, os.ErrNotExist }
