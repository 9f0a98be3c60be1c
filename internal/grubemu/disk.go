package grubemu

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// partStart is where the one partition begins (LBA 2048, as sfdisk puts it).
const partStart = 2048 * 512

// writeDisk writes an MBR disk image whose first partition holds files as
// a tar archive: GRUB's tar filesystem reads it, so the config sees the
// files at the same paths under (hdN,msdos1) as under the stub's fs.FS,
// without mkfs per run.
func writeDisk(name string, files map[string][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	mt := time.Unix(0, 0)
	for _, n := range names {
		n = strings.TrimPrefix(n, "/")
		for d := path.Dir(n); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var dl []string
	for d := range dirs {
		dl = append(dl, d)
	}
	sort.Strings(dl)
	for _, d := range dl {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mt, Format: tar.FormatUSTAR}); err != nil {
			return fmt.Errorf("tar %s: %w", d, err)
		}
	}
	for _, n := range names {
		data := files[n]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(n, "/"), Mode: 0o644, Size: int64(len(data)), ModTime: mt, Format: tar.FormatUSTAR}); err != nil {
			return fmt.Errorf("tar %s: %w", n, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("tar %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	// Pad to whole sectors and leave slack GRUB may read ahead into.
	body := buf.Bytes()
	sectors := (len(body)+511)/512 + 16
	mbr := make([]byte, 512)
	e := mbr[446:]
	e[4] = 0x83 // Linux
	binary.LittleEndian.PutUint32(e[8:], partStart/512)
	binary.LittleEndian.PutUint32(e[12:], uint32(sectors))
	mbr[510], mbr[511] = 0x55, 0xaa
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(mbr); err != nil {
		return err
	}
	if _, err := f.WriteAt(body, partStart); err != nil {
		return err
	}
	if err := f.Truncate(partStart + int64(sectors)*512); err != nil {
		return err
	}
	return f.Close()
}
