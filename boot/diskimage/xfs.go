package diskimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"sync"
	"time"
)

// XFS, read-only, V4 and V5. The log is never read: a dirty log is ignored
// exactly as `mount -o ro,norecovery` ignores it, so what is read is the
// metadata and data in place, which is also what the stub reads. The
// layouts follow libxfs (xfs_format.h, xfs_da_format.h) as shipped in
// xfsprogs 6.1; every field is big-endian except the CRCs.
const (
	xfsMagic = 0x58465342 // "XFSB"

	xfsVersionMask      = 0x000f
	xfsVersionAttr      = 0x0010
	xfsVersionNlink     = 0x0020
	xfsVersionQuota     = 0x0040
	xfsVersionAlign     = 0x0080
	xfsVersionDalign    = 0x0100
	xfsVersionShared    = 0x0200
	xfsVersionLogV2     = 0x0400
	xfsVersionSector    = 0x0800
	xfsVersionExtFlg    = 0x1000
	xfsVersionDirV2     = 0x2000
	xfsVersionBorg      = 0x4000 // ASCII case-insensitive names (-n version=ci)
	xfsVersionMoreBits  = 0x8000
	xfsVersionOKBits    = xfsVersionMask | xfsVersionAttr | xfsVersionNlink | xfsVersionQuota | xfsVersionAlign | xfsVersionDalign | xfsVersionShared | xfsVersionLogV2 | xfsVersionSector | xfsVersionExtFlg | xfsVersionDirV2 | xfsVersionBorg | xfsVersionMoreBits
	xfsFeatures2OKBits  = 0x2 | 0x8 | 0x80 | 0x200 // lazysbcount, attr2, projid32, ftype
	xfsFeatures2CRC     = 0x100
	xfsFeatures2Ftype   = 0x200
	xfsIncompatFtype    = 0x1
	xfsIncompatSpinodes = 0x2
	xfsIncompatMetaUUID = 0x4
	xfsIncompatBigtime  = 0x8
	xfsIncompatRepair   = 0x10
	xfsIncompatNrext64  = 0x20
	xfsIncompatKnown    = xfsIncompatFtype | xfsIncompatSpinodes | xfsIncompatMetaUUID | xfsIncompatBigtime | xfsIncompatNrext64

	xfsInodeMagic   = 0x494e // "IN"
	xfsFmtDev       = 0
	xfsFmtLocal     = 1
	xfsFmtExtents   = 2
	xfsFmtBtree     = 3
	xfsDiflagRT     = 0x1
	xfsDiflag2Big   = 0x8
	xfsDiflag2Nrx64 = 0x10

	xfsBmapMagic   = 0x424d4150 // "BMAP", V4 bmbt block
	xfsBmap3Magic  = 0x424d4133 // "BMA3"
	xfsDir2Block   = 0x58443242 // "XD2B"
	xfsDir2Data    = 0x58443244 // "XD2D"
	xfsDir3Block   = 0x58444233 // "XDB3"
	xfsDir3Data    = 0x58444433 // "XDD3"
	xfsSymlinkMag  = 0x58534c4d // "XSLM"
	xfsSymlinkHdr  = 56
	xfsSymlinkMax  = 1023 // XFS_SYMLINK_MAXLEN is 1024 and xfs_symlink refuses pathlen >= it
	xfsMaxFileOff  = 1<<54 - 1 + 1<<21 - 1
	xfsMaxExtLen   = 1<<21 - 1
	xfsDirLeafOff  = 1 << 35 // XFS_DIR2_LEAF_OFFSET: data blocks live below it
	xfsMaxInumber  = 1<<56 - 1
	xfsCacheBlocks = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// xfsCRCOK checks a V5 metadata CRC: CRC-32C of the buffer with its own
// CRC field taken as zero, stored little-endian (xfs_verify_cksum).
func xfsCRCOK(b []byte, off int) bool {
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, b[off+4:])
	return c == binary.LittleEndian.Uint32(b[off:])
}

type xfsFS struct {
	r        io.ReaderAt
	where    string
	bs       int64
	blog     uint
	agblocks uint64
	agblklog uint
	agcount  uint64
	dblocks  uint64
	// agflBlock is the last AG block holding AG headers (sb, AGF, AGI,
	// AGFL); no extent may start at or before it (xfs_verify_agbno).
	agflBlock  uint64
	isize      int64
	inopblog   uint
	dirBlk     int64 // directory block size in bytes
	dirFSB     uint64
	v5         bool
	ftype      bool
	ci         bool
	metaUUID   [16]byte
	rootIno    uint64
	coreSize   int64
	bmbtHdr    int64
	bmbtLevels int

	cacheMu sync.Mutex
	cache   map[uint64][]byte // verified bmbt blocks by linear block number
	w       work
}

