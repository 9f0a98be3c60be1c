// Command grubemu-run runs one grub.cfg (with the files of its
// directory's parent tree) through boot/grub2 and GRUB 2.06's grub-emu and
// prints both, to turn a fuzzer's finding into a testdata case.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/grubemu"
)

func main() {
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: grubemu-run GRUB.CFG")
		os.Exit(2)
	}
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := grubemu.Script{Files: map[string][]byte{"boot/grub/grub.cfg": data, "boot/vmlinuz": []byte("k"),
		"boot/vmlinuz-2": []byte("k2"), "boot/initrd.img": []byte("i")}, Config: "boot/grub/grub.cfg"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vs, err := grubemu.Diff(ctx, []grubemu.Script{s}, 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	v := vs[0]
	if v.Refused != nil {
		fmt.Println("vtpmboot refuses:", v.Refused)
	} else {
		for _, e := range v.Menu.Entries {
			fmt.Printf("vtpmboot %s %q %q %q\n", e.MenuPath, e.Title, e.Cmdline, e.Initrds)
		}
		fmt.Println("vtpmboot default", v.Menu.Default, v.Menu.Warnings)
	}
	for _, b := range v.Boots {
		fmt.Printf("GRUB probe %q: linux %q initrd %q errors %q vars %v\n", b.Probe, b.Linux, b.Initrd, b.Errors, b.Vars)
	}
	for _, d := range v.Differences {
		fmt.Println("DIFF", d)
	}
}
