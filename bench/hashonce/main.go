// Command hashonce is the baseline of bench/xl.sh: it hashes each file
// given once, sha1 and sha256 together, with the same engine pcrsim uses
// (measure.StreamHasher: one read pass, banks hashed concurrently), and
// prints the elapsed seconds. Comparing pcrsim's fleet run with it isolates
// what predicting 500 guests costs beyond reading and hashing the distinct
// bytes once.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func main() {
	start := time.Now()
	for _, p := range os.Args[1:] {
		if _, err := (measure.StreamHasher{}).Hash(pcrbank.DefaultAlgs, []measure.Source{measure.FileSource(p)}); err != nil {
			fmt.Fprintln(os.Stderr, "hashonce:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
}