// openXFS validates the superblock (CRC included on V5) and the root inode.
func openXFS(r io.ReaderAt, size int64, where string, w work) (fs.FS, *xfsFS, error) {
	sb := make([]byte, 512)
	if err := readFull(r, sb, 0); err != nil {
		return nil, nil, fmt.Errorf("%s: xfs superblock: %w", where, err)
	}
	be := binary.BigEndian
	bad := func(format string, a ...any) (fs.FS, *xfsFS, error) {
		return nil, nil, fmt.Errorf("%s: xfs superblock: %w: %s", where, ErrCorrupt, fmt.Sprintf(format, a...))
	}
	unsupported := func(format string, a ...any) (fs.FS, *xfsFS, error) {
		return nil, nil, fmt.Errorf("%s: %w: xfs %s; %s", where, ErrUnsupported, fmt.Sprintf(format, a...), Advice("xfs"))
	}
	if be.Uint32(sb) != xfsMagic {
		return bad("magic 0x%08x", be.Uint32(sb))
	}
	x := &xfsFS{r: r, w: w, where: where, cache: map[uint64][]byte{}}
	version := be.Uint16(sb[100:])
	features2 := be.Uint32(sb[200:])
	sectsize := int64(be.Uint16(sb[102:]))
	switch version & xfsVersionMask {
	case 5:
		x.v5 = true
	case 4:
		if version&^xfsVersionOKBits != 0 || (version&xfsVersionMoreBits != 0 && features2&^xfsFeatures2OKBits != 0) {
			return unsupported("V4 feature bits 0x%04x/0x%08x", version, features2)
		}
		if version&xfsVersionDirV2 == 0 || version&xfsVersionExtFlg == 0 {
			return unsupported("V4 without v2 directories or unwritten extents (the kernel refuses it too)")
		}
	default:
		return unsupported("version %d", version&xfsVersionMask)
	}
	x.ftype = version&xfsVersionMoreBits != 0 && features2&xfsFeatures2Ftype != 0
	x.ci = version&xfsVersionBorg != 0
	if x.v5 {
		if sectsize < 512 || sectsize > 32768 || sectsize&(sectsize-1) != 0 {
			return bad("sector size %d", sectsize)
		}
		if sectsize > int64(len(sb)) {
			sb = make([]byte, sectsize)
			if err := readFull(r, sb, 0); err != nil {
				return nil, nil, fmt.Errorf("%s: xfs superblock: %w", where, err)
			}
		}
		if !xfsCRCOK(sb[:sectsize], 224) {
			return bad("CRC mismatch")
		}
		incompat := be.Uint32(sb[216:])
		if incompat&xfsIncompatRepair != 0 {
			return unsupported("filesystem is marked as needing xfs_repair (the kernel refuses to mount it)")
		}
		if incompat&^xfsIncompatKnown != 0 {
			return unsupported("incompatible features 0x%x this reader does not know", incompat&^xfsIncompatKnown)
		}
		// Unknown ro_compat features are safe to read (the kernel mounts
		// such a filesystem read-only); log_incompat only matters to log
		// recovery, which never happens here.
		x.ftype = incompat&xfsIncompatFtype != 0
		copy(x.metaUUID[:], sb[32:48])
		if incompat&xfsIncompatMetaUUID != 0 {
			copy(x.metaUUID[:], sb[248:264])
		}
	} else if features2&xfsFeatures2CRC != 0 {
		return bad("V4 superblock with the CRC feature bit")
	}
	bsize := be.Uint32(sb[4:])
	x.blog = uint(sb[120])
	x.dblocks = be.Uint64(sb[8:])
	x.agblocks = uint64(be.Uint32(sb[84:]))
	x.agcount = uint64(be.Uint32(sb[88:]))
	x.agblklog = uint(sb[124])
	x.isize = int64(be.Uint16(sb[104:]))
	inodelog := uint(sb[122])
	x.inopblog = uint(sb[123])
	inopblock := int64(be.Uint16(sb[106:]))
	dirblklog := uint(sb[192])
	x.rootIno = be.Uint64(sb[56:])
	minBS := uint32(512)
	if x.v5 {
		minBS = 1024
	}
	switch {
	case bsize < minBS || bsize > 65536 || x.blog > 16 || bsize != 1<<x.blog:
		return bad("block size %d (log %d)", bsize, x.blog)
	case sectsize < 512 || sectsize > int64(bsize) || sectsize&(sectsize-1) != 0:
		return bad("sector size %d", sectsize)
	case x.isize != 256 && x.isize != 512 && x.isize != 1024 && x.isize != 2048,
		x.isize != 1<<inodelog, x.isize > int64(bsize), x.v5 && x.isize < 512:
		return bad("inode size %d (log %d)", x.isize, inodelog)
	case inopblock != int64(bsize)/x.isize || x.blog-inodelog != x.inopblog:
		return bad("%d inodes per block (log %d)", inopblock, x.inopblog)
	case dirblklog+x.blog > 16:
		return bad("directory block log %d", dirblklog)
	case x.agblocks < 64 || x.agblklog > 31 || uint64(1)<<x.agblklog < x.agblocks || uint64(1)<<x.agblklog >= 2*x.agblocks:
		return bad("%d blocks per AG (log %d)", x.agblocks, x.agblklog)
	case x.agcount == 0 || x.dblocks == 0 || (x.dblocks+x.agblocks-1)/x.agblocks != x.agcount:
		return bad("%d blocks in %d AGs of %d", x.dblocks, x.agcount, x.agblocks)
	case x.dblocks > uint64(size)>>x.blog:
		return bad("filesystem claims %d blocks of %d bytes but the partition holds only %d bytes (truncated image?)", x.dblocks, bsize, size)
	case sb[126] != 0:
		return unsupported("filesystem with mkfs still in progress (sb_inprogress set)")
	}
	x.bs = int64(bsize)
	x.dirBlk = x.bs << dirblklog
	x.dirFSB = 1 << dirblklog
	x.agflBlock = uint64(3*sectsize) >> x.blog
	x.coreSize, x.bmbtHdr = 100, 24
	if x.v5 {
		x.coreSize, x.bmbtHdr = 176, 72
	}
	x.bmbtLevels = x.maxBmbtLevels(x.v5 && be.Uint32(sb[216:])&xfsIncompatNrext64 != 0)
	v := &vfs{b: x, where: where}
	root, err := x.root()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: xfs root directory: %w", where, err)
	}
	if !root.mode().IsDir() {
		return bad("root inode %d is not a directory", x.rootIno)
	}
	return v, x, nil
}

