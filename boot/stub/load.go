//go:build linux

package stub

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/kexec"
	"github.com/vtpmboot/vtpmboot/boot/measure"
)

// loadFiles reads files, in order, into one sealed memfd laid out by the
// measurement contract's initrd rule (measure.InitrdPadding zero bytes
// after every file but the last): that image is both what is measured and
// what is loaded. limit caps the total of the files themselves.
func loadFiles(what string, fsys fs.FS, names []string, limit int64) (*kexec.Image, []int64, error) {
	buf, err := kexec.NewBuffer(what)
	if err != nil {
		return nil, nil, err
	}
	var total int64
	sizes := make([]int64, 0, len(names))
	for i, name := range names {
		if i > 0 {
			if pad := measure.InitrdPadding(sizes[i-1]); pad > 0 {
				if _, err := buf.Write(make([]byte, pad)); err != nil {
					buf.Close()
					return nil, nil, err
				}
			}
		}
		f, size, err := discover.OpenFile(fsys, name, limit-total)
		if err != nil {
			buf.Close()
			if errors.Is(err, entry.ErrTooLarge) && total > 0 {
				err = fmt.Errorf("%w (%d bytes already loaded from the files before it)", err, total)
			}
			return nil, nil, err
		}
		err = buf.ReadFrom(discover.SourceName(name), f, size)
		f.Close()
		if err != nil {
			buf.Close()
			return nil, nil, err
		}
		total += size
		sizes = append(sizes, size)
	}
	im, err := buf.Seal()
	if err != nil {
		return nil, nil, err
	}
	return im, sizes, nil
}
