// Command vtpmback is a dom0 backend for Linux's xen-tpmfront: it serves
// the Xen vTPM protocol (tpmif v2) of every vtpm device whose backend is
// this domain, from an swtpm per device (TPM 1.2 or 2.0), chosen by the
// device's uuid. See docs/xen.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/vtpmboot/vtpmboot/host/xen/tpmback"
	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

const usage = `usage: vtpmback --socket-dir DIR [--domid N]
       vtpmback --version

Serves the vTPM of every Xen guest whose xl config says
  vtpm = [ "backend=Domain-0,uuid=UUID" ]
from the swtpm listening on DIR/UUID.sock, started before the guest with
  swtpm socket [--tpm2] --tpmstate dir=STATE --server type=unixio,path=DIR/UUID.sock \
    --ctrl type=unixio,path=DIR/UUID.ctrl --flags not-need-init,startup-clear
(no --terminate: the guest's kernel disconnects at kexec and soft reset,
and the TPM's PCRs must survive that). Run it in the backend domain
(dom0) before xl create: xl waits for the backend to answer.

Exit status: 0 on SIGINT/SIGTERM, 1 on a failure, 2 on bad usage.
`

// version is set at build time (-ldflags -X main.version=..., the Makefile).
var version string

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("vtpmback", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("socket-dir", "", "directory of the swtpm sockets, `DIR`/UUID.sock")
	domid := fs.Int("domid", 0, "this (backend) domain's id")
	showVer := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
			return 0
		}
		fmt.Fprintf(stderr, "vtpmback: %v\n%s", err, usage)
		return 2
	}
	if *showVer {
		v := version
		if v == "" {
			v = "(devel)"
		}
		fmt.Fprintf(os.Stdout, "vtpmback %s\n", v)
		return 0
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vtpmback: --socket-dir is required and nothing else\n%s", usage)
		return 2
	}
	logger := log.New(stderr, "vtpmback: ", log.LstdFlags|log.Lmicroseconds)
	xs, err := xenstore.Open()
	if err != nil {
		logger.Print(err)
		return 1
	}
	defer xs.Close()
	b := &tpmback.Backend{
		Store:   xs,
		Root:    fmt.Sprintf("/local/domain/%d/backend/vtpm", *domid),
		Connect: tpmback.XenChannel,
		OpenTPM: func(uuid string) (tpmback.TPM, string, error) { return openSwtpm(*dir, uuid) },
		Logf:    logger.Printf,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, xs, b); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

const rootToken = "vtpmback-root"

func serve(ctx context.Context, xs *xenstore.Client, b *tpmback.Backend) error {
	defer b.Close()
	if err := xs.Watch(b.Root, rootToken); err != nil {
		return err
	}
	b.Logf("serving %s", b.Root)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-xs.Events():
			if !ok {
				return errors.New("xenstore connection closed")
			}
			b.Step()
		}
	}
}

// uuidRE is what libxl writes (LIBXL_UUID_FMT); anything else must not
// become a path.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func openSwtpm(dir, uuid string) (tpmback.TPM, string, error) {
	if !uuidRE.MatchString(uuid) {
		return nil, "", fmt.Errorf("uuid %q is not a UUID", uuid)
	}
	p := filepath.Join(dir, uuid+".sock")
	t, err := tpmback.DialSocket(p)
	if err != nil {
		return nil, "", fmt.Errorf("no swtpm for vTPM %s: %w", uuid, err)
	}
	return t, p, nil
}