// maxBmbtLevels mirrors xfs_bmap_compute_maxlevels for the data fork: a
// deeper tree is refused by the kernel, and here.
func (x *xfsFS) maxBmbtLevels(nrext64 bool) int {
	maxLeafEnts := uint64(1)<<31 - 1
	if nrext64 {
		maxLeafEnts = 1<<48 - 1
	}
	const maxRootRecs = 3 // xfs_bmdr_maxrecs(XFS_BMDR_SPACE_CALC(MINDBTPTRS), 0)
	minRecs := uint64(x.bs-x.bmbtHdr) / 16 / 2
	blocks := (maxLeafEnts + minRecs - 1) / minRecs
	level := 1
	for ; blocks > 1; level++ {
		if blocks <= maxRootRecs {
			blocks = 1
		} else {
			blocks = (blocks + minRecs - 1) / minRecs
		}
	}
	return level
}

func (x *xfsFS) corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

func (x *xfsFS) foldCase() bool  { return false }
func (x *xfsFS) asciiFold() bool { return x.ci }

// fsbToBlock turns a filesystem block number (AG number in the high bits)
// into a linear block of the device, checking that the run [fsb, fsb+n)
// lies inside one AG, after its headers, and inside the filesystem
// (xfs_verify_fsbext).
func (x *xfsFS) fsbToBlock(fsb, n uint64) (uint64, bool) {
	agno, agbno := fsb>>x.agblklog, fsb&(1<<x.agblklog-1)
	if n == 0 || agno >= x.agcount || agbno <= x.agflBlock || agbno >= x.agblocks || n > x.agblocks-agbno {
		return 0, false
	}
	blk := agno*x.agblocks + agbno
	if blk+n > x.dblocks {
		return 0, false
	}
	return blk, true
}

type xfsInode struct {
	x       *xfsFS
	ino     uint64
	raw     []byte
	imode   uint16
	format  byte
	flags   uint16
	flags2  uint64
	isize   int64
	mt      time.Time
	fork    []byte // the data fork's literal area
	nextent uint64
}

func (n *xfsInode) size() int64       { return n.isize }
func (n *xfsInode) id() uint64        { return n.ino }
func (n *xfsInode) mtime() time.Time  { return n.mt }
func (n *xfsInode) mode() fs.FileMode { return unixMode(n.imode) }

func (x *xfsFS) root() (vnode, error) { return x.inode(x.rootIno) }

