package main

import (
	"bufio"
	"fmt"
	"time"

	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/predict/fleet"
)

// Exit status of --xl-config when at least one guest could not be
// predicted; the others are still printed.
const exitGuestFailed = 1

// predictXL predicts every guest of the given xl configs. json is one
// array (a document a script can load whole), jsonl one guest per line as
// results arrive in order (for hundreds of guests), table a summary.
func predictXL(args []string, in *inputFlags, format string, noCache bool, workers int, guestTimeout time.Duration, e env) (int, error) {
	if format == "" {
		format = "json"
	}
	switch format {
	case "json", "jsonl", "table":
	default:
		return 0, argErr("--format", "unknown format %q with --xl-config (want json, jsonl or table)", format)
	}
	if workers < 0 {
		return 0, argErr("--workers", "%d: want a positive number", workers)
	}
	banks, err := in.bankList()
	if err != nil {
		return 0, err
	}
	banks = predict.Banks(banks)
	if guestTimeout <= 0 {
		return 0, argErr("--guest-timeout", "%v: want a positive duration", guestTimeout)
	}
	o := fleet.Options{Banks: banks, Workers: workers, NoCache: noCache, GuestTimeout: guestTimeout}
	if o.Init, err = predict.ParsePCRInits(in.pcrInits, banks); err != nil {
		return 0, &argError{arg: "--pcr-init", err: err}
	}
	jobs, skipped, err := fleet.Expand(args)
	if err != nil {
		return 0, &argError{arg: "--xl-config", err: err}
	}
	for _, s := range skipped {
		fmt.Fprintf(e.stderr, "pcrsim predict: note: %s\n", s)
	}
	if len(jobs) == 0 {
		return 0, argErr("--xl-config", "no xl domU config found in %v", args)
	}
	w := bufio.NewWriter(e.stdout)
	var all []fleet.Result
	first := true
	emit := func(r fleet.Result) error {
		switch format {
		case "table":
			all = append(all, r)
			return nil
		case "jsonl":
			if err := writeJSON(w, r.Doc); err != nil {
				return err
			}
			return w.Flush()
		}
		sep := ","
		if first {
			sep, first = "[", false
		}
		w.WriteString(sep)
		return writeJSON(w, r.Doc)
	}
	st, err := fleet.Run(jobs, o, emit)
	if err == nil {
		switch format {
		case "json":
			_, err = w.WriteString("]\n")
		case "table":
			err = fleet.WriteTable(w, banks, all)
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return 0, argErr("output", "%w", err)
	}
	fmt.Fprintf(e.stderr, "pcrsim predict: %d guests, %d failed; hashed %d distinct file groups, %d reused\n",
		st.Guests, st.Failed, st.CacheMisses, st.CacheHits)
	if st.Failed > 0 {
		return exitGuestFailed, nil
	}
	return exitOK, nil
}
