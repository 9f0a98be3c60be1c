// Command pcrread reads PCRs 0-9 from an swtpm server socket with go-tpm
// (github.com/google/go-tpm: its TPM 1.2 package, or legacy/tpm2 for
// every listed bank) and prints them as JSON {"sha1": {"4": "hex"}, ...}.
// The Xen tests run it in dom0 after a guest is gone, as a reader of the
// vTPM that shares no code with vtpmboot's own TPM client (tpmfront).
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/google/go-tpm/legacy/tpm2"
	gotpm12 "github.com/google/go-tpm/tpm"
)

func main() {
	sock := flag.String("socket", "", "swtpm --server type=unixio socket")
	version := flag.String("version", "2.0", "1.2 or 2.0")
	flag.Parse()
	out, err := read(*sock, *version)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pcrread: %v\n", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

func read(sock, version string) (map[string]map[string]string, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]map[string]string{}
	switch version {
	case "1.2":
		out["sha1"] = map[string]string{}
		for i := 0; i <= 9; i++ {
			v, err := gotpm12.ReadPCR(c, uint32(i))
			if err != nil {
				return nil, fmt.Errorf("TPM 1.2 PCR %d: %w", i, err)
			}
			out["sha1"][strconv.Itoa(i)] = hex.EncodeToString(v)
		}
	case "2.0":
		for name, alg := range map[string]tpm2.Algorithm{"sha1": tpm2.AlgSHA1, "sha256": tpm2.AlgSHA256, "sha384": tpm2.AlgSHA384, "sha512": tpm2.AlgSHA512} {
			m := map[string]string{}
			for i := 0; i <= 9; i++ {
				v, err := tpm2.ReadPCR(c, i, alg)
				if err != nil || len(v) == 0 {
					break // bank not allocated
				}
				m[strconv.Itoa(i)] = hex.EncodeToString(v)
			}
			if len(m) > 0 {
				out[name] = m
			}
		}
	default:
		return nil, fmt.Errorf("version %q: want 1.2 or 2.0", version)
	}
	return out, nil
}