// inode reads and verifies inode ino as xfs_dinode_verify does, as far as
// reading the data fork needs.
func (x *xfsFS) inode(ino uint64) (*xfsInode, error) {
	agno := ino >> (x.agblklog + x.inopblog)
	agbno := (ino >> x.inopblog) & (1<<x.agblklog - 1)
	if ino == 0 || ino > xfsMaxInumber || agno >= x.agcount || agbno >= x.agblocks || agno*x.agblocks+agbno >= x.dblocks {
		return nil, x.corrupt("inode number %d outside the filesystem", ino)
	}
	off := int64(agno*x.agblocks+agbno)*x.bs + int64(ino&(1<<x.inopblog-1))*x.isize
	raw := make([]byte, x.isize)
	if err := readFull(x.r, raw, off); err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	be := binary.BigEndian
	bad := func(format string, a ...any) (*xfsInode, error) {
		return nil, x.corrupt("inode %d: %s", ino, fmt.Sprintf(format, a...))
	}
	if be.Uint16(raw) != xfsInodeMagic {
		return bad("bad magic 0x%04x", be.Uint16(raw))
	}
	ver := raw[4]
	switch {
	case x.v5 && ver != 3, !x.v5 && ver != 1 && ver != 2:
		return bad("inode version %d on a V%d filesystem", ver, map[bool]int{true: 5, false: 4}[x.v5])
	}
	n := &xfsInode{x: x, ino: ino, raw: raw, imode: be.Uint16(raw[2:]), format: raw[5], flags: be.Uint16(raw[90:])}
	if x.v5 {
		if !xfsCRCOK(raw, 100) {
			return bad("CRC mismatch")
		}
		if got := be.Uint64(raw[152:]); got != ino {
			return bad("records inode number %d (misdirected inode pointer)", got)
		}
		if !bytes.Equal(raw[160:176], x.metaUUID[:]) {
			return bad("belongs to filesystem %s", uuidString(raw[160:176]))
		}
		n.flags2 = be.Uint64(raw[120:])
	}
	if n.imode == 0 {
		return bad("unused (mode 0) but referenced")
	}
	size := be.Uint64(raw[56:])
	if size>>63 != 0 {
		return bad("size %d", size)
	}
	n.isize = int64(size)
	n.mt = xfsTime(raw[40:48], n.flags2&xfsDiflag2Big != 0)
	if n.flags2&xfsDiflag2Nrx64 != 0 {
		n.nextent = be.Uint64(raw[24:])
	} else {
		n.nextent = uint64(be.Uint32(raw[76:]))
	}
	litino := x.isize - x.coreSize
	dsize := litino
	if fo := int64(raw[82]) * 8; fo != 0 {
		if n.format == xfsFmtDev || fo >= litino {
			return bad("attribute fork offset %d", fo)
		}
		dsize = fo
	}
	n.fork = raw[x.coreSize : x.coreSize+dsize]
	m := n.mode()
	if !m.IsRegular() && !m.IsDir() && m&fs.ModeSymlink == 0 {
		if m&fs.ModeIrregular != 0 {
			return bad("mode 0%o", n.imode)
		}
		return n, nil // devices, fifos, sockets: nothing to read
	}
	if (m.IsDir() || m&fs.ModeSymlink != 0) && size == 0 {
		return bad("zero-length directory or symlink")
	}
	switch n.format {
	case xfsFmtLocal:
		if m.IsRegular() || size > uint64(dsize) || n.nextent != 0 {
			return bad("local format with size %d (data fork holds %d)", size, dsize)
		}
	case xfsFmtExtents:
		if (m.IsDir() || m&fs.ModeSymlink != 0) && size <= uint64(dsize) {
			return bad("small directory or symlink not in local format")
		}
		if n.nextent > uint64(dsize)/16 {
			return bad("%d extents but the data fork holds at most %d", n.nextent, dsize/16)
		}
		if err := n.checkExtentList(); err != nil {
			return nil, err
		}
	case xfsFmtBtree:
		if (m.IsDir() || m&fs.ModeSymlink != 0) && size <= uint64(dsize) {
			return bad("small directory or symlink not in local format")
		}
		if dsize < 4+16 {
			return bad("btree root in a %d-byte data fork", dsize)
		}
	default:
		return bad("data fork format %d", n.format)
	}
	if m.IsDir() && size > xfsDirLeafOff {
		return bad("directory size %d beyond the directory data space", size)
	}
	return n, nil
}

// xfsTime decodes a timestamp: seconds and nanoseconds, or with bigtime
// nanoseconds since 1901-12-13 (XFS_BIGTIME_EPOCH_OFFSET = 2^31 s).
func xfsTime(b []byte, big bool) time.Time {
	be := binary.BigEndian
	if big {
		ns := be.Uint64(b)
		return time.Unix(int64(ns/1e9)-1<<31, int64(ns%1e9)).UTC()
	}
	return time.Unix(int64(int32(be.Uint32(b))), int64(be.Uint32(b[4:])%1e9)).UTC()
}

// xfsExtent is one bmbt record.
type xfsExtent struct {
	off, fsb, count uint64
	unwritten       bool
}

func decodeExtent(b []byte) xfsExtent {
	be := binary.BigEndian
	l0, l1 := be.Uint64(b), be.Uint64(b[8:])
	return xfsExtent{
		off:       (l0 &^ (1 << 63)) >> 9,
		fsb:       (l0&0x1ff)<<43 | l1>>21,
		count:     l1 & xfsMaxExtLen,
		unwritten: l0>>63 != 0,
	}
}

