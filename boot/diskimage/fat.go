package diskimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// maxFATDir is the FAT limit of 65536 entries of 32 bytes; a longer
// directory chain is corrupt or hostile.
const maxFATDir = 65536 * 32

type fatFS struct {
	r           io.ReaderAt
	where       string
	bits        int // 12, 16 or 32
	bps, cs     int64
	fatOff      int64 // first FAT, in bytes
	fatBytes    int64
	rootOff     int64 // FAT12/16 fixed root directory
	rootLen     int64
	dataOff     int64
	clusters    uint32 // data clusters, numbered 2..clusters+1
	rootCluster uint32
	mu          sync.Mutex
	winOff      int64 // cached FAT window
	win         []byte
	w           work
}

// looksFAT recognises a FAT boot sector by a BPB that makes sense; the
// checks are strict enough that MBR boot code does not pass them.
func looksFAT(b []byte) bool {
	if !(b[0] == 0xEB && b[2] == 0x90) && b[0] != 0xE9 {
		return false
	}
	le := binary.LittleEndian
	bps, spc := le.Uint16(b[11:]), b[13]
	res, nf := le.Uint16(b[14:]), b[16]
	media := b[21]
	tot := uint32(le.Uint16(b[19:]))
	if tot == 0 {
		tot = le.Uint32(b[32:])
	}
	fsz := uint32(le.Uint16(b[22:]))
	if fsz == 0 {
		fsz = le.Uint32(b[36:])
	}
	return (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096) && spc != 0 && spc&(spc-1) == 0 &&
		res != 0 && nf >= 1 && nf <= 4 && (media >= 0xF8 || media == 0xF0) && tot != 0 && fsz != 0
}

func openFAT(r io.ReaderAt, size int64, where string, w work) (fs.FS, error) {
	b := make([]byte, 512)
	if err := readFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("%s: FAT boot sector: %w", where, err)
	}
	bad := func(format string, a ...any) (fs.FS, error) {
		return nil, fmt.Errorf("%s: FAT boot sector: %w: %s", where, ErrCorrupt, fmt.Sprintf(format, a...))
	}
	if !looksFAT(b) {
		return bad("invalid BIOS parameter block")
	}
	le := binary.LittleEndian
	f := &fatFS{r: r, w: w, where: where, winOff: -1}
	f.bps = int64(le.Uint16(b[11:]))
	f.cs = f.bps * int64(b[13])
	res, nf := int64(le.Uint16(b[14:])), int64(b[16])
	rootEnts := int64(le.Uint16(b[17:]))
	tot := int64(le.Uint16(b[19:]))
	if tot == 0 {
		tot = int64(le.Uint32(b[32:]))
	}
	fsz := int64(le.Uint16(b[22:]))
	if fsz == 0 {
		fsz = int64(le.Uint32(b[36:]))
	}
	if tot*f.bps > size {
		return bad("filesystem claims %d sectors of %d bytes but the partition holds only %d bytes (truncated image?)", tot, f.bps, size)
	}
	rootSecs := (rootEnts*32 + f.bps - 1) / f.bps
	first := res + nf*fsz + rootSecs
	if first >= tot {
		return bad("metadata (%d sectors) fills the whole %d-sector filesystem", first, tot)
	}
	f.clusters = uint32((tot - first) / int64(b[13]))
	switch {
	case f.clusters < 4085:
		f.bits = 12
	case f.clusters < 65525:
		f.bits = 16
	default:
		f.bits = 32
	}
	if f.clusters == 0 {
		return bad("no data clusters")
	}
	f.fatOff, f.fatBytes = res*f.bps, fsz*f.bps
	if need := (int64(f.clusters) + 2) * int64(f.bits) / 8; need > f.fatBytes {
		return bad("FAT of %d bytes is too small for %d clusters", f.fatBytes, f.clusters)
	}
	f.rootOff, f.rootLen = (res+nf*fsz)*f.bps, rootEnts*32
	f.dataOff = first * f.bps
	if f.bits == 32 {
		f.rootCluster = le.Uint32(b[44:])
		if !f.valid(f.rootCluster) {
			return bad("root directory cluster %d out of range", f.rootCluster)
		}
	} else if rootEnts == 0 {
		return bad("FAT%d with no root directory entries", f.bits)
	}
	v := &vfs{b: f, where: where}
	if _, err := f.dirData(&fatNode{dir: true, root: true, cluster: f.rootCluster}); err != nil {
		return nil, fmt.Errorf("%s: root directory: %w", where, err)
	}
	return v, nil
}

