package measure

import (
	"bufio"
	"fmt"
	"io"
)

// WriteTrace prints each extend with its digest and the PCR before and
// after, one bank a line, in the spirit of the pcr-calc tools. The stub
// prints the same trace on its console, which is why sources are quoted:
// a command line from a guest's disk must not be able to inject escape
// sequences or fake trace lines.
//
//	extend PCR 4 with kernel "/boot/vmlinuz"
//	  sha1    digest 1f...  before 00...  after 3a...
func WriteTrace(w io.Writer, steps []Step) error {
	bw := bufio.NewWriter(w)
	for _, s := range steps {
		fmt.Fprintf(bw, "extend PCR %d with %s %q\n", s.PCR, s.Kind, s.Source)
		for _, a := range s.Digests.Algs() {
			fmt.Fprintf(bw, "  %-7s digest %s\n", a, s.Digests.Hex(a))
			fmt.Fprintf(bw, "  %-7s before %s\n", "", s.Before.Hex(a))
			fmt.Fprintf(bw, "  %-7s after  %s\n", "", s.After.Hex(a))
		}
	}
	return bw.Flush()
}
