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
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/vtpmboot/vtpmboot/host/swtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
	"github.com/vtpmboot/vtpmboot/host/xen/tpmback"
	"github.com/vtpmboot/vtpmboot/host/xen/xendom"
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
  --version         print the version
  --help            this text

Exit status: 0 on SIGINT/SIGTERM, 1 on a failure, 2 on bad usage.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	stateDir, caDir, runDir, control, config, socketDir string
	domid                                               int
}

func versionLine() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return "vtpmback " + v
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
		fmt.Fprintln(stdout, versionLine())
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
	if err := serve(o, logger); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
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
		CA:     &swtpm.CA{Dir: o.caDir},
		Exists: hv.Exists,
		Logf:   logger.Printf,
	})
	if err != nil {
		return err
	}
	defer m.Close()
	root := fmt.Sprintf("/local/domain/%d/backend/vtpm", o.domid)
	b := &tpmback.Backend{
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
	if err := xs.Watch(root, rootToken); err != nil {
		return err
	}
	if err := xs.Watch("@releaseDomain", releaseToken); err != nil {
		return err
	}
	if n := reserve(xs, root, logger.Printf); n > 0 {
		logger.Printf("re-serving %d connected device(s) a previous vtpmback served", n)
	}
	logger.Printf("serving %s (control socket %s)", root, o.control)
	m.Reap()
	b.Step()
	for {
		select {
		case <-ctx.Done():
			return <-ctlDone
		case err := <-ctlDone:
			return err
		case ev, ok := <-xs.Events():
			if !ok {
				return errors.New("xenstore connection closed")
			}
			if ev.Token == releaseToken {
				// A domain died, shut down or was soft-reset: ask the
				// hypervisor which of ours are really gone.
				m.Reap()
			}
			b.Step()
		}
	}
}

const (
	rootToken    = "vtpmback-root"
	releaseToken = "vtpmback-release"
)

// reserve makes devices a previous vtpmback had Connected be served
// again: their backend state goes back to InitWait, where Step connects
// a Connected frontend. Linux's xen-tpmfront ignores a backend's
// InitWait while it is Connected (backend_changed's default case), so
// the guest keeps its ring page and event channel, which the new
// connection maps again; its TPM (re-adopted by host/vtpm) is unchanged.
func reserve(s tpmback.Store, root string, logf func(string, ...any)) int {
	n := 0
	doms, _ := s.Directory(root)
	for _, dom := range doms {
		devs, _ := s.Directory(root + "/" + dom)
		for _, dev := range devs {
			be := root + "/" + dom + "/" + dev
			st, err := s.Read(be + "/state")
			if err != nil || strings.TrimSpace(st) != strconv.Itoa(4) {
				continue
			}
			if err := s.Write(be+"/state", "2"); err != nil {
				logf("%s: %v", be, err)
				continue
			}
			n++
		}
	}
	return n
}
