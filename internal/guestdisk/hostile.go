package guestdisk

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// The helpers below damage or bend ext images in the ways hostile-image
// tests need. Offsets come from e2fsprogs' own debugfs, never from
// vtpmboot's reader, so a test cannot agree with itself by construction.

// Debugfs runs debugfs commands on an ext image, read-only and one at a
// time, and returns what they print. debugfs reports most failures on
// stderr with exit status 0, so any stderr line other than its version
// banner is an error here.
func Debugfs(img string, cmds ...string) (string, error) { return debugfs(img, nil, cmds) }

// DebugfsWrite is Debugfs with the image opened for writing (-w).
func DebugfsWrite(img string, cmds ...string) (string, error) {
	return debugfs(img, []string{"-w"}, cmds)
}

func debugfs(img string, flags, cmds []string) (string, error) {
	var all strings.Builder
	for _, c := range cmds {
		args := append(append([]string(nil), flags...), "-R", c, img)
		cmd := exec.Command("debugfs", args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var complaints []string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
				complaints = append(complaints, l)
			}
		}
		if err != nil || len(complaints) > 0 {
			return all.String(), fmt.Errorf("debugfs -R %q %s: %v: %s", c, img, err, strings.Join(complaints, "; "))
		}
		all.Write(stdout.Bytes())
	}
	return all.String(), nil
}

var (
	imapRE      = regexp.MustCompile(`located at block (\d+), offset 0x([0-9a-f]+)`)
	blockSizeRE = regexp.MustCompile(`(?m)^Block size:\s+(\d+)$`)
)

// BlockSize is the ext image's block size, as debugfs's stats report it.
func BlockSize(img string) (int64, error) {
	out, err := Debugfs(img, "stats")
	if err != nil {
		return 0, err
	}
	m := blockSizeRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("debugfs stats on %s: no block size in:\n%s", img, out)
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// InodeOffset is the byte offset of path's inode in the ext image
// (debugfs imap).
func InodeOffset(img, path string) (int64, error) {
	out, err := Debugfs(img, "imap "+path)
	if err != nil {
		return 0, err
	}
	m := imapRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("debugfs imap %s on %s: %q", path, img, out)
	}
	bs, err := BlockSize(img)
	if err != nil {
		return 0, err
	}
	blk, _ := strconv.ParseInt(m[1], 10, 64)
	off, _ := strconv.ParseInt(m[2], 16, 64)
	return blk*bs + off, nil
}

// Blocks are the data blocks of path in the ext image (debugfs blocks).
func Blocks(img, path string) ([]int64, error) {
	out, err := Debugfs(img, "blocks "+path)
	if err != nil {
		return nil, err
	}
	var bl []int64
	for _, f := range strings.Fields(out) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("debugfs blocks %s on %s: %q", path, img, out)
		}
		bl = append(bl, n)
	}
	if len(bl) == 0 {
		return nil, fmt.Errorf("debugfs blocks %s on %s: no blocks", path, img)
	}
	return bl, nil
}

// ReadAt reads n bytes of a file at off.
func ReadAt(file string, off int64, n int) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read %d bytes of %s at %d: %w", n, file, off, err)
	}
	return b, nil
}

// Flip inverts n bytes of a file at off.
func Flip(file string, off int64, n int) error {
	b, err := ReadAt(file, off, n)
	if err != nil {
		return err
	}
	for i := range b {
		b[i] ^= 0xFF
	}
	return Patch(file, off, b)
}

var blockCountRE = regexp.MustCompile(`(?m)^Block count:\s+(\d+)$`)

// AliasDir turns the block-mapped (ext2/ext3, or ext4 without extents)
// directory at path into the hostile directory of issue 18 item 2: its
// twelve direct pointers and its single, double and triple indirect
// pointers all name one block P, and its size becomes size bytes (at
// most the filesystem's). P is filled with its own number as 32-bit
// words, so read as an indirect block it points at itself everywhere,
// and read as a directory block it is a run of valid entries with
// rec_len = P mod 65536 and no name a lookup could match. Every block
// of the directory is therefore P, and a lookup of a missing name reads
// size bytes though the image holds one block of it. It returns P.
func AliasDir(img, path string, size int64) (int64, error) {
	bs, err := BlockSize(img)
	if err != nil {
		return 0, err
	}
	out, err := Debugfs(img, "stats")
	if err != nil {
		return 0, err
	}
	m := blockCountRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("debugfs stats on %s: no block count", img)
	}
	blocks, _ := strconv.ParseInt(m[1], 10, 64)
	// A valid entry at every multiple of rec_len = P mod 65536: rec_len
	// must divide the block and hold the name_len byte ((P>>16)&0xFF)
	// plus the 8-byte header (as ext4_check_dir_entry requires).
	p := int64(0)
	for r := bs; r >= 8 && p == 0; r /= 2 {
		for k := int64(0); k <= min(r-8, 255) && p == 0; k++ {
			cand := k<<16 | r
			if cand >= blocks {
				break
			}
			out, err := Debugfs(img, fmt.Sprintf("testb %d", cand))
			if err != nil {
				return 0, err
			}
			if strings.Contains(out, "not in use") {
				p = cand
			}
		}
	}
	if p == 0 {
		return 0, fmt.Errorf("%s: no free block usable as a self-pointing directory block", img)
	}
	blk := make([]byte, bs)
	for i := 0; i < len(blk); i += 4 {
		blk[i], blk[i+1], blk[i+2], blk[i+3] = byte(p), byte(p>>8), byte(p>>16), byte(p>>24)
	}
	if err := Patch(img, p*bs, blk); err != nil {
		return 0, err
	}
	cmds := []string{fmt.Sprintf("setb %d", p)}
	for _, f := range []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "IND", "DIND", "TIND"} {
		cmds = append(cmds, fmt.Sprintf("sif %s block[%s] %d", path, f, p))
	}
	cmds = append(cmds, fmt.Sprintf("sif %s size %d", path, min(size, blocks*bs)))
	if _, err := DebugfsWrite(img, cmds...); err != nil {
		return 0, err
	}
	return p, nil
}
