package diskimage

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// The work one disk may cost, across every partition, filesystem and
// operation on it, for as long as the Image lives.
//
// Per-structure bounds (a directory no larger than its filesystem, an
// extent tree at most 5 deep, a FAT chain without revisits) keep each
// operation finite but not cheap: an ext2 directory whose direct and
// indirect pointers all alias one block, in a sparse 16 GiB image that
// takes 5 MB on disk, is 4 million blocks long, and every lookup of a
// name it lacks reads all of them. GRUB scripts and discovery look up
// many names, so the cost multiplies. One budget per disk bounds the
// sum instead, whatever the structure.
//
// Work is counted in bytes read from the disk, in two classes:
//   - metadata: everything read to find files (partition tables,
//     superblocks, inodes, directories, extent/indirect/bmbt blocks,
//     FAT chains, symlink targets). A boot of a Debian-like guest
//     reads 31 KiB of it; stat-ing every name of a 4039-file tree and
//     reading every file, 248 MiB on ext4 (docs/diskimage.md,
//     TestBudgetRealTree). MetadataBudget is 4x that walk and still
//     spent in a fraction of a second (page cache) on a hostile disk.
//   - file data: bytes read from regular files. Callers bound each
//     file (entry.MaxKernelSize, entry.MaxInitrdTotalSize: 1.25 GiB for
//     one boot entry); DataBudget admits several such entries, so
//     pcrsim can predict a menu, while a caller re-reading files in a
//     loop (a GRUB script sourcing a file 20,000 times) still stops.
//
// A touch of a cached metadata block reads nothing but still costs
// CPU, so it is charged hitCost bytes: an unbounded loop over cached
// blocks is bounded too.
const (
	MetadataBudget = 1 << 30
	DataBudget     = 4 << 30
	hitCost        = 256
)

// ErrBudget is wrapped (with ErrCorrupt) by every error once a disk's
// work budget is exhausted; from then on every read of that disk fails.
var ErrBudget = errors.New("work budget exhausted")

// budget is one disk's account. Safe for concurrent use.
type budget struct {
	disk       string
	metaLimit  int64
	dataLimit  int64
	meta, data atomic.Int64
	once       sync.Once
	err        atomic.Pointer[error]
}

func newBudget(disk string) *budget {
	return &budget{disk: disk, metaLimit: MetadataBudget, dataLimit: DataBudget}
}

// charge accounts n bytes of work, failing once either class is over
// its limit. The failure is sticky: a disk found hostile stays refused,
// so no later lookup can succeed on a partial view of it.
func (b *budget) charge(data bool, n int64) error {
	if b == nil {
		return nil
	}
	if e := b.err.Load(); e != nil {
		return *e
	}
	counter, limit, what := &b.meta, b.metaLimit, "filesystem metadata"
	if data {
		counter, limit, what = &b.data, b.dataLimit, "file data"
	}
	if counter.Add(n) <= limit {
		return nil
	}
	b.once.Do(func() {
		var err error = &BudgetError{Disk: b.disk, What: what, Limit: limit}
		b.err.Store(&err)
	})
	return *b.err.Load()
}

// BudgetError is the one error a disk over its work budget gives, for
// every operation from then on. errors.Is matches ErrBudget and
// ErrCorrupt.
type BudgetError struct {
	Disk  string
	What  string // "filesystem metadata" or "file data"
	Limit int64  // bytes
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("disk %s: work budget exhausted (%d MiB of %s read): the filesystem is hostile or corrupt", e.Disk, e.Limit>>20, e.What)
}

func (e *BudgetError) Is(target error) bool { return target == ErrBudget || target == ErrCorrupt }

// hit charges a touch of a cached metadata block.
func (b *budget) hit() error { return b.charge(false, hitCost) }

// used reports the bytes charged so far, for tests and measurements.
func (b *budget) used() (meta, data int64) {
	if b == nil {
		return 0, 0
	}
	return b.meta.Load(), b.data.Load()
}

// meter charges every read through it to a budget before reading.
type meter struct {
	r    io.ReaderAt
	b    *budget
	data bool
}

func (m meter) ReadAt(p []byte, off int64) (int, error) {
	if err := m.b.charge(m.data, int64(len(p))); err != nil {
		return 0, err
	}
	return m.r.ReadAt(p, off)
}

// WorkUsed reports the bytes of metadata and of file data read so far
// from the image (cached metadata touches included), the quantities its
// work budget bounds.
func (img *Image) WorkUsed() (meta, data int64) { return img.b.used() }

// work is what a filesystem needs of its disk's budget: the partition's
// bytes read as file data, and the account to charge cache touches to.
type work struct {
	b    *budget
	data io.ReaderAt
}
