// Command mkkernel writes a kernel file for the benchmarks: a setup header
// that pcrsim and the loader accept as a bzImage (internal/fakekernel),
// then random bytes up to the size asked for. Random bytes alone are
// refused ("not a bzImage"), which is what broke make bench.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
)

func main() {
	size := flag.Int64("bytes", 12<<20, "file size in bytes (at least 1024)")
	seed := flag.Uint64("seed", 1, "random seed: different seeds, different kernels")
	out := flag.String("o", "", "output file")
	flag.Parse()
	if *out == "" || *size < 1024 {
		fmt.Fprintln(os.Stderr, "usage: mkkernel -bytes N -seed S -o FILE")
		os.Exit(2)
	}
	payload := make([]byte, *size-1024)
	r := rand.New(rand.NewPCG(*seed, 0x6b65726e656c))
	for i := 0; i+8 <= len(payload); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			payload[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(*out, fakekernel.Image(payload), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "mkkernel:", err)
		os.Exit(1)
	}
}
