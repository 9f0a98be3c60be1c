package diskimage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		Partitions []struct {
			Node  string `json:"node"`
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// buildDisk partitions a blank image with sfdisk, then dd's the given
// filesystem images into place at the offsets sfdisk reports (an
// independent account of the layout, checked against ours).
func buildDisk(t *testing.T, script string, sizeMiB int, fill map[int]string) (string, sfdiskJSON) {
	t.Helper()
	testenv.NeedCommands(t, "sfdisk", "dd", "truncate")
	img := filepath.Join(t.TempDir(), "disk.img")
	sh(t, "truncate", "-s", fmt.Sprintf("%dM", sizeMiB), img)
	sh(t, "sh", "-c", fmt.Sprintf("printf '%%s' '%s' | sfdisk -q %s", script, img))
	var layout sfdiskJSON
	if err := json.Unmarshal([]byte(sh(t, "sfdisk", "--json", img)), &layout); err != nil {
		t.Fatal(err)
	}
	for _, p := range layout.PartitionTable.Partitions {
		idx := partNum(p.Node)
		if src, ok := fill[idx]; ok {
			sh(t, "dd", "if="+src, "of="+img, "bs=512", fmt.Sprintf("seek=%d", p.Start), "conv=notrunc,sparse", "status=none")
		}
	}
	return img, layout
}

func partNum(node string) int {
	i := len(node)
	for i > 0 && node[i-1] >= '0' && node[i-1] <= '9' {
		i--
	}
	var n int
	fmt.Sscan(node[i:], &n)
	return n
}

func TestPartitionTables(t *testing.T) {
	testenv.NeedCommands(t, "mkswap")
	src := sourceTree(t, false, true)
	ext := mkext(t, src, "12M")
	fat := mkfat(t, sourceTree(t, false, false), 16, 12288)
	swap := filepath.Join(t.TempDir(), "swap")
	sh(t, "truncate", "-s", "1M", swap)
	sh(t, "mkswap", "-q", swap)
	xfs := filepath.Join(t.TempDir(), "xfs")
	writeFile(t, xfs, append([]byte("XFSB"), make([]byte, 4096)...))

	for _, tc := range []struct {
		name, script string
		fill         map[int]string
		want         map[int]string // index -> Type
	}{
		{"gpt", "label: gpt\nsize=12M, type=L\nsize=12M, type=L\nsize=2M, type=S\nsize=2M, type=L\n",
			map[int]string{1: ext, 2: fat, 3: swap, 4: xfs}, map[int]string{1: "ext4", 2: "vfat", 3: "swap", 4: "xfs"}},
		{"mbr-logical", "label: dos\nsize=12M, type=83\ntype=5\nsize=12M, type=c\nsize=2M, type=82\nsize=2M, type=83\n",
			map[int]string{1: ext, 5: fat, 6: swap, 7: xfs}, map[int]string{1: "ext4", 5: "vfat", 6: "swap", 7: "xfs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, layout := buildDisk(t, tc.script, 40, tc.fill)
			im, err := Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			got := map[int]Partition{}
			for _, p := range im.Partitions() {
				got[p.Index] = p
			}
			for _, lp := range layout.PartitionTable.Partitions {
				idx := partNum(lp.Node)
				if strings.EqualFold(lp.Type, "5") {
					continue
				}
				p, ok := got[idx]
				if !ok {
					t.Errorf("partition %d missing; have %v", idx, got)
					continue
				}
				if p.Start != lp.Start*512 || p.Size != lp.Size*512 || p.Name != fmt.Sprintf("partition %d", idx) {
					t.Errorf("partition %d: start %d size %d name %q; sfdisk says %d, %d", idx, p.Start, p.Size, p.Name, lp.Start*512, lp.Size*512)
				}
				if p.Type != tc.want[idx] {
					t.Errorf("partition %d: Type %q, want %q", idx, p.Type, tc.want[idx])
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %d partitions, want %d", len(got), len(tc.want))
			}
			if p := got[1]; p.FS == nil {
				t.Errorf("partition 1: %v", p.Err)
			} else {
				compareTree(t, src, p.FS, true)
				checkLinks(t, p.FS)
			}
			for idx, typ := range tc.want {
				p := got[idx]
				var want string
				switch typ {
				case "swap":
					want = fmt.Sprintf("unsupported filesystem swap on partition %d; swap space holds no files", idx)
				case "xfs":
					// Only the magic: the XFS reader refuses the rest.
					want = fmt.Sprintf("disk.img partition %d: unsupported filesystem: xfs version 0; for pcrsim, copy the files out without writing the image", idx)
				default:
					continue
				}
				if p.FS != nil || p.Err == nil || !strings.Contains(p.Err.Error(), want) {
					t.Errorf("partition %d: Err %v, want %q", idx, p.Err, want)
				}
			}
		})
	}
}

// TestGPTCorrupt flips bytes in the GPT header and entry array: both are
// CRC-protected, so New must refuse with a message naming the CRC.
func TestGPTCorrupt(t *testing.T) {
	img, _ := buildDisk(t, "label: gpt\nsize=4M, type=L\n", 8, nil)
	orig, _ := os.ReadFile(img)
	for _, c := range []struct {
		off  int
		want string
	}{{512 + 40, "GPT header"}, {1024 + 32, "GPT entries"}, {1024 + 56, "GPT entries"}} {
		b := append([]byte(nil), orig...)
		b[c.off] ^= 0x40
		_, err := New(bytesReader(b), int64(len(b)), "disk.img")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "CRC32") || !strings.Contains(err.Error(), "disk.img") {
			t.Errorf("flip at %d: err %v, want %s CRC error", c.off, err, c.want)
		}
	}
}

// mbrEntryBytes is one 16-byte MBR/EBR partition entry.
func mbrEntryBytes(typ byte, start, count uint32) []byte {
	e := make([]byte, 16)
	e[4] = typ
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], count)
	return e
}

