package diskimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"sync"
	"time"
)

// ext2/3/4 incompat features this reader understands. Anything else changes
// the on-disk layout in ways we would misread, so it is refused.
const (
	extIncompatFiletype   = 0x2
	extIncompatRecover    = 0x4 // journal needs replay; we ignore the journal by design
	extIncompatMetaBG     = 0x10
	extIncompatExtents    = 0x40
	extIncompat64bit      = 0x80
	extIncompatMMP        = 0x100
	extIncompatFlexBG     = 0x200
	extIncompatCsumSeed   = 0x2000
	extIncompatLargeDir   = 0x4000
	extIncompatInlineData = 0x8000
	extIncompatCasefold   = 0x20000

	extIncompatKnown = extIncompatFiletype | extIncompatRecover | extIncompatMetaBG | extIncompatExtents |
		extIncompat64bit | extIncompatMMP | extIncompatFlexBG | extIncompatCsumSeed | extIncompatLargeDir |
		extIncompatInlineData | extIncompatCasefold

	extFlagIndex   = 0x1000
	extFlagEncrypt = 0x800
	extFlagExtents = 0x80000
	extFlagInline  = 0x10000000
	extFlagVerity  = 0x100000

	extRootIno    = 2
	extMaxDepth   = 5 // the kernel's EXT4_MAX_EXTENT_DEPTH
	extCacheNodes = 16
)

type extFS struct {
	r            io.ReaderAt
	w            work
	where        string
	bs           int64
	blocks       uint64
	firstData    uint64
	bpg, ipg     uint64
	inodes       uint64
	groups       uint64
	inodeSize    int64
	descSize     int64
	incompat     uint32
	firstMetaBG  uint64
	sparseSuper  bool
	hasFiletype  bool
	size         int64
	cacheMu      sync.Mutex
	cache        map[uint64][]byte // metadata blocks (extent nodes, indirect blocks)
	maxBlockFile uint64            // largest logical block count a block-mapped file can address
}