func (f *fatFS) valid(c uint32) bool { return c >= 2 && c-2 < f.clusters }
func (f *fatFS) foldCase() bool      { return true }

// next returns the FAT entry for cluster c, reading through a 4 KiB window
// since chains are mostly walked in order.
func (f *fatFS) next(c uint32) (uint32, error) {
	var off int64
	switch f.bits {
	case 12:
		off = int64(c) + int64(c)/2
	case 16:
		off = int64(c) * 2
	default:
		off = int64(c) * 4
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	const winSize = 4096
	if f.winOff < 0 || off < f.winOff || off+4 > f.winOff+int64(len(f.win)) {
		start := off &^ (winSize - 1)
		n := min(int64(winSize+4), f.fatBytes-start)
		if n < 2 {
			return 0, fmt.Errorf("%w: cluster %d past the end of the FAT", ErrCorrupt, c)
		}
		// One buffer for every window: a chain hopping between distant
		// windows reads one per link, and allocating each was most of
		// its cost.
		w := f.win[:0]
		if int64(cap(w)) < n {
			w = make([]byte, 0, winSize+4)
		}
		w = w[:n]
		f.winOff = -1
		if err := readFull(f.r, w, f.fatOff+start); err != nil {
			return 0, fmt.Errorf("FAT: %w", err)
		}
		f.win, f.winOff = w, start
	} else if err := f.w.b.charge(false, 4); err != nil {
		// A chain walk within the cached window reads nothing; charge
		// the entry it would have read so a long walk is still bounded.
		return 0, err
	}
	w := f.win[off-f.winOff:]
	switch f.bits {
	case 12:
		v := uint32(binary.LittleEndian.Uint16(w))
		if c&1 != 0 {
			return v >> 4, nil
		}
		return v & 0xFFF, nil
	case 16:
		return uint32(binary.LittleEndian.Uint16(w)), nil
	default:
		return binary.LittleEndian.Uint32(w) & 0x0FFFFFFF, nil
	}
}

func (f *fatFS) isEOC(v uint32) bool {
	switch f.bits {
	case 12:
		return v >= 0xFF8
	case 16:
		return v >= 0xFFF8
	}
	return v >= 0x0FFFFFF8
}

type run struct{ first, count uint32 }

// chain collects the runs of contiguous clusters from start. With need > 0
// it stops after need clusters (a file's size says how many are used);
// otherwise it follows the chain to its end. Revisiting a cluster is a
// cycle and an error, so a hostile FAT cannot make a read loop.
func (f *fatFS) chain(start uint32, need uint64, maxClusters uint64) ([]run, error) {
	var runs []run
	var total uint64
	c := start
	for {
		if !f.valid(c) {
			return nil, fmt.Errorf("%w: cluster chain from %d reaches invalid cluster %d", ErrCorrupt, start, c)
		}
		if total >= maxClusters || total >= uint64(f.clusters) {
			return nil, fmt.Errorf("%w: cluster chain from %d is longer than %d clusters (cycle?)", ErrCorrupt, start, min(maxClusters, uint64(f.clusters)))
		}
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].count == c {
			runs[n-1].count++
		} else {
			runs = append(runs, run{c, 1})
		}
		total++
		if need > 0 && total == need {
			break
		}
		nx, err := f.next(c)
		if err != nil {
			return nil, err
		}
		if f.isEOC(nx) {
			if need > 0 {
				return nil, fmt.Errorf("%w: cluster chain from %d ends after %d clusters, file needs %d", ErrCorrupt, start, total, need)
			}
			break
		}
		c = nx
	}
	sorted := append([]run(nil), runs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].first < sorted[j].first })
	for i := 1; i < len(sorted); i++ {
		if sorted[i-1].first+sorted[i-1].count > sorted[i].first {
			return nil, fmt.Errorf("%w: cluster chain from %d revisits cluster %d (cycle)", ErrCorrupt, start, sorted[i].first)
		}
	}
	return runs, nil
}

