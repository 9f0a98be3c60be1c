//go:build linux

package stub

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/kexec"
)

// loadFiles reads files, in order and with no padding, into one sealed
// memfd: the concatenation is both what is measured and what is loaded.
// limit caps the total.
func loadFiles(what string, fsys fs.FS, names []string, limit int64) (*kexec.Image, []int64, error) {
	buf, err := kexec.NewBuffer(what)
	if err != nil {
		return nil, nil, err
	}
	var total int64
	sizes := make([]int64, 0, len(names))
	for _, name := range names {
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
