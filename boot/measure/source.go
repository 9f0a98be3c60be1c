package measure

import (
	"bytes"
	"fmt"
	"io"
	"os"
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
	fh, err := os.Open(string(f))
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
	return fh, nil
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

// paddedSource appends InitrdPadding zero bytes to a source. The padding is
// computed from the bytes actually read, so a file that changes size between
// a stat and the read still gets a correctly aligned successor.
type paddedSource struct{ Source }

func (p paddedSource) Open() (io.ReadCloser, error) {
	rc, err := p.Source.Open()
	if err != nil {
		return nil, err
	}
	return &padReader{rc: rc}, nil
}

// cacheKeyer is the optional identity a caching Hasher (boot/predict)
// keys file contents by; a padded file is different content, so it gets a
// different key.
type cacheKeyer interface{ CacheKey() string }

type keyedPaddedSource struct {
	paddedSource
	key string
}

func (k keyedPaddedSource) CacheKey() string { return k.key }

type padReader struct {
	rc   io.ReadCloser
	n    int64 // bytes of the file read so far
	pad  int64 // zero bytes still to give after EOF; -1 until EOF
	done bool
}

func (r *padReader) Read(b []byte) (int, error) {
	if !r.done {
		n, err := r.rc.Read(b)
		r.n += int64(n)
		if err == io.EOF {
			r.done = true
			r.pad = InitrdPadding(r.n)
			if n > 0 {
				return n, nil
			}
		} else {
			return n, err
		}
	}
	if r.pad == 0 {
		return 0, io.EOF
	}
	n := int64(len(b))
	if n > r.pad {
		n = r.pad
	}
	clear(b[:n])
	r.pad -= n
	return int(n), nil
}

func (r *padReader) Close() error { return r.rc.Close() }