// A logical-partition chain that loops costs what comes after the loop,
// as in Linux, not the whole disk: the primary and the logical partitions
// before it are still there, and the break is a corrupt volume of its own
// so a search reaching it refuses.
func TestEBRLoopKeepsWhatCameBefore(t *testing.T) {
	const sectors = 4096
	disk := make([]byte, sectors*512)
	put := func(sector int, slot int, e []byte) { copy(disk[sector*512+446+16*slot:], e) }
	sig := func(sector int) { disk[sector*512+510], disk[sector*512+511] = 0x55, 0xAA }
	put(0, 0, mbrEntryBytes(0x83, 64, 256))    // partition 1
	put(0, 1, mbrEntryBytes(0x05, 1024, 2048)) // extended
	sig(0)
	put(1024, 0, mbrEntryBytes(0x83, 32, 128))  // partition 5
	put(1024, 1, mbrEntryBytes(0x05, 512, 512)) // next EBR at 1024+512
	sig(1024)
	put(1536, 0, mbrEntryBytes(0x83, 32, 128)) // partition 6
	put(1536, 1, mbrEntryBytes(0x05, 0, 512))  // next EBR: back to the first
	sig(1536)
	img, err := New(bytes.NewReader(disk), int64(len(disk)), "loop.img")
	if err != nil {
		t.Fatalf("the whole disk failed: %v", err)
	}
	var got []string
	for _, p := range img.Partitions() {
		got = append(got, fmt.Sprint(p.Index))
	}
	if strings.Join(got, " ") != "1 5 6 -1" {
		t.Fatalf("partitions %q, want 1 5 6 and the broken chain (-1)", got)
	}
	// libblkid, which follows Linux's partition parser, reads the same
	// partitions (and lists the extended container, 2, which holds no
	// filesystem).
	testenv.NeedCommands(t, "partx")
	f := filepath.Join(t.TempDir(), "loop.img")
	os.WriteFile(f, disk, 0o644)
	out, err := exec.Command("partx", "--show", "--noheadings", "-o", "NR", f).Output()
	if err != nil {
		t.Fatal(err)
	}
	if nrs := strings.Join(strings.Fields(string(out)), " "); nrs != "1 2 5 6" {
		t.Errorf("partx says %q", nrs)
	}
	last := img.Partitions()[3]
	if !errors.Is(last.Err, ErrCorrupt) || !strings.Contains(last.Err.Error(), "loops back to sector 1024") || last.FS != nil {
		t.Errorf("chain break: %+v", last)
	}
}