// openExt validates the superblock and returns the filesystem and its type
// name ("ext2", "ext3" or "ext4").
func openExt(r io.ReaderAt, size int64, where string, w work) (fs.FS, string, error) {
	sb := make([]byte, 1024)
	if err := readFull(r, sb, 1024); err != nil {
		return nil, "ext4", fmt.Errorf("%s: ext superblock: %w", where, err)
	}
	le := binary.LittleEndian
	compat, incompat, rocompat := le.Uint32(sb[0x5C:]), le.Uint32(sb[0x60:]), le.Uint32(sb[0x64:])
	typ := "ext2"
	if compat&0x4 != 0 {
		typ = "ext3"
	}
	if incompat&^(extIncompatFiletype|extIncompatRecover|extIncompatMetaBG) != 0 || rocompat&^0x7 != 0 {
		typ = "ext4"
	}
	bad := func(format string, a ...any) (fs.FS, string, error) {
		return nil, typ, fmt.Errorf("%s: %s superblock: %w: %s", where, typ, ErrCorrupt, fmt.Sprintf(format, a...))
	}
	if incompat&^extIncompatKnown != 0 {
		return nil, typ, fmt.Errorf("%s: %w: %s with unknown incompatible features 0x%x", where, ErrUnsupported, typ, incompat&^extIncompatKnown)
	}
	logbs := le.Uint32(sb[0x18:])
	if logbs > 6 {
		return bad("block size 2^(10+%d)", logbs)
	}
	e := &extFS{r: r, w: w, where: where, bs: 1024 << logbs, size: size, incompat: incompat, cache: map[uint64][]byte{}}
	e.blocks = uint64(le.Uint32(sb[0x4:]))
	if incompat&extIncompat64bit != 0 {
		e.blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	e.firstData = uint64(le.Uint32(sb[0x14:]))
	e.bpg, e.ipg = uint64(le.Uint32(sb[0x20:])), uint64(le.Uint32(sb[0x28:]))
	e.inodes = uint64(le.Uint32(sb[0x0:]))
	e.inodeSize = 128
	if le.Uint32(sb[0x4C:]) >= 1 {
		e.inodeSize = int64(le.Uint16(sb[0x58:]))
	}
	e.descSize = 32
	if incompat&extIncompat64bit != 0 {
		e.descSize = int64(le.Uint16(sb[0xFE:]))
		if e.descSize < 64 || e.descSize > 1024 || e.descSize&(e.descSize-1) != 0 {
			return bad("group descriptor size %d", e.descSize)
		}
	}
	e.firstMetaBG = uint64(le.Uint32(sb[0x104:]))
	e.sparseSuper = rocompat&0x1 != 0
	e.hasFiletype = incompat&extIncompatFiletype != 0
	switch {
	case e.blocks == 0 || e.blocks > uint64(size)/uint64(e.bs):
		return bad("filesystem claims %d blocks of %d bytes but the partition holds only %d bytes (truncated image?)", e.blocks, e.bs, size)
	case e.bpg == 0 || e.bpg > 8*uint64(e.bs):
		return bad("%d blocks per group", e.bpg)
	case e.ipg == 0 || e.ipg > 8*uint64(e.bs):
		return bad("%d inodes per group", e.ipg)
	case e.inodeSize < 128 || e.inodeSize > e.bs || e.inodeSize&(e.inodeSize-1) != 0:
		return bad("inode size %d", e.inodeSize)
	case e.firstData >= e.blocks || (e.bs == 1024) != (e.firstData == 1) && e.firstData != 0:
		return bad("first data block %d", e.firstData)
	}
	e.groups = (e.blocks - e.firstData + e.bpg - 1) / e.bpg
	if e.inodes == 0 || e.inodes > e.groups*e.ipg {
		return bad("%d inodes in %d groups of %d", e.inodes, e.groups, e.ipg)
	}
	if e.groups*uint64(e.descSize) > uint64(size) {
		return bad("%d group descriptors do not fit the partition", e.groups)
	}
	apb := uint64(e.bs / 4)
	e.maxBlockFile = 12 + apb + apb*apb + apb*apb*apb
	v := &vfs{b: e, where: where}
	root, err := e.root()
	if err != nil {
		return nil, typ, fmt.Errorf("%s: root directory: %w", where, err)
	}
	if !root.mode().IsDir() {
		return bad("root inode is not a directory")
	}
	return v, typ, nil
}

func (e *extFS) corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

func (e *extFS) foldCase() bool { return false }

// extFlagCasefold (EXT4_CASEFOLD_FL) makes a directory case-insensitive
// on a filesystem with the casefold feature.
const extFlagCasefold = 0x40000000

// foldsDir: the kernel folds case in a directory with the casefold flag
// on a filesystem with the casefold feature (IS_CASEFOLDED, sb->s_encoding).
func (e *extFS) foldsDir(v vnode) bool {
	return e.incompat&extIncompatCasefold != 0 && v.(*extInode).flags&extFlagCasefold != 0
}

// groupHasSuper says whether group g holds a superblock backup (sparse_super).
func (e *extFS) groupHasSuper(g uint64) bool {
	if !e.sparseSuper || g <= 1 {
		return true
	}
	for _, base := range []uint64{3, 5, 7} {
		n := base
		for n < g {
			n *= base
		}
		if n == g {
			return true
		}
	}
	return false
}

// descOffset is where group g's descriptor lives.
func (e *extFS) descOffset(g uint64) int64 {
	perBlock := uint64(e.bs / e.descSize)
	if e.incompat&extIncompatMetaBG != 0 && g/perBlock >= e.firstMetaBG {
		first := (g / perBlock) * perBlock
		blk := e.firstData + first*e.bpg
		if e.groupHasSuper(first) {
			blk++
		}
		return int64(blk)*e.bs + int64(g%perBlock)*e.descSize
	}
	return int64(e.firstData+1)*e.bs + int64(g)*e.descSize
}

type extInode struct {
	e     *extFS
	ino   uint64
	raw   []byte
	imode uint16
	isize int64
	flags uint32
	mt    int64
}

func (n *extInode) size() int64       { return n.isize }
func (n *extInode) id() uint64        { return n.ino }
func (n *extInode) mtime() time.Time  { return time.Unix(n.mt, 0).UTC() }
func (n *extInode) mode() fs.FileMode { return unixMode(n.imode) }

func (e *extFS) root() (vnode, error) { return e.inode(extRootIno) }

func (e *extFS) inode(ino uint64) (*extInode, error) {
	if ino == 0 || ino > e.inodes {
		return nil, e.corrupt("inode number %d out of range 1..%d", ino, e.inodes)
	}
	g, idx := (ino-1)/e.ipg, (ino-1)%e.ipg
	gd := make([]byte, e.descSize)
	if err := readFull(e.r, gd, e.descOffset(g)); err != nil {
		return nil, fmt.Errorf("group descriptor %d: %w", g, err)
	}
	table := uint64(binary.LittleEndian.Uint32(gd[0x8:]))
	if e.descSize >= 64 {
		table |= uint64(binary.LittleEndian.Uint32(gd[0x28:])) << 32
	}
	off := int64(idx) * e.inodeSize
	if table >= e.blocks || int64(table)*e.bs+off+e.inodeSize > int64(e.blocks)*e.bs {
		return nil, e.corrupt("group descriptor %d: inode table at block %d lies outside the filesystem", g, table)
	}
	raw := make([]byte, e.inodeSize)
	if err := readFull(e.r, raw, int64(table)*e.bs+off); err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	le := binary.LittleEndian
	n := &extInode{e: e, ino: ino, raw: raw, imode: le.Uint16(raw[0:]), flags: le.Uint32(raw[0x20:]), mt: int64(int32(le.Uint32(raw[0x10:])))}
	n.isize = int64(uint64(le.Uint32(raw[0x4:])) | uint64(le.Uint32(raw[0x6C:]))<<32)
	if n.isize < 0 {
		return nil, e.corrupt("inode %d: size %d", ino, uint64(n.isize))
	}
	if n.imode == 0 {
		return nil, e.corrupt("inode %d is unused (mode 0) but referenced", ino)
	}
	if n.flags&extFlagInline == 0 && (n.flags&extFlagExtents != 0 || n.mode().IsRegular() || n.mode().IsDir()) {
		// Logical block numbers are 32-bit in both mapping schemes.
		limit := uint64(1) << 32
		if n.flags&extFlagExtents == 0 {
			limit = e.maxBlockFile
		}
		if uint64(n.isize) > limit*uint64(e.bs) {
			return nil, e.corrupt("inode %d: size %d is beyond what its block map can address", ino, n.isize)
		}
	}
	if n.mode().IsDir() && n.isize > int64(e.blocks)*e.bs {
		return nil, e.corrupt("directory inode %d: size %d is larger than the filesystem", ino, n.isize)
	}
	return n, nil
}

// metaBlock reads a metadata block through a small cache; extent nodes and
// indirect blocks are re-read on every mapping otherwise.
func (e *extFS) metaBlock(blk uint64) ([]byte, error) {
	if blk == 0 || blk >= e.blocks {
		return nil, e.corrupt("block %d outside the filesystem (%d blocks)", blk, e.blocks)
	}
	e.cacheMu.Lock()
	b, ok := e.cache[blk]
	e.cacheMu.Unlock()
	if ok {
		return b, e.w.b.hit()
	}
	b = make([]byte, e.bs)
	if err := readFull(e.r, b, int64(blk)*e.bs); err != nil {
		return nil, fmt.Errorf("block %d: %w", blk, err)
	}
	e.cacheMu.Lock()
	if len(e.cache) >= extCacheNodes {
		clear(e.cache)
	}
	e.cache[blk] = b
	e.cacheMu.Unlock()
	return b, nil
}

const maxRun = 1 << 32

// bmap maps logical block lb of n.
func (n *extInode) bmap(lb uint64) (mapping, error) {
	if n.flags&extFlagExtents != 0 {
		return n.extentMap(lb)
	}
	return n.indirectMap(lb)
}

func (n *extInode) extentMap(lb uint64) (mapping, error) {
	e := n.e
	node := n.raw[0x28 : 0x28+60]
	want := -1
	for level := 0; ; level++ {
		le := binary.LittleEndian
		if len(node) < 12 || le.Uint16(node) != 0xF30A {
			return mapping{}, e.corrupt("inode %d: bad extent header at depth level %d", n.ino, level)
		}
		entries, depth := int(le.Uint16(node[2:])), int(le.Uint16(node[6:]))
		if depth > extMaxDepth || (want >= 0 && depth != want) {
			return mapping{}, e.corrupt("inode %d: extent tree depth %d (expected %s)", n.ino, depth, map[bool]string{true: fmt.Sprint(want), false: fmt.Sprintf("at most %d", extMaxDepth)}[want >= 0])
		}
		if 12+12*entries > len(node) {
			return mapping{}, e.corrupt("inode %d: extent node claims %d entries", n.ino, entries)
		}
		// Last entry whose first logical block is <= lb.
		i := -1
		lo, hi := 0, entries
		for lo < hi {
			m := (lo + hi) / 2
			if uint64(le.Uint32(node[12+12*m:])) <= lb {
				i, lo = m, m+1
			} else {
				hi = m
			}
		}
		if depth == 0 {
			next := uint64(maxRun)
			if i+1 < entries {
				next = uint64(le.Uint32(node[12+12*(i+1):]))
			}
			if i < 0 {
				return mapping{count: next - lb}, nil
			}
			x := node[12+12*i:]
			start, length := uint64(le.Uint32(x)), uint64(le.Uint16(x[4:]))
			uninit := length > 32768
			if uninit {
				length -= 32768
			}
			if lb >= start+length {
				if next <= lb {
					return mapping{}, e.corrupt("inode %d: extents out of order", n.ino)
				}
				return mapping{count: next - lb}, nil
			}
			phys := uint64(le.Uint16(x[6:]))<<32 | uint64(le.Uint32(x[8:]))
			if phys == 0 || phys+length > e.blocks {
				return mapping{}, e.corrupt("inode %d: extent maps to blocks %d..%d outside the filesystem", n.ino, phys, phys+length)
			}
			if uninit {
				return mapping{count: start + length - lb}, nil
			}
			return mapping{phys: phys + lb - start, count: start + length - lb}, nil
		}
		if i < 0 {
			if entries == 0 {
				return mapping{count: maxRun - lb}, nil
			}
			return mapping{count: uint64(le.Uint32(node[12:])) - lb}, nil
		}
		x := node[12+12*i:]
		child := uint64(le.Uint16(x[8:]))<<32 | uint64(le.Uint32(x[4:]))
		b, err := e.metaBlock(child)
		if err != nil {
			return mapping{}, fmt.Errorf("inode %d extent node: %w", n.ino, err)
		}
		node, want = b, depth-1
	}
}

func (n *extInode) indirectMap(lb uint64) (mapping, error) {
	e := n.e
	le := binary.LittleEndian
	apb := uint64(e.bs / 4)
	ptrs := n.raw[0x28 : 0x28+48] // 12 direct pointers
	idx := lb
	if lb >= 12 {
		r, tier, span := lb-12, 1, apb
		for r >= span {
			r -= span
			tier++
			span *= apb
			if tier > 3 {
				return mapping{}, e.corrupt("inode %d: block %d beyond triple-indirect range", n.ino, lb)
			}
		}
		blk := uint64(le.Uint32(n.raw[0x28+4*(11+tier):]))
		cover := span // blocks mapped under blk; r is lb's index among them
		for {
			if blk == 0 {
				// A missing indirect block is a hole over everything it would map.
				return mapping{count: cover - r}, nil
			}
			b, err := e.metaBlock(blk)
			if err != nil {
				return mapping{}, fmt.Errorf("inode %d indirect block: %w", n.ino, err)
			}
			cover /= apb
			if cover == 1 {
				ptrs, idx = b, r
				break
			}
			blk = uint64(le.Uint32(b[4*(r/cover):]))
			r %= cover
		}
	}
	total := uint64(len(ptrs) / 4)
	phys := uint64(le.Uint32(ptrs[4*idx:]))
	cnt := uint64(1)
	for idx+cnt < total {
		p := uint64(le.Uint32(ptrs[4*(idx+cnt):]))
		if (phys == 0) != (p == 0) || (phys != 0 && p != phys+cnt) {
			break
		}
		cnt++
	}
	if phys != 0 && phys+cnt > e.blocks {
		return mapping{}, e.corrupt("inode %d: block pointer %d outside the filesystem", n.ino, phys)
	}
	return mapping{phys: phys, count: cnt}, nil
}

// reader streams a block-mapped inode's bytes from r: the metered
// metadata reader for directories and symlinks, the data reader for files.
func (n *extInode) reader(r io.ReaderAt) blockFile {
	return blockFile{r: r, size: n.isize, blog: uint(bits.TrailingZeros64(uint64(n.e.bs))), ino: n.ino, bmap: n.bmap}
}

// inlineData returns i_block plus the system.data xattr of an inline-data inode.
func (n *extInode) inlineData() ([]byte, error) {
	data := append([]byte(nil), n.raw[0x28:0x28+60]...)
	if n.e.inodeSize > 128 {
		le := binary.LittleEndian
		extra := int(le.Uint16(n.raw[0x80:]))
		start := 128 + extra
		if extra%4 == 0 && start+4 <= len(n.raw) && le.Uint32(n.raw[start:]) == 0xEA020000 {
			base := start + 4
			for off := base; off+16 <= len(n.raw) && le.Uint32(n.raw[off:]) != 0; {
				nameLen, index := int(n.raw[off]), n.raw[off+1]
				voff, vino, vsize := int(le.Uint16(n.raw[off+2:])), le.Uint32(n.raw[off+4:]), int(le.Uint32(n.raw[off+8:]))
				if off+16+nameLen > len(n.raw) {
					return nil, n.e.corrupt("inode %d: xattr name runs past the inode", n.ino)
				}
				name := n.raw[off+16 : off+16+nameLen]
				if index == 7 && string(name) == "data" {
					if vino != 0 {
						return nil, fmt.Errorf("inode %d: %w: inline data in an EA inode", n.ino, ErrUnsupported)
					}
					if vsize < 0 || base+voff+vsize > len(n.raw) {
						return nil, n.e.corrupt("inode %d: inline data xattr (offset %d, %d bytes) runs past the inode", n.ino, voff, vsize)
					}
					data = append(data, n.raw[base+voff:base+voff+vsize]...)
					break
				}
				off += (16 + nameLen + 3) &^ 3
			}
		}
	}
	return data, nil
}

func (e *extFS) content(v vnode) (io.ReaderAt, error) {
	n := v.(*extInode)
	if n.flags&(extFlagEncrypt) != 0 {
		return nil, fmt.Errorf("inode %d: %w: encrypted file", n.ino, ErrUnsupported)
	}
	if n.flags&extFlagInline != 0 {
		data, err := n.inlineData()
		if err != nil {
			return nil, err
		}
		if int64(len(data)) < n.isize {
			return nil, e.corrupt("inode %d: size %d but only %d bytes of inline data", n.ino, n.isize, len(data))
		}
		return bytes.NewReader(data[:n.isize]), nil
	}
	return n.reader(e.w.data), nil
}

func (e *extFS) readlink(v vnode) (string, error) {
	n := v.(*extInode)
	if n.isize > maxSymlinkLen || n.isize == 0 {
		return "", e.corrupt("symlink inode %d: target length %d", n.ino, n.isize)
	}
	if n.flags&(extFlagExtents|extFlagInline) == 0 && n.isize < 60 {
		return string(n.raw[0x28 : 0x28+n.isize]), nil
	}
	ra, err := e.content(n)
	if err != nil {
		return "", err
	}
	b := make([]byte, n.isize)
	if _, err := ra.ReadAt(b, 0); err != nil && err != io.EOF {
		return "", fmt.Errorf("symlink inode %d: %w", n.ino, err)
	}
	return string(b), nil
}

func (e *extFS) scanDir(v vnode, fn func(vdirent) bool) error {
	n := v.(*extInode)
	if !n.mode().IsDir() {
		return fmt.Errorf("inode %d: not a directory", n.ino)
	}
	if n.flags&extFlagEncrypt != 0 {
		return fmt.Errorf("directory inode %d: %w: encrypted directory", n.ino, ErrUnsupported)
	}
	if n.flags&extFlagInline != 0 {
		data, err := n.inlineData()
		if err != nil {
			return err
		}
		// The first four bytes are the parent's inode number, not a dirent.
		if _, err := e.parseDirBlock(n, data[4:60], fn); err != nil {
			return err
		}
		if len(data) > 60 {
			_, err = e.parseDirBlock(n, data[60:], fn)
		}
		return err
	}
	br := n.reader(e.r)
	buf := make([]byte, e.bs)
	nblocks := uint64((n.isize + e.bs - 1) / e.bs)
	for lb := uint64(0); lb < nblocks; {
		m, err := n.bmap(lb)
		if err != nil {
			return fmt.Errorf("directory inode %d: %w", n.ino, err)
		}
		if m.phys == 0 {
			lb += max(m.count, 1) // holes hold no entries
			continue
		}
		if _, err := br.ReadAt(buf, int64(lb)*e.bs); err != nil && err != io.EOF {
			return fmt.Errorf("directory inode %d: %w", n.ino, err)
		}
		more, err := e.parseDirBlock(n, buf, fn)
		if err != nil {
			return fmt.Errorf("directory inode %d block %d: %w", n.ino, lb, err)
		}
		if !more {
			return nil
		}
		lb++
	}
	return nil
}

// parseDirBlock walks linear dirents. htree dx_root/dx_node data hides
// inside the rec_len of a "..", or an inode-0 entry, so a linear walk skips
// it exactly as pre-htree kernels do.
func (e *extFS) parseDirBlock(n *extInode, b []byte, fn func(vdirent) bool) (bool, error) {
	le := binary.LittleEndian
	for off := 0; off < len(b); {
		if off+8 > len(b) {
			return false, e.corrupt("directory entry at offset %d runs past the block", off)
		}
		ino := uint64(le.Uint32(b[off:]))
		rec := int(le.Uint16(b[off+4:]))
		if len(b) == 65536 && (rec == 65535 || rec == 0) {
			rec = 65536
		}
		nameLen := int(b[off+6])
		ft := b[off+7]
		if !e.hasFiletype {
			nameLen |= int(ft) << 8
			ft = 0xFF
		}
		if rec < 8 || rec%4 != 0 || off+rec > len(b) || 8+nameLen > rec {
			return false, e.corrupt("directory entry at offset %d: rec_len %d, name_len %d", off, rec, nameLen)
		}
		name := string(b[off+8 : off+8+nameLen])
		off += rec
		if ino == 0 || nameLen == 0 || name == "." || name == ".." {
			continue
		}
		typ := typUnknown
		switch ft {
		case 1:
			typ = 0
		case 2:
			typ = fs.ModeDir
		case 7:
			typ = fs.ModeSymlink
		}
		d := vdirent{name: name, typ: typ, load: func() (vnode, error) {
			c, err := e.inode(ino)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", name, err)
			}
			return c, nil
		}}
		if !fn(d) {
			return false, nil
		}
	}
	return true, nil
}
