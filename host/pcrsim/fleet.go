package pcrsim

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/predict/fleet"
	"github.com/vtpmboot/vtpmboot/host/predict/policy"
)

// fleetSetup is the one way predict and policy turn --xl-config, --bank
// and --pcr-init into fleet jobs and options; skipped files are noted.
func (in *Input) fleetSetup(o IO) ([]fleet.Job, fleet.Options, error) {
	var fo fleet.Options
	if err := check(in.xlRules()); err != nil {
		return nil, fo, err
	}
	banks, err := in.bankList()
	if err != nil {
		return nil, fo, err
	}
	fo.Banks = predict.Banks(banks)
	if fo.Init, err = predict.ParsePCRInits(in.PCRInits, fo.Banks); err != nil {
		return nil, fo, &ArgError{Arg: "--pcr-init", Err: err}
	}
	jobs, skipped, err := fleet.Expand(in.XLConfigs)
	if err != nil {
		return nil, fo, &ArgError{Arg: "--xl-config", Err: err}
	}
	for _, s := range skipped {
		o.note("%s", s)
	}
	if len(jobs) == 0 {
		return nil, fo, argErr("--xl-config", "no xl domU config found in %v", in.XLConfigs)
	}
	return jobs, fo, nil
}

// predictFleet predicts every guest of the given xl configs. json is one
// array (a document a script can load whole), jsonl one guest per line as
// results arrive in order (for hundreds of guests), table a summary.
func predictFleet(c *PredictConfig, o IO) (int, error) {
	if c.Format == "" {
		c.Format = "json"
	}
	switch {
	case c.Format != "json" && c.Format != "jsonl" && c.Format != "table":
		return 0, argErr("--format", "unknown format %q with --xl-config (want json, jsonl or table)", c.Format)
	case c.Workers < 0:
		return 0, argErr("--workers", "%d: want a positive number", c.Workers)
	case c.GuestTimeout <= 0:
		return 0, argErr("--guest-timeout", "%v: want a positive duration", c.GuestTimeout)
	}
	jobs, fo, err := c.fleetSetup(o)
	if err != nil {
		return 0, err
	}
	fo.Workers, fo.NoCache, fo.GuestTimeout = c.Workers, c.NoCache, c.GuestTimeout
	w := bufio.NewWriter(o.Stdout)
	out := fleetWriter{w: w, format: c.Format}
	st, err := fleet.Run(jobs, fo, out.emit)
	if err == nil {
		err = out.finish(fo)
	}
	if err := flush(w, err); err != nil {
		return 0, err
	}
	fmt.Fprintf(o.Stderr, "%s: %d guests, %d failed; hashed %d distinct file groups, %d reused\n",
		o.Name, st.Guests, st.Failed, st.CacheMisses, st.CacheHits)
	if st.Failed > 0 {
		return ExitGuestFailed, nil
	}
	return ExitOK, nil
}

// fleetWriter writes fleet results as they arrive.
type fleetWriter struct {
	w      *bufio.Writer
	format string
	all    []fleet.Result // table: written at the end
	begun  bool           // json: the array is open
}

func (f *fleetWriter) emit(r fleet.Result) error {
	switch f.format {
	case "table":
		f.all = append(f.all, r)
		return nil
	case "jsonl":
		if err := writeJSON(f.w, r.Doc); err != nil {
			return err
		}
		return f.w.Flush()
	}
	sep := ","
	if !f.begun {
		sep, f.begun = "[", true
	}
	f.w.WriteString(sep)
	return writeJSON(f.w, r.Doc)
}

func (f *fleetWriter) finish(fo fleet.Options) error {
	switch f.format {
	case "json":
		_, err := f.w.WriteString("]\n")
		return err
	case "table":
		return fleet.WriteTable(f.w, fo.Banks, f.all)
	}
	return nil
}

// fleetPredictions predicts every guest for a policy; one that fails
// means the policy would not cover the fleet, so nothing is written.
func fleetPredictions(in *Input, o IO) ([]policy.Prediction, int, error) {
	jobs, fo, err := in.fleetSetup(o)
	if err != nil {
		return nil, 0, err
	}
	var out []policy.Prediction
	failed := 0
	_, err = fleet.Run(jobs, fo, func(r fleet.Result) error {
		if r.Err != nil {
			failed++
			fmt.Fprintf(o.Stderr, "%s: guest %s: %s\n", o.Name, r.Doc.Guest, strings.ReplaceAll(r.Err.Error(), "\n", " "))
			return nil
		}
		out = append(out, policy.FromReport(guestLabel(r.Doc), r.Report))
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if failed > 0 {
		fmt.Fprintf(o.Stderr, "%s: %d of %d guests failed; no policy written\n", o.Name, failed, len(jobs))
		return nil, ExitGuestFailed, nil
	}
	return out, ExitOK, nil
}

func guestLabel(d predict.GuestDoc) string {
	l := "guest " + d.Guest
	if d.Entry != nil {
		l += fmt.Sprintf(" entry %s %q", d.Entry.MenuPath, d.Entry.Title)
	}
	return l
}
