package measure

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// BenchmarkStreamHasher measures hashing a 64 MiB file (from the page
// cache) in one and two banks; b.SetBytes makes `go test -bench` print
// MB/s so the two-bank cost can be read against one bank.
func BenchmarkStreamHasher(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	p := filepath.Join(b.TempDir(), "kernel")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	for _, banks := range [][]pcrbank.Alg{
		{pcrbank.SHA1},
		{pcrbank.SHA256},
		{pcrbank.SHA1, pcrbank.SHA256},
		{pcrbank.SHA1, pcrbank.SHA256, pcrbank.SHA384},
	} {
		for _, chunk := range []int{0, 256 << 10, 4 << 20} {
			name := fmt.Sprintf("%v/chunk=%d", banks, chunk)
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				h := StreamHasher{ChunkSize: chunk}
				for b.Loop() {
					if _, err := h.Hash(banks, []Source{FileSource(p)}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
