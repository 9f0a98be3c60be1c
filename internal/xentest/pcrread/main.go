// Command pcrread reads PCRs 0-15 of a vTPM and prints them as JSON
// {"sha1": {"4": "hex"}, ...}. The Xen tests run it in dom0, before and
// after a guest, as a reader that shares no code with vtpmboot's own TPM
// client (tpmfront):
//
//   - -socket: an admin-started swtpm's server socket, read with go-tpm
//     (github.com/google/go-tpm: its TPM 1.2 package, or legacy/tpm2 for
//     every listed bank);
//   - -vtpmctl: a vTPM vtpmback owns (nothing else may connect to its
//     swtpm), asked through vtpmback's control socket with the wire format
//     of docs/vtpmctl.md written here by hand, not with host/vtpmctl's
//     client: the values are swtpm's own answers relayed by vtpmback.
//
// A vtpmctl error is printed as "pcrread: vtpmctl CODE: MESSAGE" on stderr
// (exit 1), so the test can tell "vtpmback has not served it" from a
// failure.
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
	gotpm12 "github.com/google/go-tpm/tpm"
)

// maxPCR: 0-15 are the PCRs a fresh vTPM holds at zero (16 is the debug
// PCR, 17-22 start at all ones with libtpms).
const maxPCR = 15

func main() {
	sock := flag.String("socket", "", "swtpm --server type=unixio socket")
	version := flag.String("version", "2.0", "1.2 or 2.0 (-socket)")
	ctl := flag.String("vtpmctl", "", "vtpmback's control socket")
	uuid := flag.String("uuid", "", "the vTPM's uuid (-vtpmctl)")
	flag.Parse()
	var out map[string]map[string]string
	var err error
	if *ctl != "" {
		out, err = viaVtpmctl(*ctl, *uuid)
	} else {
		out, err = read(*sock, *version)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pcrread: %v\n", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// viaVtpmctl asks vtpmback for uuid's PCRs: one JSON request, a
// half-close, one JSON answer (docs/vtpmctl.md, "Transport").
func viaVtpmctl(sock, uuid string) (map[string]map[string]string, error) {
	c, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	var pcrs []int
	for i := 0; i <= maxPCR; i++ {
		pcrs = append(pcrs, i)
	}
	req, _ := json.Marshal(map[string]any{"op": "pcrs", "uuid": uuid, "pcrs": pcrs})
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("vtpmctl request: %w", err)
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		return nil, fmt.Errorf("vtpmctl half-close: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("vtpmctl answer: %w", err)
	}
	var ans struct {
		PCRs  map[string]map[string]string    `json:"pcrs"`
		Error *struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("vtpmctl answer %q: %w", b, err)
	}
	if ans.Error != nil {
		return nil, fmt.Errorf("vtpmctl %s: %s", ans.Error.Code, ans.Error.Message)
	}
	if len(ans.PCRs) == 0 {
		return nil, fmt.Errorf("vtpmctl answer %q has no PCRs", b)
	}
	return ans.PCRs, nil
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
		for i := 0; i <= maxPCR; i++ {
			v, err := gotpm12.ReadPCR(c, uint32(i))
			if err != nil {
				return nil, fmt.Errorf("TPM 1.2 PCR %d: %w", i, err)
			}
			out["sha1"][strconv.Itoa(i)] = hex.EncodeToString(v)
		}
	case "2.0":
		for name, alg := range map[string]tpm2.Algorithm{"sha1": tpm2.AlgSHA1, "sha256": tpm2.AlgSHA256, "sha384": tpm2.AlgSHA384, "sha512": tpm2.AlgSHA512} {
			m := map[string]string{}
			for i := 0; i <= maxPCR; i++ {
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
