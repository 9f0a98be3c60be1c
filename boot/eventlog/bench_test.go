package eventlog

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Benchmarks print throughput; no test asserts on time.

func BenchmarkParseSeaBIOS(b *testing.B) {
	for _, name := range []string{"seabios-tpm20.bin", "seabios-tpm12.bin"} {
		log := firmwareLog(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(log)))
			for b.Loop() {
				if _, err := Parse(log); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshalParse(b *testing.B) {
	algs := pcrbank.AllAlgs
	ms := sampleBoots["two-initrds"].plan(b, algs)
	for _, n := range []int{3, 3000} {
		var many = ms
		for len(many) < n {
			many = append(many, ms...)
		}
		b.Run(fmt.Sprintf("events=%d", len(many)), func(b *testing.B) {
			var size int
			for b.Loop() {
				var buf bytes.Buffer
				if err := Write(&buf, CryptoAgile, algs, many); err != nil {
					b.Fatal(err)
				}
				size = buf.Len()
				if _, err := Parse(buf.Bytes()); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(size))
		})
	}
}
