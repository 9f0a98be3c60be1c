package measure

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Source is one file to measure: a kernel or an initrd. Open is called once
// per measurement; the bytes it yields are exactly the bytes measured.
type Source interface {
	// Name identifies the file in traces and event logs (a path, usually).
	Name() string
	Open() (io.ReadCloser, error)
}

// FileSource is a file on the host, streamed from disk.
type FileSource string

func (f FileSource) Name() string { return string(f) }

func (f FileSource) Open() (io.ReadCloser, error) {
	// O_NONBLOCK: a FIFO is refused below, not waited on.
	fh, err := os.OpenFile(string(f), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		fh.Close()
		return nil, fmt.Errorf("open %s: not a regular file", f)
	}
	return struct {
		io.Reader
		io.Closer
	}{ExactReader(string(f), fh, st.Size()), fh}, nil
}

// ReaderAtSource serves bytes already in memory (the stub's sealed memfds):
// measuring reads them where they are, so nothing is read from disk twice.
type ReaderAtSource struct {
	Label string
	R     io.ReaderAt
	Size  int64
}

func (r ReaderAtSource) Name() string { return r.Label }

func (r ReaderAtSource) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(r.R, 0, r.Size)), nil
}

// BytesSource is a byte slice, mostly for tests.
func BytesSource(name string, b []byte) Source {
	return ReaderAtSource{Label: name, R: bytes.NewReader(b), Size: int64(len(b))}
}

// cacheKeyer is the optional identity a caching Hasher (host/predict)
// keys file contents by.
type cacheKeyer interface{ CacheKey() string }