// checkRecords verifies bmbt records are in order, non-overlapping, inside
// [lo, hi) of the file, and map inside one AG of the filesystem
// (xfs_bmap_validate_extent).
func (n *xfsInode) checkRecords(recs []byte, count int, lo, hi uint64) error {
	next := lo
	for i := 0; i < count; i++ {
		e := decodeExtent(recs[16*i:])
		if e.count == 0 || e.off < next || e.off+e.count > hi || e.off+e.count > xfsMaxFileOff {
			return n.x.corrupt("inode %d: extent %d (file blocks %d+%d) out of order or beyond its range", n.ino, i, e.off, e.count)
		}
		if _, ok := n.x.fsbToBlock(e.fsb, e.count); !ok {
			return n.x.corrupt("inode %d: extent %d maps %d blocks at filesystem block %d (AG %d, block %d), outside the filesystem or its AG",
				n.ino, i, e.count, e.fsb, e.fsb>>n.x.agblklog, e.fsb&(1<<n.x.agblklog-1))
		}
		next = e.off + e.count
	}
	return nil
}

func (n *xfsInode) checkExtentList() error {
	return n.checkRecords(n.fork, int(n.nextent), 0, xfsMaxFileOff)
}

// lookupRecs finds lb among sorted records: the extent holding it or the
// hole up to the next extent (or hi). Device block 0 (AG 0's headers) is
// never a file's, so phys 0 can mean zeros.
func (n *xfsInode) lookupRecs(recs []byte, count int, lb, hi uint64) mapping {
	lo, h := 0, count
	i := -1
	for lo < h {
		m := (lo + h) / 2
		if decodeExtent(recs[16*m:]).off <= lb {
			i, lo = m, m+1
		} else {
			h = m
		}
	}
	if i >= 0 {
		e := decodeExtent(recs[16*i:])
		if lb < e.off+e.count {
			if e.unwritten {
				return mapping{count: e.off + e.count - lb}
			}
			blk, _ := n.x.fsbToBlock(e.fsb, e.count)
			return mapping{phys: blk + lb - e.off, count: e.off + e.count - lb}
		}
	}
	end := hi
	if i+1 < count {
		end = decodeExtent(recs[16*(i+1):]).off
	}
	return mapping{count: end - lb}
}

// bmap maps file block lb.
func (n *xfsInode) bmap(lb uint64) (mapping, error) {
	if lb >= xfsMaxFileOff {
		return mapping{}, n.x.corrupt("inode %d: block %d beyond the largest file offset", n.ino, lb)
	}
	switch n.format {
	case xfsFmtExtents:
		return n.lookupRecs(n.fork, int(n.nextent), lb, xfsMaxFileOff), nil
	case xfsFmtBtree:
		return n.bmbtLookup(lb)
	}
	return mapping{}, n.x.corrupt("inode %d: data fork format %d has no block map", n.ino, n.format)
}

// bmbtLookup descends the inode's extent btree from the root in the data
// fork. Levels drop by exactly one per step (so the descent ends and a
// loop is impossible) and every node's keys must lie inside the range its
// parent gave it, so a lookup never depends on which path reached a block.
func (n *xfsInode) bmbtLookup(lb uint64) (mapping, error) {
	x := n.x
	be := binary.BigEndian
	level := int(be.Uint16(n.fork))
	nrecs := int(be.Uint16(n.fork[2:]))
	maxRecs := (len(n.fork) - 4) / 16
	if level < 1 || level >= x.bmbtLevels {
		return mapping{}, x.corrupt("inode %d: extent btree root level %d (at most %d)", n.ino, level, x.bmbtLevels-1)
	}
	if nrecs < 1 || nrecs > maxRecs {
		return mapping{}, x.corrupt("inode %d: extent btree root holds %d keys (room for %d)", n.ino, nrecs, maxRecs)
	}
	keys, ptrs := n.fork[4:], n.fork[4+8*maxRecs:]
	lo, hi := uint64(0), uint64(xfsMaxFileOff)
	for {
		if err := checkKeys(keys, nrecs, lo, hi); err != nil {
			return mapping{}, x.corrupt("inode %d: extent btree level %d: %v", n.ino, level, err)
		}
		i := -1
		for l, h := 0, nrecs; l < h; {
			m := (l + h) / 2
			if be.Uint64(keys[8*m:]) <= lb {
				i, l = m, m+1
			} else {
				h = m
			}
		}
		if i < 0 {
			return mapping{count: be.Uint64(keys) - lb}, nil
		}
		lo = be.Uint64(keys[8*i:])
		if i+1 < nrecs {
			hi = be.Uint64(keys[8*(i+1):])
		}
		child := be.Uint64(ptrs[8*i:])
		b, err := x.bmbtBlock(n, child)
		if err != nil {
			return mapping{}, err
		}
		level--
		if got := int(be.Uint16(b[4:])); got != level {
			return mapping{}, x.corrupt("inode %d: extent btree block %d is at level %d, its parent expects %d (loop?)", n.ino, child, got, level)
		}
		nrecs = int(be.Uint16(b[6:]))
		maxRecs = int(x.bs-x.bmbtHdr) / 16
		if nrecs < 1 || nrecs > maxRecs {
			return mapping{}, x.corrupt("inode %d: extent btree block %d holds %d records (room for %d)", n.ino, child, nrecs, maxRecs)
		}
		body := b[x.bmbtHdr:]
		if level == 0 {
			if err := n.checkRecords(body, nrecs, lo, hi); err != nil {
				return mapping{}, err
			}
			return n.lookupRecs(body, nrecs, lb, hi), nil
		}
		keys, ptrs = body, body[8*maxRecs:]
	}
}

