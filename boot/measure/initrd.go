package measure

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

// InitrdImage is the one builder of the initrd image: the bytes the next
// kernel receives, which are the bytes measured into PCR 5. The stub
// copies it into the sealed memfd it hands to kexec; pcrsim streams it
// into its hashes. The image is the files in order, each but the last
// followed by InitrdPadding zero bytes, computed from the bytes actually
// read. One file is its bytes unchanged; no file is the empty image.
//
// The files together may hold at most entry.MaxInitrdTotalSize bytes.
// Each file must yield exactly the bytes it was opened with (ExactReader):
// a file that changes size while it is read fails the image, in the stub
// and in pcrsim alike.
func InitrdImage(files []Source) Source {
	if len(files) == 1 {
		return files[0]
	}
	return initrdImage{files: files, limit: entry.MaxInitrdTotalSize}
}

type initrdImage struct {
	files []Source
	limit int64
}

// Name joins the file names with spaces, as the event log names them.
func (im initrdImage) Name() string {
	names := make([]string, len(im.files))
	for i, f := range im.files {
		names[i] = f.Name()
	}
	return strings.Join(names, " ")
}

// CacheKey is the files' keys in order, when every file has one: the
// image is a pure function of its files' bytes.
func (im initrdImage) CacheKey() string {
	var b strings.Builder
	b.WriteString("initrd-image:")
	for _, f := range im.files {
		k, ok := f.(cacheKeyer)
		if !ok {
			return ""
		}
		ks := k.CacheKey()
		if ks == "" {
			return ""
		}
		b.WriteString(strconv.Itoa(len(ks)))
		b.WriteByte(':')
		b.WriteString(ks)
	}
	return b.String()
}

func (im initrdImage) Open() (io.ReadCloser, error) {
	return &imageReader{im: im}, nil
}

// imageReader opens each file when the previous one is done, so at most
// one is open at a time.
type imageReader struct {
	im    initrdImage
	i     int           // file being read
	cur   io.ReadCloser // nil between files
	n     int64         // bytes read from the current file
	total int64         // bytes read from all files
	pad   int64         // zero bytes still due before the next file
}

func (r *imageReader) Read(b []byte) (int, error) {
	for {
		if r.pad > 0 {
			n := int(min(int64(len(b)), r.pad))
			clear(b[:n])
			r.pad -= int64(n)
			return n, nil
		}
		if r.i >= len(r.im.files) {
			return 0, io.EOF
		}
		f := r.im.files[r.i]
		if r.cur == nil {
			rc, err := f.Open()
			if err != nil {
				return 0, fmt.Errorf("open %s: %w", f.Name(), err)
			}
			r.cur, r.n = rc, 0
		}
		n, err := r.cur.Read(b)
		r.n += int64(n)
		r.total += int64(n)
		if r.total > r.im.limit {
			return 0, fmt.Errorf("initrds %s: %w: more than %d bytes together", r.im.Name(), entry.ErrTooLarge, r.im.limit)
		}
		if err == io.EOF {
			r.cur.Close()
			r.cur = nil
			if r.i++; r.i < len(r.im.files) {
				r.pad = InitrdPadding(r.n)
			}
			err = nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *imageReader) Close() error {
	if r.cur != nil {
		err := r.cur.Close()
		r.cur = nil
		return err
	}
	return nil
}

// ExactReader yields exactly size bytes of r, the size a file had when it
// was opened and checked, and fails if the file turns out shorter or
// longer. A file that changes while it is read is not something that was
// ever on disk whole; the stub refuses to load it and pcrsim to predict
// it, by this one rule.
func ExactReader(name string, r io.Reader, size int64) io.Reader {
	return &exactReader{name: name, r: r, left: size, size: size}
}

type exactReader struct {
	name       string
	r          io.Reader
	left, size int64
	done       bool
}

func (e *exactReader) Read(b []byte) (int, error) {
	if e.done {
		return 0, io.EOF
	}
	if e.left == 0 {
		// One byte more would mean the file grew.
		var one [1]byte
		n, err := io.ReadFull(e.r, one[:])
		if n > 0 {
			return 0, fmt.Errorf("%s grew beyond %d bytes while being read", e.name, e.size)
		}
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return 0, err
		}
		e.done = true
		return 0, io.EOF
	}
	if int64(len(b)) > e.left {
		b = b[:e.left]
	}
	n, err := e.r.Read(b)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, fmt.Errorf("%s: got %d bytes, expected %d (file changed while being read)", e.name, e.size-e.left, e.size)
		}
		err = nil
	}
	return n, err
}
