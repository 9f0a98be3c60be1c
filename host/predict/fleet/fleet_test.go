package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// stuck is a Hasher that never returns, standing in for a guest whose
// files take forever to read (a mock: the real readers are bounded, which
// is why this backstop is hard to reach otherwise).
type stuck struct{ release chan struct{} }

func (s stuck) Hash([]pcrbank.Alg, []measure.Source) (pcrbank.Digests, error) {
	<-s.release
	return nil, os.ErrDeadlineExceeded
}

// A guest over its time limit fails with that reason; the run goes on
// and the other guests still predict.
func TestGuestTimeout(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "sfdisk")
	dir := t.TempDir()
	img := filepath.Join(dir, "g.img")
	err := guestdisk.Build(guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'L' {\n linux /boot/vmlinuz x\n}\n")},
		{Path: "/boot/vmlinuz", Data: fakekernel.Image([]byte("k"))},
	}}}}, img)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "g.cfg")
	os.WriteFile(cfg, []byte("name = \"g\"\ntype = \"hvm\"\nkernel = \"/var/lib/vtpmboot/vmlinuz\"\ndisk = [ \"format=raw, vdev=xvda, access=rw, target="+img+"\" ]\n"), 0o644)
	jobs, _, err := Expand([]string{cfg})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %v, %v", jobs, err)
	}
	s := stuck{make(chan struct{})}
	defer close(s.release)
	o := Options{Banks: []pcrbank.Alg{pcrbank.SHA256}, GuestTimeout: 200 * time.Millisecond}
	start := time.Now()
	r := predictWithin(jobs[0], o, s, &memo{})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "took longer than 200ms") || r.Doc.Error == "" {
		t.Errorf("stuck guest: %v", r.Err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up only after %v", d)
	}
	// The same guest with a working hasher predicts within the limit.
	if r := predictWithin(jobs[0], o, measure.StreamHasher{}, &memo{}); r.Err != nil {
		t.Errorf("working guest: %v", r.Err)
	}
}