// checkKeys: strictly increasing and inside [lo, hi).
func checkKeys(keys []byte, n int, lo, hi uint64) error {
	prev := lo
	for i := 0; i < n; i++ {
		k := binary.BigEndian.Uint64(keys[8*i:])
		if k < prev || (i > 0 && k == prev) || k >= hi {
			return fmt.Errorf("key %d (file block %d) out of order or outside %d..%d", i, k, lo, hi)
		}
		prev = k
	}
	return nil
}

// bmbtBlock reads and verifies one extent btree block of n; CRC-checked
// blocks are cached, the owner is checked on every use.
func (x *xfsFS) bmbtBlock(n *xfsInode, fsb uint64) ([]byte, error) {
	blk, ok := x.fsbToBlock(fsb, 1)
	if !ok {
		return nil, x.corrupt("inode %d: extent btree pointer to filesystem block %d outside the filesystem", n.ino, fsb)
	}
	x.cacheMu.Lock()
	b, ok := x.cache[blk]
	x.cacheMu.Unlock()
	if !ok {
		b = make([]byte, x.bs)
		if err := readFull(x.r, b, int64(blk)*x.bs); err != nil {
			return nil, fmt.Errorf("inode %d extent btree block %d: %w", n.ino, blk, err)
		}
		be := binary.BigEndian
		want := uint32(xfsBmapMagic)
		if x.v5 {
			want = xfsBmap3Magic
		}
		if be.Uint32(b) != want {
			return nil, x.corrupt("inode %d: extent btree block %d: bad magic 0x%08x", n.ino, blk, be.Uint32(b))
		}
		if x.v5 {
			if !xfsCRCOK(b, 64) {
				return nil, x.corrupt("inode %d: extent btree block %d: CRC mismatch", n.ino, blk)
			}
			if be.Uint64(b[24:]) != blk*uint64(x.bs/512) || !bytes.Equal(b[40:56], x.metaUUID[:]) {
				return nil, x.corrupt("inode %d: extent btree block %d: header names another location or filesystem", n.ino, blk)
			}
		}
		x.cacheMu.Lock()
		if len(x.cache) >= xfsCacheBlocks {
			clear(x.cache)
		}
		x.cache[blk] = b
		x.cacheMu.Unlock()
	} else if err := x.w.b.hit(); err != nil {
		return nil, err
	}
	if x.v5 && binary.BigEndian.Uint64(b[56:]) != n.ino {
		return nil, x.corrupt("inode %d: extent btree block %d belongs to inode %d", n.ino, blk, binary.BigEndian.Uint64(b[56:]))
	}
	return b, nil
}

// reader streams n's bytes through its block map from r: the metered
// metadata reader for directories, the data reader for files.
func (n *xfsInode) reader(r io.ReaderAt) blockFile {
	return blockFile{r: r, size: n.isize, blog: n.x.blog, ino: n.ino, bmap: n.bmap}
}

func (x *xfsFS) content(v vnode) (io.ReaderAt, error) {
	n := v.(*xfsInode)
	if n.flags&xfsDiflagRT != 0 {
		return nil, fmt.Errorf("inode %d: %w: file on the XFS realtime device, which is not part of this image", n.ino, ErrUnsupported)
	}
	if n.format != xfsFmtExtents && n.format != xfsFmtBtree {
		return nil, x.corrupt("inode %d: regular file in data fork format %d", n.ino, n.format)
	}
	return n.reader(x.w.data), nil
}

