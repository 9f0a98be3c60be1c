package pcrsim

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// PredictConfig is pcrsim predict's flags.
type PredictConfig struct {
	Input
	// Format is text, json or eventlog; with XLConfigs json, jsonl or
	// table. "" is the default of each.
	Format string
	// LogFormat (sha1 or crypto-agile) and TPM (1.2 or 2.0) choose the
	// layout of Format eventlog.
	LogFormat, TPM string
	// List lists what discovery found on a guest instead of predicting.
	List bool
	// EventLog names a TCG log whose firmware events give PCR 4 and 5
	// their starting values.
	EventLog string
	// NoCache, Workers and GuestTimeout tune an XLConfigs run.
	NoCache      bool
	Workers      int
	GuestTimeout time.Duration
}

// Predict computes what the stub will extend and writes it in c.Format.
func Predict(c PredictConfig, o IO) (int, error) {
	defer c.close()
	if len(c.XLConfigs) > 0 {
		if err := check(c.xlRules()); err != nil {
			return 0, err
		}
		return predictFleet(&c, o)
	}
	if c.Format == "" {
		c.Format = "text"
	}
	switch c.Format {
	case "text", "json", "eventlog":
	default:
		return 0, argErr("--format", "unknown format %q (want text, json or eventlog; jsonl and table go with --xl-config)", c.Format)
	}
	if err := check(c.rules()); err != nil {
		return 0, err
	}
	if c.List {
		return listGuest(&c, o)
	}
	po, err := c.options()
	if err != nil {
		return 0, err
	}
	if err := c.startValues(&po, o); err != nil {
		return 0, err
	}
	c.printChoice(o)
	return writePrediction(&c, po, o)
}

// startValues fills po.Init from the firmware's part of an event log
// (Input.startLog), saying so on stderr.
func (c *PredictConfig) startValues(po *predict.Options, o IO) error {
	path := c.startLog(c.EventLog)
	if path == "" {
		return nil
	}
	if c.EventLog != "" && c.given("pcr-init") {
		return argErr("--eventlog", "give either --eventlog or --pcr-init, not both")
	}
	l, err := eventlog.ReadFile(path)
	if err != nil {
		return &ArgError{Arg: "--eventlog", Err: err}
	}
	note, err := startFromLog(po, l, path)
	if err != nil {
		return &ArgError{Arg: "--eventlog", Err: err}
	}
	fmt.Fprintf(o.Stderr, "%s: %s", o.Name, note)
	return nil
}

// startFromLog sets po.Init to the replay of the firmware events of l
// (named name) for the predicted banks, and returns the line that says so.
func startFromLog(po *predict.Options, l *eventlog.Log, name string) (string, error) {
	var err error
	if po.Init, err = predict.StartFromLog(l, predict.Banks(po.Banks)); err != nil {
		return "", fmt.Errorf("%s: starting values: %v", name, err)
	}
	return fmt.Sprintf("starting values: PCR 4 and 5 replayed from the %d firmware events of %s\n", l.SplitStub(), name), nil
}

// printChoice tells which entry of a guest is predicted. Notes about
// unreadable partitions matter to whoever relies on the prediction, but
// must not corrupt machine-readable stdout.
func (c *PredictConfig) printChoice(o IO) {
	if c.sel == nil {
		return
	}
	for _, n := range predict.NoteStrings(c.sel) {
		o.note("%s", n)
	}
	if c.Format == "text" {
		fmt.Fprintf(o.Stdout, "boots %q\n", c.sel.Choice.Reason)
	}
}

func writePrediction(c *PredictConfig, po predict.Options, o IO) (int, error) {
	var lf eventlog.Format
	var err error
	if c.Format == "eventlog" {
		if lf, err = pickLogFormat(c.LogFormat, c.TPM, predict.Banks(po.Banks)); err != nil {
			return 0, err
		}
	}
	r, err := predict.Run(po)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(o.Stdout)
	switch c.Format {
	case "text":
		err = r.WriteText(w)
	case "json":
		if c.sel != nil {
			err = writeJSON(w, predict.Doc(c.sel, r, predict.NoteStrings(c.sel)))
		} else {
			err = r.WriteJSON(w)
		}
	case "eventlog":
		err = eventlog.Write(w, lf, r.Banks, r.Measurements())
	}
	return ExitOK, flush(w, err)
}

// flush finishes a buffered output after err, the error of producing it;
// an error writing it is reported under "output".
func flush(w *bufio.Writer, err error) error {
	var ae *ArgError
	if errors.As(err, &ae) {
		return err
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return argErr("output", "%w", err)
	}
	return nil
}

// pickLogFormat chooses the layout the stub writes for the guest's TPM,
// by the stub's own rule (eventlog.FormatFor): a TPM 1.2 gets SHA-1
// events, a TPM 2.0 crypto-agile ones even when sha1 is its only bank.
// The banks alone cannot tell the two apart, so a sha1-only prediction
// needs --tpm (or an explicit --log-format); otherwise the crypto-agile
// layout, the one that carries banks, is the default.
func pickLogFormat(name, tpm string, banks []pcrbank.Alg) (eventlog.Format, error) {
	onlySHA1 := len(banks) == 1 && banks[0] == pcrbank.SHA1
	var f eventlog.Format
	switch tpm {
	case "1.2":
		if !onlySHA1 {
			return 0, argErr("--tpm", "a TPM 1.2 has only the sha1 bank; add --bank sha1")
		}
		f = eventlog.FormatFor(pcrbank.Version12)
	case "2.0":
		f = eventlog.FormatFor(pcrbank.Version20)
	case "":
		if onlySHA1 && name == "" {
			return 0, argErr("--tpm", "with --bank sha1 alone, say which TPM the log is for: --tpm 1.2 (a SHA-1 log, as the stub writes for Xen's vtpm-stubdom) or --tpm 2.0 (crypto-agile)")
		}
		f = eventlog.FormatFor(pcrbank.Version20)
	default:
		return 0, argErr("--tpm", "unknown TPM %q (want 1.2 or 2.0)", tpm)
	}
	switch name {
	case "":
		return f, nil
	case "crypto-agile":
		return eventlog.CryptoAgile, nil
	case "sha1":
		if !onlySHA1 {
			return 0, argErr("--log-format", "a sha1 log carries only the sha1 bank; add --bank sha1")
		}
		return eventlog.SHA1Log, nil
	}
	return 0, argErr("--log-format", "unknown layout %q (want sha1 or crypto-agile)", name)
}

// listGuest prints what discovery found. It lists even when nothing can
// boot (that is when a list helps most), then fails with the reason.
func listGuest(c *PredictConfig, o IO) (int, error) {
	if err := check(c.listRules()); err != nil {
		return 0, err
	}
	if err := c.openGuest(); err != nil {
		return 0, err
	}
	d := predict.List(c.sel)
	w := bufio.NewWriter(o.Stdout)
	var err error
	if c.Format == "json" {
		err = d.WriteJSON(w)
	} else {
		err = d.WriteText(w)
	}
	if err := flush(w, err); err != nil {
		return 0, err
	}
	if c.sel.Err != nil {
		return 0, &ArgError{Arg: c.guestArg(), Err: c.sel.Err}
	}
	return ExitOK, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
