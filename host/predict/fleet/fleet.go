// Package fleet predicts the PCRs of many Xen guests at once from their xl
// domU configs, the way a dom0 with hundreds of vtpmboot guests needs it:
// each guest's stub options come from its command line (extra=), its disks
// are read in userspace in the order the stub scans them, discovery and
// selection run through boot/discover and measurement through
// boot/measure (via host/predict), exactly as in the stub. Guests run in
// parallel on a bounded pool and share one caching hasher, so a kernel
// shared by 500 guests is read and hashed once.
package fleet

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/config"
	"github.com/vtpmboot/vtpmboot/host/loader"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/xl"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Job is one guest config to predict.
type Job struct {
	Path string
	cfg  *xl.Config
	err  error
}

// Expand turns --xl-config arguments into jobs. A file is always a guest.
// A directory contributes every regular file in it (symlinks followed, as
// in /etc/xen/auto), sorted by name; a file there that is evidently not a
// domU config (it does not parse and is not named *.cfg, or it parses but
// sets neither name= nor disk=, like xl.conf) is skipped with a note
// rather than reported as a failed guest.
func Expand(args []string) (jobs []Job, skipped []string, err error) {
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", a, unwrap(err))
		}
		if !st.IsDir() {
			c, perr := xl.ParseFile(a)
			jobs = append(jobs, Job{Path: a, cfg: c, err: perr})
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", a, unwrap(err))
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			p := filepath.Join(a, n)
			st, err := os.Stat(p)
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			c, perr := xl.ParseFile(p)
			switch {
			case perr != nil && !strings.HasSuffix(n, ".cfg"):
				skipped = append(skipped, fmt.Sprintf("%s: skipped, not an xl domU config (%v)", p, perr))
				continue
			case perr == nil && !hasKey(c, "name") && !hasKey(c, "disk"):
				skipped = append(skipped, fmt.Sprintf("%s: skipped, not an xl domU config (no name= or disk=)", p))
				continue
			}
			jobs = append(jobs, Job{Path: p, cfg: c, err: perr})
		}
	}
	return jobs, skipped, nil
}

func hasKey(c *xl.Config, k string) bool { _, ok := c.Value(k); return ok }

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Options are shared by every guest of a run.
type Options struct {
	Banks []pcrbank.Alg
	Init  []predict.PCRInit
	// Workers bounds the guests predicted at once; 0 means GOMAXPROCS.
	Workers int
	// NoCache hashes every guest's files afresh (see predict.CachingHasher
	// for when that matters).
	NoCache bool
	// GuestTimeout bounds one guest's prediction; 0 means
	// DefaultGuestTimeout. A guest that takes longer fails with that
	// reason and the run goes on.
	GuestTimeout time.Duration
}

// DefaultGuestTimeout is generous: a guest's prediction is milliseconds
// of parsing plus hashing its files at hundreds of MB/s. Reading a guest's
// disks and configs is bounded by size limits and budgets; this is the
// backstop for whatever a hostile image still finds, so one guest cannot
// hold up a fleet of hundreds.
const DefaultGuestTimeout = 2 * time.Minute

// Result is one guest's outcome.
type Result struct {
	Doc    predict.GuestDoc
	Report *predict.Report
	Err    error
}

// Stats summarises a run.
type Stats struct {
	Guests, Failed int
	// CacheHits and CacheMisses count hash requests served from the cache
	// and computed (a miss reads the files).
	CacheHits, CacheMisses int64
}