func (x *xfsFS) readlink(v vnode) (string, error) {
	n := v.(*xfsInode)
	if n.isize <= 0 || n.isize > xfsSymlinkMax {
		return "", x.corrupt("symlink inode %d: target length %d", n.ino, n.isize)
	}
	if n.format == xfsFmtLocal {
		t := n.fork[:n.isize]
		// xfs_symlink_shortform_verify refuses a NUL inside the target.
		if bytes.IndexByte(t, 0) >= 0 {
			return "", x.corrupt("symlink inode %d: target contains NUL", n.ino)
		}
		return string(t), nil
	}
	// A remote target: each mapping is one buffer with (V5) one header
	// naming its offset and length in the target (xfs_readlink_bmap_ilocked).
	target := make([]byte, 0, n.isize)
	hdr := int64(0)
	if x.v5 {
		hdr = xfsSymlinkHdr
	}
	blocks := uint64((n.isize + x.bs - hdr - 1) / (x.bs - hdr))
	be := binary.BigEndian
	for lb := uint64(0); lb < blocks && int64(len(target)) < n.isize; {
		m, err := n.bmap(lb)
		if err != nil {
			return "", err
		}
		if m.phys == 0 {
			return "", x.corrupt("symlink inode %d: hole or unwritten extent at block %d", n.ino, lb)
		}
		cnt := min(m.count, blocks-lb)
		buf := make([]byte, int64(cnt)*x.bs)
		if err := readFull(x.r, buf, int64(m.phys)*x.bs); err != nil {
			return "", fmt.Errorf("symlink inode %d: %w", n.ino, err)
		}
		bytesHere := min(int64(len(buf))-hdr, n.isize-int64(len(target)))
		if x.v5 {
			switch {
			case be.Uint32(buf) != xfsSymlinkMag:
				return "", x.corrupt("symlink inode %d block %d: bad magic 0x%08x", n.ino, m.phys, be.Uint32(buf))
			case !xfsCRCOK(buf, 12):
				return "", x.corrupt("symlink inode %d block %d: CRC mismatch", n.ino, m.phys)
			case !bytes.Equal(buf[16:32], x.metaUUID[:]) || be.Uint64(buf[32:]) != n.ino || be.Uint64(buf[40:]) != m.phys*uint64(x.bs/512):
				return "", x.corrupt("symlink inode %d block %d: header names another owner, location or filesystem", n.ino, m.phys)
			case int64(be.Uint32(buf[4:])) != int64(len(target)) || int64(be.Uint32(buf[8:])) != bytesHere:
				return "", x.corrupt("symlink inode %d block %d: header says %d bytes at %d, expected %d at %d",
					n.ino, m.phys, be.Uint32(buf[8:]), be.Uint32(buf[4:]), bytesHere, len(target))
			}
		}
		target = append(target, buf[hdr:hdr+bytesHere]...)
		lb += cnt
	}
	if int64(len(target)) != n.isize {
		return "", x.corrupt("symlink inode %d: blocks hold %d of %d target bytes", n.ino, len(target), n.isize)
	}
	if bytes.IndexByte(target, 0) >= 0 {
		return "", x.corrupt("symlink inode %d: target contains NUL", n.ino)
	}
	return string(target), nil
}

// xfsFtype maps a directory entry's file type byte (XFS_DIR3_FT_*).
func xfsFtype(b byte) fs.FileMode {
	switch b {
	case 1:
		return 0
	case 2:
		return fs.ModeDir
	case 7:
		return fs.ModeSymlink
	}
	return typUnknown
}

func (x *xfsFS) dirent(name []byte, ino uint64, ft byte) (vdirent, error) {
	if bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
		return vdirent{}, x.corrupt("directory entry %q contains '/' or NUL", name)
	}
	if ft > 8 {
		return vdirent{}, x.corrupt("directory entry %q: file type %d", name, ft)
	}
	s := string(name)
	typ := typUnknown
	if x.ftype {
		typ = xfsFtype(ft)
	}
	return vdirent{name: s, typ: typ, load: func() (vnode, error) {
		c, err := x.inode(ino)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		return c, nil
	}}, nil
}

func (x *xfsFS) scanDir(v vnode, fn func(vdirent) bool) error {
	n := v.(*xfsInode)
	if !n.mode().IsDir() {
		return fmt.Errorf("inode %d: not a directory", n.ino)
	}
	if n.format == xfsFmtLocal {
		if err := x.scanShortform(n, fn); err != nil {
			return fmt.Errorf("directory inode %d: %w", n.ino, err)
		}
		return nil
	}
	// Block, leaf, node and btree directories keep every entry in data
	// blocks below XFS_DIR2_LEAF_OFFSET; the leaf, node and free-index
	// blocks above it only index them, so a walk of the data blocks sees
	// every name (as xfs_dir2_leaf_getdents does).
	end := (uint64(n.isize) + uint64(x.dirBlk) - 1) / uint64(x.dirBlk) * x.dirFSB
	// A real directory's data blocks are distinct device blocks; more than
	// the filesystem holds means aliased extents, refused in bounded time.
	budget := x.dblocks / x.dirFSB
	buf := make([]byte, x.dirBlk)
	r := n.reader(x.r)
	for lb := uint64(0); lb < end; {
		m, err := n.bmap(lb)
		if err != nil {
			return fmt.Errorf("directory inode %d: %w", n.ino, err)
		}
		if m.phys == 0 {
			// Holes are freed data blocks; skip to the next directory block
			// past the hole.
			lb = (lb + max(m.count, 1) + x.dirFSB - 1) / x.dirFSB * x.dirFSB
			continue
		}
		if budget == 0 {
			return x.corrupt("directory inode %d: more data blocks than the filesystem has", n.ino)
		}
		budget--
		if _, err := r.ReadAt(buf, int64(lb)<<x.blog); err != nil && err != io.EOF {
			return fmt.Errorf("directory inode %d: %w", n.ino, err)
		}
		ents, err := x.parseDirBlock(n, buf, lb, m.phys)
		more := false
		if err == nil {
			more, err = ents.walk(fn)
		}
		if err != nil {
			return fmt.Errorf("directory inode %d block %d: %w", n.ino, lb/x.dirFSB, err)
		}
		if !more {
			return nil
		}
		lb += x.dirFSB
	}
	return nil
}

