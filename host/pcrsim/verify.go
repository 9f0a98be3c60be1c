package pcrsim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// VerifyConfig is pcrsim verify's flags. The prediction comes from Input:
// Expected (at most one file) or the same inputs as Predict.
type VerifyConfig struct {
	Input
	// Actual is the readings file ("-": stdin); ActualFormat forces its
	// format (yaml, sysfs, json).
	Actual, ActualFormat string
	// Current reads this machine's TPM (TPMDevice, "" for the default)
	// instead of Actual.
	Current   bool
	TPMDevice string
	// EventLogs are replayed, in boot order, against the readings.
	EventLogs []string
	// ProcCmdline is what --current takes the booted command line from
	// ("" means /proc/cmdline).
	ProcCmdline string
}

func (c *VerifyConfig) expected() string {
	if len(c.Expected) == 0 {
		return ""
	}
	return c.Expected[len(c.Expected)-1]
}

// verification is what Verify gathers before it prints.
type verification struct {
	actual   pcrfile.Readings
	required []pcrbank.Alg
	// log is the joined --eventlog logs, as read: not trusted until
	// log.Verify has replayed it against the readings.
	log     *eventlog.Log
	logName string
	// startLog gives the starting values; it is log, or under --current
	// the firmware log read from securityfs (startLogName).
	startLog     *eventlog.Log
	startLogName string
	expected     pcrfile.Readings
	plan         []measure.Measurement
	startNote    string
}

// Verify compares a prediction with actual readings and, with EventLogs,
// replays the logs against the readings and compares the stub's events
// with the prediction. It returns ExitMismatch when anything differs.
func Verify(c VerifyConfig, o IO) (int, error) {
	defer c.close()
	if err := check(c.rules()); err != nil {
		return 0, err
	}
	forced, err := c.forcedFormat()
	if err != nil {
		return 0, err
	}
	var v verification
	if v.required, err = c.bankList(); err != nil {
		return 0, err
	}
	// The event logs come first: a log that cannot be read is an input
	// error whatever else happens, and --current reads the PCRs it names.
	if v.log, v.logName, err = readLogs(c.EventLogs); err != nil {
		return 0, err
	}
	if v.actual, err = c.readings(forced, v.log, o); err != nil {
		return 0, err
	}
	if err := c.loadStartLog(&v); err != nil {
		return 0, err
	}
	if err := c.prediction(&v, o); err != nil {
		return 0, err
	}
	return report(&v, o)
}

func (c *VerifyConfig) forcedFormat() (pcrfile.Format, error) {
	if c.ActualFormat == "" {
		return pcrfile.FormatUnknown, nil
	}
	f, err := pcrfile.ParseFormat(c.ActualFormat)
	if err != nil {
		return 0, &ArgError{Arg: "--actual-format", Err: err}
	}
	return f, nil
}

// readLogs reads and joins the event logs, in boot order.
func readLogs(paths []string) (*eventlog.Log, string, error) {
	var log *eventlog.Log
	for _, p := range paths {
		l, err := eventlog.ReadFile(p)
		if err != nil {
			return nil, "", &ArgError{Arg: "--eventlog", Err: err}
		}
		if log == nil {
			log = l
		} else if log, err = log.Append(l); err != nil {
			return nil, "", argErr("--eventlog", "%s: %v", p, err)
		}
	}
	return log, strings.Join(paths, " + "), nil
}

// readings reads the TPM (--current) or the --actual file.
func (c *VerifyConfig) readings(forced pcrfile.Format, log *eventlog.Log, o IO) (pcrfile.Readings, error) {
	if c.Current {
		t, err := tpmfront.Open(c.TPMDevice)
		if err != nil {
			return nil, argErr("--current", "no TPM to read: %v", err)
		}
		defer t.Close()
		actual, err := predict.ReadTarget(t, pcrsToRead(log))
		if err != nil {
			return nil, argErr("--current", "%v", err)
		}
		return actual, nil
	}
	b, err := readInput("--actual", c.Actual, o.Stdin, pcrfile.MaxSize, "a readings file")
	if err != nil {
		return nil, err
	}
	var actual pcrfile.Readings
	if forced != pcrfile.FormatUnknown {
		actual, err = pcrfile.ParseAs(b, forced)
	} else {
		actual, _, err = pcrfile.Parse(b)
	}
	if err != nil {
		return nil, argErr("--actual", "%s: %w", displayName(c.Actual), err)
	}
	return actual, nil
}

// loadStartLog picks the log the starting values come from. Under
// --current without --eventlog that is this boot's firmware log from
// securityfs, which is not replayed against the readings: the stub's
// events may be missing from it (it prints them on the console when it
// cannot append them), so a replay would fail on PCR 4 and 5 of a boot
// that is fine. It needs no replay either: its firmware part only decides
// the starting values, and a wrong one gives a prediction that the
// comparison with the TPM's own PCR 4 and 5 then fails.
func (c *VerifyConfig) loadStartLog(v *verification) error {
	v.startLog, v.startLogName = v.log, v.logName
	if !c.Current || v.log != nil || c.given("pcr-init") || !fileExists(predict.FirmwareLogPath) {
		return nil
	}
	l, err := eventlog.ReadFile(predict.FirmwareLogPath)
	if err != nil {
		return argErr("--current", "%v", err)
	}
	v.startLog, v.startLogName = l, predict.FirmwareLogPath
	return nil
}