// Run predicts every job on a pool of Workers goroutines and calls emit
// once per job, in job order (a result waits for those before it), so
// output is deterministic and can still stream.
func Run(jobs []Job, o Options, emit func(Result) error) (Stats, error) {
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var h measure.Hasher = measure.StreamHasher{}
	cache := &predict.CachingHasher{}
	if !o.NoCache {
		h = cache
	}
	m := &memo{}
	defer m.close()
	results := make([]*Result, len(jobs))
	var mu sync.Mutex
	next := 0
	var emitErr error
	st := Stats{Guests: len(jobs)}
	idx := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, max(len(jobs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				r := predictWithin(jobs[i], o, h, m)
				mu.Lock()
				results[i] = &r
				for next < len(results) && results[next] != nil {
					if results[next].Err != nil {
						st.Failed++
					}
					if emitErr == nil {
						emitErr = emit(*results[next])
					}
					results[next] = &Result{} // release the report
					next++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range jobs {
		idx <- i
	}
	close(idx)
	wg.Wait()
	st.CacheHits, st.CacheMisses = cache.Stats()
	return st, emitErr
}

// predictWithin is predictOne bounded by o.GuestTimeout. A prediction
// that overruns is abandoned, not stopped: its goroutine ends on its own,
// since every read it makes is bounded.
func predictWithin(j Job, o Options, h measure.Hasher, m *memo) Result {
	limit := o.GuestTimeout
	if limit <= 0 {
		limit = DefaultGuestTimeout
	}
	done := make(chan Result, 1)
	go func() { done <- predictOne(j, o, h, m) }()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case r := <-done:
		return r
	case <-t.C:
		name := filepath.Base(j.Path)
		if j.cfg != nil && j.cfg.Name() != "" {
			name = j.cfg.Name()
		}
		err := fmt.Errorf("%s: prediction took longer than %v; gave up on this guest (a hostile disk image or config?)", j.Path, limit)
		return Result{Doc: predict.GuestDoc{Guest: name, Config: j.Path, Error: err.Error()}, Err: err}
	}
}

// Predict predicts one guest config on its own.
func Predict(j Job, o Options) Result { return predictOne(j, o, nil, nil) }

// shared is the discovery and selection over one set of disks, shared by
// every guest with the same disks and the same stub selectors. Hundreds of
// guests cloned from a few images would otherwise each re-open the image,
// re-read its partition table and superblocks and re-parse its grub.cfg,
// which costs more than hashing once the hashes are cached. The images stay
// open until the run ends; diskimage's filesystems lock their own caches,
// so guests may read them concurrently.
type shared struct {
	once sync.Once
	g    *predict.Guest
	sel  *predict.Selection
	err  error
}

type memo struct {
	mu sync.Mutex
	m  map[string]*shared
}

func (m *memo) get(key string, open func() (*predict.Guest, *predict.Selection, error)) *shared {
	m.mu.Lock()
	if m.m == nil {
		m.m = map[string]*shared{}
	}
	sh, ok := m.m[key]
	if !ok {
		sh = &shared{}
		m.m[key] = sh
	}
	m.mu.Unlock()
	sh.once.Do(func() { sh.g, sh.sel, sh.err = open() })
	return sh
}

func (m *memo) close() {
	for _, sh := range m.m {
		if sh.g != nil {
			sh.g.Close()
		}
	}
}

// memoKey identifies what decides a selection: each disk's image (device,
// inode, size, mtime: the same identity the hash cache uses) and guest
// name, and the vtpmboot.disk= and vtpmboot.entry= selectors. ok is false
// when a disk cannot be identified; that guest then works alone.
func memoKey(disks []xl.Disk, so config.StubOptions) (string, bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "%q %q", so.Disk, so.Entry)
	for _, d := range disks {
		if d.Check() != nil {
			return "", false
		}
		st, err := os.Stat(d.Path)
		if err != nil {
			return "", false
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return "", false
		}
		fmt.Fprintf(&b, " %s=%d:%d:%d:%d.%d", d.Linux, sys.Dev, sys.Ino, st.Size(), sys.Mtim.Sec, sys.Mtim.Nsec)
	}
	return b.String(), true
}

func predictOne(j Job, o Options, h measure.Hasher, m *memo) Result {
	name := filepath.Base(j.Path)
	if j.cfg != nil && j.cfg.Name() != "" {
		name = j.cfg.Name()
	}
	fail := func(err error) Result {
		return Result{Doc: predict.GuestDoc{Guest: name, Config: j.Path, Error: err.Error()}, Err: err}
	}
	if j.err != nil {
		return fail(j.err)
	}
	c := j.cfg
	if bl, err := c.Bootloader(); err != nil {
		return fail(err)
	} else if loader.IsLoader(bl) {
		return predictLoader(c, name, o, h)
	}
	disks, so, notes, err := stubView(c)
	if err != nil {
		return fail(err)
	}
	var g *predict.Guest
	var sel *predict.Selection
	key, ok := memoKey(disks, so)
	if ok && m != nil {
		sh := m.get(key, func() (*predict.Guest, *predict.Selection, error) { return openDisks(c, disks, so) })
		g, sel, err = sh.g, sh.sel, sh.err
		if err != nil {
			// The shared error names the first guest's file; name ours.
			err = fmt.Errorf("%s: %w", c.File, errors.Unwrap(err))
		}
	} else {
		g, sel, err = openDisks(c, disks, so)
		if g != nil {
			defer g.Close()
		}
	}
	if err != nil {
		return fail(err)
	}
	if sel.Err != nil {
		return fail(fmt.Errorf("%s: %w", j.Path, sel.Err))
	}
	notes = append(notes, predict.NoteStrings(sel)...)
	r, err := predict.Run(predict.Options{Banks: o.Banks, Init: o.Init, Inputs: g.Inputs(sel.Choice), Hasher: h})
	if err != nil {
		return fail(fmt.Errorf("%s: %w", j.Path, err))
	}
	d := predict.Doc(sel, r, notes)
	d.Guest, d.Config = name, j.Path
	return Result{Doc: d, Report: r}
}

// maxStubCmdline is x86 Linux's COMMAND_LINE_SIZE less its NUL.
const maxStubCmdline = 2047

// stubView is what the stub of this guest would see: its options, from
// the command line xl gives it, and its disks in the order it scans them.
func stubView(c *xl.Config) ([]xl.Disk, config.StubOptions, []string, error) {
	var so config.StubOptions
	typ, err := c.Type()
	if err != nil {
		return nil, so, nil, err
	}
	switch typ {
	case xl.TypePV:
		return nil, so, nil, fmt.Errorf("%s: type %s: kexec does not work in Xen PV guests; vtpmboot boots HVM guests", c.File, typ)
	case xl.TypePVH:
		// The stub refuses before measuring (boot/stub), so no PCR value
		// would describe this guest: a prediction would be a lie.
		return nil, so, nil, fmt.Errorf("%s: type %s: the stub refuses PVH guests: kexec needs Xen soft reset, which xl supports only for type=\"hvm\" (libxl 4.17 destroys a PVH guest that kexecs); use type=\"hvm\"", c.File, typ)
	}
	if k, err := c.Kernel(); err != nil {
		return nil, so, nil, err
	} else if k == "" {
		return nil, so, nil, fmt.Errorf("%s: no kernel= (the vtpmboot stub): this guest does not boot through vtpmboot", c.File)
	}
	// The stub parses /proc/cmdline, which is the command line xl builds
	// (cmdline=, or root= and extra=), not extra= alone.
	cmdline, _, err := c.Cmdline()
	if err != nil {
		return nil, so, nil, err
	}
	// The stub's kernel keeps COMMAND_LINE_SIZE-1 bytes of its command
	// line (x86: 2047); vtpmboot.* options past that never reach the
	// stub, so predicting with them would predict a boot that does not
	// happen.
	if len(cmdline) > maxStubCmdline {
		return nil, so, nil, fmt.Errorf("%s: the stub's command line (cmdline=, or root= and extra=) is %d bytes; its kernel keeps only the first %d, so options after byte %d would never reach the stub: shorten extra=",
			c.File, len(cmdline), maxStubCmdline, maxStubCmdline)
	}
	so, warns, err := config.ParseStubOptions(cmdline)
	if err != nil {
		return nil, so, nil, fmt.Errorf("%s: %w", c.File, err)
	}
	var notes []string
	for _, w := range warns {
		notes = append(notes, "kernel command line: "+w)
	}
	disks, err := c.DisksInBootOrder()
	if err != nil {
		return nil, so, nil, err
	}
	if len(disks) == 0 {
		return nil, so, nil, fmt.Errorf("%s: %w (no non-cdrom xen disk in disk=)", c.File, xl.ErrNoDisk)
	}
	return disks, so, notes, nil
}

// openDisks reads the disks in order, stopping at the first disk that
// holds a configuration (later disks cannot change the choice: discover
// takes the first configuration in disk order). Errors are wrapped once
// around the config file name (predictOne relies on it).
func openDisks(c *xl.Config, disks []xl.Disk, so config.StubOptions) (*predict.Guest, *predict.Selection, error) {
	g := &predict.Guest{}
	var sel *predict.Selection
	for i, d := range disks {
		if err := d.Check(); err != nil {
			// The stub searches this disk before any later one: without
			// its contents no prediction is trustworthy.
			return g, nil, fmt.Errorf("%s: %w", c.File, err)
		}
		if err := g.AddDisk(i, predict.DiskSpec{Path: d.Path, Linux: d.Linux}); err != nil {
			return g, nil, fmt.Errorf("%s: %w", c.File, fmt.Errorf("disk %s: %w", d.Vdev, err))
		}
		g.Restrict(so.Disk)
		sel = g.Choose(so.Entry)
		if len(sel.Found) > 0 {
			break
		}
	}
	if so.Disk != "" && len(g.Volumes) == 0 {
		names := g.DeviceNames()
		return g, nil, fmt.Errorf("%s: %w", c.File, fmt.Errorf("vtpmboot.disk=%s matches no partition (the guest has %s)", so.Disk, strings.Join(names, ", ")))
	}
	return g, sel, nil
}

// WriteTable prints one line per guest: name, entry, then PCR 4 and 5 of
// each bank as the first 16 hex digits. Guest-controlled text (titles) is
// quoted.
func WriteTable(w io.Writer, banks []pcrbank.Alg, rs []Result) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%-20s %-24s", "GUEST", "ENTRY")
	for _, a := range banks {
		fmt.Fprintf(bw, " %-16s %-16s", a.String()+":4", a.String()+":5")
	}
	fmt.Fprintln(bw)
	for _, r := range rs {
		fmt.Fprintf(bw, "%-20s ", r.Doc.Guest)
		if r.Err != nil {
			fmt.Fprintf(bw, "ERROR %q\n", r.Err.Error())
			continue
		}
		fmt.Fprintf(bw, "%-24s", fmt.Sprintf("%s %q", r.Doc.Entry.MenuPath, r.Doc.Entry.Title))
		for _, a := range banks {
			for _, p := range []int{4, 5} {
				h := hex.EncodeToString(r.Report.Final[a][p])
				fmt.Fprintf(bw, " %-16s", h[:min(16, len(h))])
			}
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}