// dirEntries are one block's parsed entries, checked before any is used.
type dirEntries []vdirent

func (d dirEntries) walk(fn func(vdirent) bool) (bool, error) {
	for _, e := range d {
		if !fn(e) {
			return false, nil
		}
	}
	return true, nil
}

func (x *xfsFS) scanShortform(n *xfsInode, fn func(vdirent) bool) error {
	d := n.fork[:n.isize]
	if len(d) < 6 {
		return x.corrupt("shortform directory of %d bytes", len(d))
	}
	count, i8 := int(d[0]), d[1]
	inoLen := 4
	if i8 != 0 {
		inoLen = 8
	}
	off := 2 + inoLen
	ft := 0
	if x.ftype {
		ft = 1
	}
	var ents dirEntries
	for i := 0; i < count; i++ {
		if off+3 > len(d) {
			return x.corrupt("shortform entry %d runs past the %d-byte directory", i, len(d))
		}
		nl := int(d[off])
		e := off + 3 + nl + ft + inoLen
		if nl == 0 || e > len(d) {
			return x.corrupt("shortform entry %d: name length %d at offset %d of %d", i, nl, off, len(d))
		}
		name := d[off+3 : off+3+nl]
		var ino uint64
		if inoLen == 4 {
			ino = uint64(binary.BigEndian.Uint32(d[e-4:]))
		} else {
			ino = binary.BigEndian.Uint64(d[e-8:]) & xfsMaxInumber
		}
		var ftb byte
		if x.ftype {
			ftb = d[off+3+nl]
		}
		de, err := x.dirent(name, ino, ftb)
		if err != nil {
			return err
		}
		ents = append(ents, de)
		off = e
	}
	if off != len(d) {
		return x.corrupt("shortform directory: %d entries end at offset %d of %d", count, off, len(d))
	}
	_, err := ents.walk(fn)
	return err
}

// parseDirBlock checks and parses one directory data block at file block
// lb (device block blk), V4 "XD2B"/"XD2D" or V5 "XDB3"/"XDD3", as
// __xfs_dir3_data_check walks it.
func (x *xfsFS) parseDirBlock(n *xfsInode, b []byte, lb, blk uint64) (dirEntries, error) {
	be := binary.BigEndian
	magic := be.Uint32(b)
	blockMagic, dataMagic, hdr := uint32(xfsDir2Block), uint32(xfsDir2Data), 16
	if x.v5 {
		blockMagic, dataMagic, hdr = xfsDir3Block, xfsDir3Data, 64
	}
	end := len(b)
	switch magic {
	case blockMagic:
		if lb != 0 || n.isize != x.dirBlk {
			return nil, x.corrupt("single-block directory header in a directory of %d bytes", n.isize)
		}
		count := int64(be.Uint32(b[len(b)-8:]))
		if count >= int64(len(b)-hdr)/8 {
			return nil, x.corrupt("block directory claims %d leaf entries", count)
		}
		end = len(b) - 8 - 8*int(count)
	case dataMagic:
	default:
		return nil, x.corrupt("bad directory block magic 0x%08x", magic)
	}
	if x.v5 {
		switch {
		case !xfsCRCOK(b, 4):
			return nil, x.corrupt("directory block CRC mismatch")
		case be.Uint64(b[8:]) != blk*uint64(x.bs/512) || !bytes.Equal(b[24:40], x.metaUUID[:]):
			return nil, x.corrupt("directory block header names another location or filesystem")
		case be.Uint64(b[40:]) != n.ino:
			return nil, x.corrupt("directory block belongs to inode %d", be.Uint64(b[40:]))
		}
	}
	ft := 0
	if x.ftype {
		ft = 1
	}
	var ents dirEntries
	for off := hdr; off < end; {
		if off+8 > end {
			return nil, x.corrupt("directory entry at offset %d runs past the data", off)
		}
		if be.Uint16(b[off:]) == 0xffff {
			l := int(be.Uint16(b[off+2:]))
			if l < 8 || l%8 != 0 || off+l > end || int(be.Uint16(b[off+l-2:])) != off {
				return nil, x.corrupt("free space at offset %d: length %d", off, l)
			}
			off += l
			continue
		}
		nl := int(b[off+8])
		size := (8 + 1 + nl + ft + 2 + 7) &^ 7
		if nl == 0 || off+size > end || int(be.Uint16(b[off+size-2:])) != off {
			return nil, x.corrupt("directory entry at offset %d: name length %d", off, nl)
		}
		name := b[off+9 : off+9+nl]
		ino := be.Uint64(b[off:])
		var ftb byte
		if x.ftype {
			ftb = b[off+9+nl]
		}
		off += size
		if string(name) == "." || string(name) == ".." {
			continue
		}
		de, err := x.dirent(name, ino, ftb)
		if err != nil {
			return nil, err
		}
		ents = append(ents, de)
	}
	return ents, nil
}