type fatNode struct {
	dir, root bool
	cluster   uint32
	sz        int64
	attr      byte
	mt        time.Time
}

func (n *fatNode) size() int64 {
	if n.dir {
		return 0
	}
	return n.sz
}
func (n *fatNode) mtime() time.Time { return n.mt }
func (n *fatNode) id() uint64       { return uint64(n.cluster) }
func (n *fatNode) mode() fs.FileMode {
	if n.dir {
		return fs.ModeDir | 0o755
	}
	if n.attr&0x01 != 0 {
		return 0o444
	}
	return 0o644
}

func (f *fatFS) root() (vnode, error) {
	return &fatNode{dir: true, root: true, cluster: f.rootCluster}, nil
}

func (f *fatFS) readlink(vnode) (string, error) { return "", errors.New("FAT has no symlinks") }

// runReader reads bytes laid out over cluster runs.
type runReader struct {
	f    *fatFS
	r    io.ReaderAt // the metered metadata or file data reader
	runs []run
	ends []int64 // cumulative byte end of each run
	size int64
}

func (f *fatFS) newRunReader(r io.ReaderAt, runs []run, size int64) *runReader {
	rr := &runReader{f: f, r: r, runs: runs, size: size}
	var end int64
	for _, r := range runs {
		end += int64(r.count) * f.cs
		rr.ends = append(rr.ends, end)
	}
	return rr
}