// prediction fills v.expected and v.plan: from --expected, or computed;
// nothing when only logs are replayed.
func (c *VerifyConfig) prediction(v *verification, o IO) error {
	switch {
	case c.expected() != "":
		return c.readExpected(v, o)
	case !c.Current && !c.any() && v.log != nil:
		return nil // only a replay: no prediction to compare events with
	}
	if c.Current {
		if err := c.currentDefaults(v); err != nil {
			return err
		}
	}
	po, err := c.options()
	if err != nil {
		return err
	}
	c.noteChoice(o)
	if v.startLog != nil && !c.given("pcr-init") {
		if v.startNote, err = startFromLog(&po, v.startLog, v.startLogName); err != nil {
			return &ArgError{Arg: "--eventlog", Err: err}
		}
	}
	r, err := predict.Run(po)
	if err != nil {
		return err
	}
	v.expected, v.plan = r.Final, r.Measurements()
	return nil
}

// currentDefaults makes --current predict what booted: the running system
// unless files were named, its /proc/cmdline, and the TPM's banks.
func (c *VerifyConfig) currentDefaults(v *verification) error {
	if !c.fromGuest() && !c.given("kernel") {
		c.running = true
	}
	if !c.given("cmdline") {
		path := c.ProcCmdline
		if path == "" {
			path = "/proc/cmdline"
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return argErr("--current", "%v", err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		c.cmdlineOverride = &s
	}
	if v.required == nil {
		// Predict exactly the banks this TPM has.
		c.defaultBanks = v.actual.Algs()
	}
	return nil
}

func (c *VerifyConfig) noteChoice(o IO) {
	if c.sel == nil {
		return
	}
	for _, n := range predict.NoteStrings(c.sel) {
		o.note("%s", n)
	}
	if c.cmdlineOverride != nil && c.sel.Choice.Entry.Cmdline != *c.cmdlineOverride {
		o.note("/proc/cmdline differs from the command line of %q, %q; the prediction uses /proc/cmdline", c.sel.Choice.Reason, c.sel.Choice.Entry.Cmdline)
	}
}

// readExpected reads a pcrsim JSON prediction, cut down to --bank.
func (c *VerifyConfig) readExpected(v *verification, o IO) error {
	path := c.expected()
	b, err := readInput("--expected", path, o.Stdin, pcrfile.MaxSize, "a readings file")
	if err != nil {
		return err
	}
	all, err := pcrfile.ParseAs(b, pcrfile.FormatJSON)
	if err != nil {
		return argErr("--expected", "%s: %w", path, err)
	}
	v.expected = all
	if v.required != nil {
		v.expected = pcrfile.Readings{}
		for _, a := range v.required {
			if all[a] == nil {
				return argErr("--bank", "bank %v is not in the prediction %s (it has %v)", a, path, all.Algs())
			}
			v.expected[a] = all[a]
		}
	}
	v.plan = predict.PlanFromJSON(b)
	return nil
}

// report replays the --eventlog logs, then prints the comparison and the
// event check.
func report(v *verification, o IO) (int, error) {
	var events []eventlog.Event
	if v.log != nil {
		// A log that does not describe this TPM is bad input: refuse it
		// before printing anything that relies on it.
		var err error
		if events, err = v.log.Verify(v.actual); err != nil {
			var re *eventlog.ReplayError
			if errors.As(err, &re) {
				return 0, argErr("--eventlog", "%s: %v: it is not this machine's log of this boot, or events are missing (the stub prints its own on the console when it cannot append them: pcrsim eventlog extract)", v.logName, err)
			}
			return 0, argErr("--eventlog", "%s: %v", v.logName, err)
		}
	}
	w := bufio.NewWriter(o.Stdout)
	fmt.Fprint(w, v.startNote)
	code := ExitOK
	if v.expected != nil {
		cmp := predict.Compare(v.expected, v.actual, v.required)
		if err := cmp.WriteTable(w); err != nil {
			return 0, err
		}
		if !cmp.OK() {
			code = ExitMismatch
		}
	}
	if v.log != nil && !compareEvents(w, v, events) {
		code = ExitMismatch
	}
	return code, flush(w, nil)
}

// compareEvents prints how the verified events compare with the plan.
func compareEvents(w io.Writer, v *verification, events []eventlog.Event) bool {
	fmt.Fprintf(w, "event log %s replays to every PCR read (%d events)\n", v.logName, len(v.log.UntrustedEvents))
	if v.plan == nil {
		return true
	}
	diffs := predict.CompareEvents(events, v.plan)
	for _, d := range diffs {
		fmt.Fprintf(w, "EVENT MISMATCH %v\n", d)
	}
	if len(diffs) > 0 {
		return false
	}
	fmt.Fprintf(w, "the stub's %d events are the predicted measurements\n", len(v.plan))
	return true
}

// pcrsToRead are the PCRs --current reads: 4 and 5, and every PCR the
// event log has events for, so a replay can be checked against all of
// them. The log is not trusted yet: it only widens what is read.
func pcrsToRead(l *eventlog.Log) []int {
	seen := map[int]bool{4: true, 5: true}
	if l != nil {
		for _, e := range l.UntrustedEvents {
			if e.Type != eventlog.EVNoAction {
				seen[e.PCR] = true
			}
		}
	}
	var out []int
	for i := range pcrbank.NumPCRs {
		if seen[i] {
			out = append(out, i)
		}
	}
	return out
}
