// Command vtpmback is a dom0 backend for Linux's xen-tpmfront and the one
// owner of every guest's swtpm: it serves the Xen vTPM protocol (tpmif
// v2) of every vtpm device whose backend is this domain, from an swtpm
// per vTPM uuid that it provisions, starts, resets at each boot, keeps
// across soft resets and restores, and stops when the domain is gone
// (host/vtpm). Other host tools reach a vTPM through its control socket
// (host/vtpmctl). See docs/xen.md.
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
	"strings"
	"syscall"

	"github.com/vtpmboot/vtpmboot/host/buildinfo"
	"github.com/vtpmboot/vtpmboot/host/swtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
	"github.com/vtpmboot/vtpmboot/host/xen/tpmback"
	"github.com/vtpmboot/vtpmboot/host/xen/xendom"
	"github.com/vtpmboot/vtpmboot/host/xenver"
	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

const usage = `usage: vtpmback [options]

Serves the vTPM of every Xen guest whose xl config says
  vtpm = [ "backend=Domain-0,uuid=UUID" ]
Each vTPM is made on first use (swtpm_setup: TPM 2.0 with sha1 and sha256
banks, ECC EK and EK certificate, platform certificate), or TPM 1.2 if
--config says "UUID tpm=1.2". A new domain's boot resets its TPM; a soft
reset (kexec) keeps it; a restored domain resumes the state saved when its
predecessor went away; a domain gone from the hypervisor has its swtpm
stopped, state kept. Run it in dom0 before the guests start (the systemd
unit vtpmback.service does).

Options:
  --state-dir DIR   vTPM state, DIR/UUID (default /var/lib/vtpmboot/tpm)
  --ca-dir DIR      vtpmboot's EK/platform certificate CA (default /var/lib/vtpmboot/ca)
  --run-dir DIR     swtpm sockets and bindings (default /run/vtpmboot)
  --control PATH    control socket (default /run/vtpmboot/vtpmback.sock)
  --config FILE     per-vTPM settings (default /etc/vtpmboot/vtpm.conf)
  --socket-dir DIR  admin-started swtpms at DIR/UUID.sock and DIR/UUID.ctrl
                    (used, never started or stopped, by vtpmback)
  --domid N         this backend domain's id (default 0)
  --provision UUID  make vTPM UUID now (as its first use would) and exit
  --version         print the version
  --help            this text

Exit status: 0 on SIGINT/SIGTERM, 1 on a failure, 2 on bad usage.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	stateDir, caDir, runDir, control, config, socketDir string
	provision                                           string
	domid                                               int
}

// parse reads the command line; a non-nil code means exit with it.
func parse(args []string, stdout, stderr io.Writer) (*options, *int) {
	code := func(c int) *int { return &c }
	fs := flag.NewFlagSet("vtpmback", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &options{}
	fs.StringVar(&o.stateDir, "state-dir", vtpm.DefaultStateDir, "")
	fs.StringVar(&o.caDir, "ca-dir", vtpm.DefaultCADir, "")
	fs.StringVar(&o.runDir, "run-dir", vtpm.DefaultRunDir, "")
	fs.StringVar(&o.control, "control", "", "")
	fs.StringVar(&o.config, "config", vtpm.DefaultConf, "")
	fs.StringVar(&o.socketDir, "socket-dir", "", "")
	fs.IntVar(&o.domid, "domid", 0, "")
	fs.StringVar(&o.provision, "provision", "", "")
	version := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil, code(0)
		}
		msg := err.Error()
		// The flag package spells flags with one dash; this program's
		// documentation uses two.
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			msg = "unknown flag --" + name
		} else if i := strings.Index(msg, " -"); i >= 0 && strings.Contains(msg, "flag") {
			msg = msg[:i] + " --" + msg[i+2:]
		}
		fmt.Fprintf(stderr, "vtpmback: %s\n%s", msg, usage)
		return nil, code(2)
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Line("vtpmback"))
		return nil, code(0)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vtpmback: unexpected argument %q\n%s", fs.Arg(0), usage)
		return nil, code(2)
	}
	if o.domid < 0 || o.domid >= 0x7ff0 {
		fmt.Fprintf(stderr, "vtpmback: --domid %d is not a domain id\n%s", o.domid, usage)
		return nil, code(2)
	}
	if o.control == "" {
		o.control = filepath.Join(o.runDir, filepath.Base(vtpmctl.DefaultSocket))
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, code := parse(args, stdout, stderr)
	if code != nil {
		return *code
	}
	logger := log.New(stderr, "vtpmback: ", 0)
	if o.provision != "" {
		if err := provision(o, stdout); err != nil {
			logger.Print(err)
			return 1
		}
		return 0
	}
	if err := serve(o, logger); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

func provision(o *options, stdout io.Writer) error {
	conf, err := vtpm.ReadConf(o.config)
	if err != nil {
		return err
	}
	ca := &swtpm.CA{Dir: o.caDir}
	dir, created, err := vtpm.Provision(o.stateDir, conf, ca, o.provision)
	if err != nil {
		return err
	}
	what := "already provisioned"
	if created {
		what = "provisioned"
	}
	fmt.Fprintf(stdout, "vTPM %s %s in %s\nEK and platform certificates signed by %s (root %s)\n", o.provision, what, dir, ca.IssuerCert(), ca.RootCert())
	return nil
}

func serve(o *options, logger *log.Logger) error {
	conf, err := vtpm.ReadConf(o.config)
	if err != nil {
		return err
	}
	hv, err := xendom.Open()
	if err != nil {
		return err
	}
	defer hv.Close()
	xs, err := xenstore.Open()
	if err != nil {
		return err
	}
	defer xs.Close()
	m, err := vtpm.New(vtpm.Config{
		StateDir: o.stateDir, RunDir: o.runDir, SocketDir: o.socketDir, Conf: conf,
		CA:          &swtpm.CA{Dir: o.caDir},
		Exists:      hv.Exists,
		DeviceModel: vtpm.DeviceModel(xs.Read),
		Logf:        logger.Printf,
	})
	if err != nil {
		return err
	}
	defer m.Close()
	b := backend(xs, m, fmt.Sprintf("/local/domain/%d/backend/vtpm", o.domid), logger)
	defer b.Close()
	l, err := vtpmctl.Listen(o.control)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv := &vtpmctl.Server{Handler: m, Logf: logger.Printf}
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- srv.Serve(ctx, l) }()
	logger.Printf("serving %s (control socket %s)", b.Root, o.control)
	warnToolstack(ctx, logger)
	return loop(ctx, xs, m, b, ctlDone, logger)
}

// backend serves every vtpm device under root through the manager.
func backend(xs *xenstore.Client, m *vtpm.Manager, root string, logger *log.Logger) *tpmback.Backend {
	return &tpmback.Backend{
		Store:   xs,
		Root:    root,
		Connect: tpmback.XenChannel,
		OpenTPM: func(domid uint32, be, uuid string) (tpmback.TPM, string, error) {
			h, what, err := m.Attach(domid, be, uuid)
			if err != nil {
				return nil, "", err // not a nil *Handle in a non-nil TPM
			}
			return h, what, nil
		},
		Logf: logger.Printf,
	}
}

// loop hands each watch event to the backend, which looks at the one
// device it names (a guest writing its own nodes costs only its own
// device), and asks the hypervisor which domains are gone when xenstore
// says one was released. Devices a previous vtpmback had Connected are
// served again by the first full Step (tpmback re-maps their ring).
func loop(ctx context.Context, xs *xenstore.Client, m *vtpm.Manager, b *tpmback.Backend, ctlDone <-chan error, logger *log.Logger) error {
	if err := xs.Watch(b.Root, tpmback.RootToken); err != nil {
		return err
	}
	if err := xs.Watch("@releaseDomain", releaseToken); err != nil {
		return err
	}
	m.Reap()
	b.Step()
	if err := notifyReady(); err != nil {
		logger.Printf("sd_notify: %v", err)
	}
	for {
		select {
		case <-ctx.Done():
			// Stopping at host shutdown comes after xendomains saved the
			// guests (the unit is ordered Before=xendomains.service): a
			// domain gone since the last event still gets its TPM state
			// stored for the restore.
			m.Reap()
			return <-ctlDone
		case err := <-ctlDone:
			return err
		case ev, ok := <-xs.Events():
			if !ok {
				return errors.New("xenstore connection closed")
			}
			if ev.Token == releaseToken {
				// A domain died, shut down or was soft-reset: ask the
				// hypervisor which of ours are really gone, then look at
				// every device (their domains' trees may be gone).
				m.Reap()
				b.Step()
				continue
			}
			b.HandleEvent(ev)
		}
	}
}

// releaseToken tags the @releaseDomain watch.
const releaseToken = "vtpmback-release"

// warnToolstack says so when dom0's libxl is one that cannot soft-reset
// an HVM guest: the stub's kexec would lose every such guest, and the
// admin should hear it before the first one does not come back.
func warnToolstack(ctx context.Context, logger *log.Logger) {
	v, src, err := xenver.Toolstack(ctx)
	if err != nil {
		logger.Printf("toolstack version unknown (%v): cannot check it against the libxl releases that cannot kexec HVM guests", err)
		return
	}
	if verdict, why := xenver.SoftResetVerdict(v); verdict != xenver.Good {
		logger.Printf("WARNING: %s (version from %s)", why, src)
	}
}