func (rr *runReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= rr.size {
		return 0, io.EOF
	}
	want := int(min(int64(len(p)), rr.size-off))
	done := 0
	i := sort.Search(len(rr.ends), func(i int) bool { return rr.ends[i] > off })
	for done < want && i < len(rr.runs) {
		pos := off + int64(done)
		runStart := rr.ends[i] - int64(rr.runs[i].count)*rr.f.cs
		n := min(int64(want-done), rr.ends[i]-pos)
		disk := rr.f.dataOff + int64(rr.runs[i].first-2)*rr.f.cs + (pos - runStart)
		if err := readFull(rr.r, p[done:done+int(n)], disk); err != nil {
			return done, fmt.Errorf("cluster data: %w", err)
		}
		done += int(n)
		i++
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

func (f *fatFS) content(v vnode) (io.ReaderAt, error) {
	n := v.(*fatNode)
	if n.sz == 0 {
		return bytes.NewReader(nil), nil
	}
	if n.sz > int64(f.clusters)*f.cs {
		return nil, fmt.Errorf("%w: file size %d is larger than the filesystem", ErrCorrupt, n.sz)
	}
	need := uint64((n.sz + f.cs - 1) / f.cs)
	runs, err := f.chain(n.cluster, need, need)
	if err != nil {
		return nil, err
	}
	return f.newRunReader(f.w.data, runs, n.sz), nil
}

func (f *fatFS) dirData(n *fatNode) ([]byte, error) {
	if n.root && f.bits != 32 {
		b := make([]byte, f.rootLen)
		if err := readFull(f.r, b, f.rootOff); err != nil {
			return nil, fmt.Errorf("root directory: %w", err)
		}
		return b, nil
	}
	runs, err := f.chain(n.cluster, 0, uint64(maxFATDir/f.cs)+1)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	rr := f.newRunReader(f.r, runs, 0)
	rr.size = rr.ends[len(rr.ends)-1]
	b := make([]byte, rr.size)
	if _, err := rr.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	return b, nil
}

func lfnChecksum(short []byte) byte {
	var s byte
	for _, c := range short[:11] {
		s = (s>>1 | s<<7) + c
	}
	return s
}

func fatTime(d, t uint16) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Date(1980+int(d>>9), time.Month(d>>5&0xF), int(d&0x1F), int(t>>11), int(t>>5&0x3F), int(t&0x1F)*2, 0, time.UTC)
}

func shortName(e []byte) string {
	base := strings.TrimRight(string(e[0:8]), " ")
	if len(base) > 0 && base[0] == 0x05 {
		base = "\xe5" + base[1:]
	}
	ext := strings.TrimRight(string(e[8:11]), " ")
	// Windows NT stores all-lowercase 8.3 names upper case plus these flags.
	if e[12]&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if e[12]&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext != "" {
		return base + "." + ext
	}
	return base
}

func (f *fatFS) scanDir(v vnode, fn func(vdirent) bool) error {
	n := v.(*fatNode)
	data, err := f.dirData(n)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	var lfn []uint16
	var lfnSum byte
	lfnNext := -1 // expected next sequence number, -1 when not inside an LFN run
	for off := 0; off+32 <= len(data); off += 32 {
		e := data[off : off+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 {
			lfnNext = -1
			continue
		}
		attr := e[11]
		if attr&0x3F == 0x0F {
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 {
				lfn = make([]uint16, 13*seq)
				lfnSum, lfnNext = e[13], seq
			}
			if lfnNext != seq || seq == 0 || e[13] != lfnSum || 13*seq > len(lfn) {
				lfnNext = -1
				continue
			}
			chars := lfn[13*(seq-1):]
			for i, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				chars[i] = le.Uint16(e[o:])
			}
			lfnNext = seq - 1
			continue
		}
		name := ""
		if lfnNext == 0 && lfnChecksum(e) == lfnSum {
			for i, c := range lfn {
				if c == 0 {
					lfn = lfn[:i]
					break
				}
			}
			name = string(utf16.Decode(lfn))
		}
		lfnNext = -1
		if attr&0x08 != 0 {
			continue // volume label
		}
		if name == "" {
			name = shortName(e)
		}
		if name == "." || name == ".." || name == "" || strings.ContainsAny(name, "/\x00") {
			continue
		}
		node := &fatNode{
			dir:     attr&0x10 != 0,
			cluster: uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])),
			sz:      int64(le.Uint32(e[28:])),
			attr:    attr,
			mt:      fatTime(le.Uint16(e[24:]), le.Uint16(e[22:])),
		}
		if f.bits != 32 {
			node.cluster &= 0xFFFF
		}
		typ := fs.FileMode(0)
		if node.dir {
			typ = fs.ModeDir
			if node.cluster == 0 {
				// ".." style pointer to the root; a subdirectory cannot start there.
				continue
			}
		}
		if !fn(vdirent{name: name, typ: typ, load: func() (vnode, error) { return node, nil }}) {
			return nil
		}
	}
	return nil
}

// volumeLabel is the label entry of the root directory. blkid and GRUB
// take it over the boot sector's copy, which tools that relabel a volume
// do not always update.
func (f *fatFS) volumeLabel() (string, bool) {
	data, err := f.dirData(&fatNode{dir: true, root: true, cluster: f.rootCluster})
	if err != nil {
		return "", false
	}
	for off := 0; off+32 <= len(data); off += 32 {
		e := data[off : off+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 || e[11]&0x3F == 0x0F {
			continue
		}
		if e[11]&0x18 == 0x08 {
			name := append([]byte(nil), e[:11]...)
			if name[0] == 0x05 { // a leading 0xE5 byte, escaped as in short names
				name[0] = 0xE5
			}
			return fatLabel(string(name)), true
		}
	}
	return "", false
}
