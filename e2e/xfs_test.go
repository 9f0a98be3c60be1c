package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/kernelxfs"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// rhelGrubCfg is grub2/grub.cfg as RHEL 8/9 write it on a separate /boot,
// trimmed to what decides the boot: the GRUB environment from
// ${config_directory}/grubenv, default="${saved_entry}" unless next_entry
// is set, $root, and blscfg.
func rhelGrubCfg(root string) string {
	return `# e2e: RHEL-style grub.cfg
set pager=1
if [ -f ${config_directory}/grubenv ]; then
  load_env -f ${config_directory}/grubenv
elif [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="${saved_entry}"
fi
set timeout=5
insmod part_gpt
insmod xfs
set root='` + root + `'
insmod blscfg
blscfg
`
}

// grubenv is a GRUB environment block: 1024 bytes, '#'-padded.
func grubenv(vars string) string {
	s := "# GRUB Environment Block\n" + vars
	return s + strings.Repeat("#", 1024-len(s))
}

// dirtyXFSLog returns a matrixCase.prepare that boots the kernel's XFS
// driver on partition part of the disk to leave kernelxfs.BLSLogOnly in
// a dirty log (kernelxfs.DirtyBLS, which also checks through the kernel's
// own ro,norecovery mount that the entry is not in place), and then has
// xfs_logprint, on a copy of the partition, confirm the log is dirty.
func dirtyXFSLog(p *Parts, part int) func(t *testing.T, disk string) {
	return func(t *testing.T, disk string) {
		t.Helper()
		testenv.NeedCommands(t, "mkfs.xfs", "xfs_logprint", "sfdisk")
		root := testenv.RepoRoot()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		live, nr, err := kernelxfs.DirtyBLS(ctx, root, KernelDir(root), disk, part)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the kernel left the XFS log of partition %d dirty in %v", part, time.Since(start).Round(time.Millisecond))
		seen := false
		for _, e := range live.Entries {
			seen = seen || e.Path == kernelxfs.BLSLogOnly
		}
		for _, e := range nr.Entries {
			if e.Path == kernelxfs.BLSLogOnly {
				t.Fatalf("%s is in place", e.Path)
			}
		}
		if !seen {
			t.Fatalf("the writer never saw %s", kernelxfs.BLSLogOnly)
		}
		if out := xfsLogprint(t, disk, part); !strings.Contains(out, "<DIRTY>") {
			t.Fatalf("xfs_logprint does not call partition %d's log dirty:\n%s", part, out)
		}
	}
}

// xfsLogprint runs xfs_logprint -t on a copy of partition part (its
// offset from sfdisk --json: xfs_logprint reads a filesystem, not a disk).
func xfsLogprint(t *testing.T, disk string, part int) string {
	t.Helper()
	var layout struct {
		PartitionTable struct {
			Partitions []struct {
				Node        string `json:"node"`
				Start, Size int64
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", disk)), &layout); err != nil {
		t.Fatal(err)
	}
	for _, pt := range layout.PartitionTable.Partitions {
		if !strings.HasSuffix(pt.Node, fmt.Sprint(part)) {
			continue
		}
		copy := filepath.Join(t.TempDir(), "part.img")
		run(t, "dd", "if="+disk, "of="+copy, "bs=1M", fmt.Sprintf("skip=%d", pt.Start*512), fmt.Sprintf("count=%d", pt.Size*512), "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none")
		return run(t, "xfs_logprint", "-t", copy)
	}
	t.Fatalf("no partition %d in %s", part, disk)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
