package discover

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

// MaxConfigBytes is the budget of configuration bytes one search may read
// on one partition, across every file a configuration pulls in (GRUB2
// source and configfile, syslinux INCLUDE, each BLS entry, grubenv). Each
// file is also capped at entry.MaxConfigSize; without a total, a small
// grub.cfg sourcing a 1 MiB file thousands of times made the interpreter
// lex gigabytes, minutes of CPU in dom0 and in the stub. Real
// configurations are a few hundred KiB at most, everything included.
const MaxConfigBytes = 16 << 20

// ErrBudget is wrapped when a configuration needs more than MaxConfigBytes.
var ErrBudget = errors.New("configuration reads more than the budget")

// budgetFS counts the bytes read through every file opened from it.
type budgetFS struct {
	fs.FS
	mu   sync.Mutex
	left int64
}

func newBudgetFS(fsys fs.FS) *budgetFS { return &budgetFS{FS: fsys, left: MaxConfigBytes} }

func (b *budgetFS) Open(name string) (fs.File, error) {
	f, err := b.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return &budgetFile{File: f, b: b, name: name}, nil
}

// The fs.FS extensions the parsers use pass through; only reads spend.
func (b *budgetFS) Stat(name string) (fs.FileInfo, error)      { return fs.Stat(b.FS, name) }
func (b *budgetFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(b.FS, name) }
func (b *budgetFS) ReadLink(name string) (string, error)       { return fs.ReadLink(b.FS, name) }
func (b *budgetFS) Lstat(name string) (fs.FileInfo, error)     { return fs.Lstat(b.FS, name) }

func (b *budgetFS) spend(name string, n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left -= int64(n)
	if b.left < 0 {
		return fmt.Errorf("%w: %d bytes of configuration files, the last of them /%s (each file is also limited to %d bytes): a loop of source/configfile/INCLUDE?",
			ErrBudget, int64(MaxConfigBytes), name, int64(entry.MaxConfigSize))
	}
	return nil
}

type budgetFile struct {
	fs.File
	b    *budgetFS
	name string
}

func (f *budgetFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	if n > 0 {
		if berr := f.b.spend(f.name, n); berr != nil {
			return n, berr
		}
	}
	return n, err
}

func (f *budgetFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if d, ok := f.File.(fs.ReadDirFile); ok {
		return d.ReadDir(n)
	}
	return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: errors.New("not a directory")}
}

var _ io.Reader = (*budgetFile)(nil)
