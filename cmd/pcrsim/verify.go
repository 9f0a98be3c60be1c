package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
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

const verifyHelp = `usage: pcrsim verify (--expected FILE | --kernel FILE [--initrd FILE]... --cmdline STRING
                     | --root DIR [--entry SEL] | --disk IMAGE... [--entry SEL])
                     [--pcr-init PCR:BANK=HEX]... [--bank BANKS]
                     (--actual FILE|- [--actual-format yaml|sysfs|json] | --current [--tpm-device DEV])
                     [--eventlog LOG]...
       pcrsim verify --current            inside a guest booted by vtpmboot

Compares a prediction with actual PCR readings and prints one row per PCR
and bank: PCR, bank, result, expected, actual.

The prediction is either pcrsim JSON (--expected, from 'pcrsim predict
--format json') or computed from the same flags as 'pcrsim predict'.

The readings (--actual, '-' for stdin) may be:
  yaml    tpm2_pcrread output, e.g. 'tpm2_pcrread sha1:4,5+sha256:4,5'
  sysfs   a TPM 1.2 /sys/class/tpm/tpm0/pcrs file ("PCR-04: 3A 3F ...")
  json    pcrsim's own JSON
The format is detected unless --actual-format forces it.

--current reads this machine's TPM instead (TPM 1.2 or 2.0, --tpm-device, default
/dev/tpmrm0 or /dev/tpm0) and, with no other input flag, predicts what
booted: the entry the stub's selector picks on this system (--root /, see
docs/pcrsim.md) with the command line from /proc/cmdline. With --kernel
(and --initrd), --cmdline defaults to /proc/cmdline too. Starting values
(unless --pcr-init): the replay of the firmware's events in the event log
(--eventlog, or under --current ` + predict.FirmwareLogPath + `
when it exists), the stub's own events excluded; all zero without a log.

--eventlog replays TCG event logs (SHA-1 or crypto-agile; the firmware's,
the stub's as 'pcrsim eventlog extract' writes it, or both: repeat the flag
in boot order) from zero against the readings, as go-attestation does: a
log that does not replay to every PCR read is not this machine's log of
this boot, and is refused naming the PCRs (exit 2). A log that replays is
then compared event by event with the prediction: each of the stub's three
events must have the predicted PCR, event text and digests.

Banks: with --bank, every named bank must be in the readings (absent
values fail). Without it, predicted banks the readings lack are listed as
not compared and the rest are checked; at least one bank must be compared.
So a TPM 1.2 sysfs file verifies the sha1 bank of a default prediction.

Exit status: 0 all compared values match, 1 a mismatch or missing value
(or an event differing from the prediction), 2 usage or input error (no
TPM, an unreadable or foreign event log).

Examples:
  pcrsim verify --current
  pcrsim verify --current --eventlog /sys/kernel/security/tpm0/binary_bios_measurements
  tpm2_pcrread sha1:4,5+sha256:4,5 > pcrs.yaml
  pcrsim verify --kernel /boot/vmlinuz --initrd /boot/initrd.img \
      --cmdline "root=/dev/xvda1 ro" --actual pcrs.yaml
  pcrsim predict --kernel vmlinuz --cmdline "" --format json > expected.json
  ssh guest cat /sys/class/tpm/tpm0/pcrs | pcrsim verify --expected expected.json --actual -

Flags:
`

// procCmdline is read by --current; a variable for tests.
var procCmdline = "/proc/cmdline"

func cmdVerify(name string, args []string, e env) (int, error) {
	var in inputFlags
	fs := newFlagSet(name, verifyHelp, e)
	in.register(fs)
	expectedPath := fs.String("expected", "", "prediction `FILE` in pcrsim JSON")
	actualPath := fs.String("actual", "", "readings `FILE` ('-' for stdin)")
	actualFormat := fs.String("actual-format", "", "force the readings `FORMAT`: yaml, sysfs or json")
	current := fs.Bool("current", false, "read this machine's TPM and, without other inputs, predict what booted it (--root / with /proc/cmdline)")
	tpmDev := fs.String("tpm-device", "", "with --current: the TPM `DEVICE` (default /dev/tpmrm0, else /dev/tpm0; or swtpm:unix:PATH)")
	var logs listFlag
	fs.Var(&logs, "eventlog", "TCG event `LOG` to replay against the readings; repeat to join logs in boot order")
	if err := parseFlags(fs, args); err != nil {
		return 0, err
	}
	switch {
	case *current && *actualPath != "":
		return 0, argErr("--actual", "give either --actual or --current, not both")
	case !*current && *actualPath == "":
		return 0, argErr("--actual", "required (or --current to read this machine's TPM)")
	case !*current && in.set("tpm-device"):
		return 0, argErr("--tpm-device", "only applies to --current")
	case *expectedPath == "-" && *actualPath == "-":
		return 0, argErr("--expected", "stdin already carries --actual")
	}
	var forced pcrfile.Format
	if *actualFormat != "" {
		if *current {
			return 0, argErr("--actual-format", "does not apply to --current")
		}
		f, err := pcrfile.ParseFormat(*actualFormat)
		if err != nil {
			return 0, &argError{arg: "--actual-format", err: err}
		}
		forced = f
	}
	required, err := in.bankList()
	if err != nil {
		return 0, err
	}

	// The event logs come first: under --current they give the starting
	// values, and a log that cannot be read is an input error whatever
	// else happens.
	var log *eventlog.Log
	for _, p := range logs {
		l, err := predict.ReadLog(p)
		if err != nil {
			return 0, &argError{arg: "--eventlog", err: err}
		}
		if log == nil {
			log = l
		} else if log, err = log.Append(l); err != nil {
			return 0, argErr("--eventlog", "%s: %v", p, err)
		}
	}
	logName := strings.Join(logs, " + ")

	// The readings.
	var actual pcrfile.Readings
	if *current {
		t, err := tpmfront.Open(*tpmDev)
		if err != nil {
			return 0, argErr("--current", "no TPM to read: %v", err)
		}
		actual, err = predict.ReadTarget(t, allPCRs(log))
		t.Close()
		if err != nil {
			return 0, argErr("--current", "%v", err)
		}
	} else {
		b, err := readInput("--actual", *actualPath, e.stdin)
		if err != nil {
			return 0, err
		}
		if forced != pcrfile.FormatUnknown {
			actual, err = pcrfile.ParseAs(b, forced)
		} else {
			actual, _, err = pcrfile.Parse(b)
		}
		if err != nil {
			return 0, argErr("--actual", "%s: %w", displayName(*actualPath), err)
		}
	}
	if *current && log == nil && !in.set("pcr-init") {
		if _, err := os.Stat(predict.FirmwareLogPath); err == nil {
			if log, err = predict.ReadLog(predict.FirmwareLogPath); err != nil {
				return 0, argErr("--current", "%v", err)
			}
			logName = predict.FirmwareLogPath
		}
	}

	var expected pcrfile.Readings
	var plan []measure.Measurement
	var startNote string
	switch {
	case *expectedPath != "" && in.any():
		return 0, argErr("--expected", "give either --expected or --kernel/--initrd/--cmdline/--pcr-init, not both")
	case *expectedPath != "":
		b, err := readInput("--expected", *expectedPath, e.stdin)
		if err != nil {
			return 0, err
		}
		all, err := pcrfile.ParseAs(b, pcrfile.FormatJSON)
		if err != nil {
			return 0, argErr("--expected", "%s: %w", *expectedPath, err)
		}
		expected = all
		if required != nil {
			expected = pcrfile.Readings{}
			for _, a := range required {
				if all[a] == nil {
					return 0, argErr("--bank", "bank %v is not in the prediction %s (it has %v)", a, *expectedPath, all.Algs())
				}
				expected[a] = all[a]
			}
		}
		plan = jsonPlan(b)
	case !*current && !in.any() && log != nil:
		// Only a replay: no prediction to compare events with.
	default:
		if *current {
			if !in.fromGuest() && !in.set("kernel") {
				in.root = "/"
				in.fs.Set("root", "/")
			}
			if !in.set("cmdline") {
				b, err := os.ReadFile(procCmdline)
				if err != nil {
					return 0, argErr("--current", "%v", err)
				}
				c := strings.TrimSuffix(string(b), "\n")
				in.cmdlineOverride = &c
			}
			if required == nil {
				// Predict exactly the banks this TPM has.
				in.defaultBanks = actual.Algs()
			}
		}
		o, err := in.options()
		defer in.close()
		if err != nil {
			return 0, err
		}
		if in.sel != nil {
			for _, n := range predict.NoteStrings(in.sel) {
				fmt.Fprintf(e.stderr, "%s: note: %s\n", name, n)
			}
			if in.cmdlineOverride != nil && in.sel.Choice.Entry.Cmdline != *in.cmdlineOverride {
				fmt.Fprintf(e.stderr, "%s: note: /proc/cmdline differs from the command line of %q, %q; the prediction uses /proc/cmdline\n", name, in.sel.Choice.Reason, in.sel.Choice.Entry.Cmdline)
			}
		}
		if log != nil && !in.set("pcr-init") {
			banks := o.Banks
			if banks == nil {
				banks = pcrbank.DefaultAlgs
			}
			if o.Init, err = predict.StartFromLog(log, banks); err != nil {
				return 0, argErr("--eventlog", "%s: starting values: %v", logName, err)
			}
			startNote = fmt.Sprintf("starting values: PCR 4 and 5 replayed from the %d firmware events of %s\n", log.SplitStub(), logName)
		}
		r, err := predict.Run(o)
		if err != nil {
			return 0, err
		}
		expected = r.Final
		plan = r.Measurements()
	}

	w := bufio.NewWriter(e.stdout)
	code := exitOK
	if log != nil && len(logs) > 0 {
		// A log that does not describe this TPM is bad input: refuse it
		// before printing anything that relies on it.
		if err := log.Verify(actual); err != nil {
			var re *eventlog.ReplayError
			if errors.As(err, &re) {
				return 0, argErr("--eventlog", "%s: %v: it is not this machine's log of this boot, or events are missing (the stub prints its own on the console when it cannot append them: pcrsim eventlog extract)", logName, err)
			}
			return 0, argErr("--eventlog", "%s: %v", logName, err)
		}
	}
	fmt.Fprint(w, startNote)
	if expected != nil {
		c := predict.Compare(expected, actual, required)
		if err := c.WriteTable(w); err != nil {
			return 0, err
		}
		if !c.OK() {
			code = exitMismatch
		}
	}
	if log != nil && len(logs) > 0 {
		fmt.Fprintf(w, "event log %s replays to every PCR read (%d events)\n", logName, len(log.Events))
		if plan != nil {
			diffs := predict.CompareEvents(log, plan)
			for _, d := range diffs {
				fmt.Fprintf(w, "EVENT MISMATCH %v\n", d)
			}
			if len(diffs) > 0 {
				code = exitMismatch
			} else {
				fmt.Fprintf(w, "the stub's %d events are the predicted measurements\n", len(plan))
			}
		}
	}
	if err := w.Flush(); err != nil {
		return 0, argErr("output", "%w", err)
	}
	return code, nil
}

// allPCRs are the PCRs --current reads: 4 and 5, and every PCR the event
// log has events for, so a replay can be checked against all of them.
func allPCRs(l *eventlog.Log) []int {
	seen := map[int]bool{4: true, 5: true}
	if l != nil {
		for _, e := range l.Events {
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

// jsonPlan turns the events of a pcrsim JSON prediction back into
// measurements to compare a log with: the event text is the contract's
// "vtpmboot <kind>: <source>" (measure.Plan), checked by a test against
// Plan itself. A document without events gives nil.
func jsonPlan(b []byte) []measure.Measurement {
	var doc pcrfile.JSONDoc
	if json.Unmarshal(b, &doc) != nil || len(doc.Events) == 0 {
		return nil
	}
	var out []measure.Measurement
	for _, ev := range doc.Events {
		d := pcrbank.Digests{}
		for name, h := range ev.Digests {
			a, err := pcrbank.ParseAlg(name)
			v, err2 := hex.DecodeString(h)
			if err != nil || err2 != nil || len(v) != a.Size() {
				return nil
			}
			d[a] = v
		}
		out = append(out, measure.Measurement{PCR: ev.PCR, Kind: measure.Kind(ev.Kind), Source: ev.Source, Digests: d,
			EventData: []byte(eventlog.StubEventPrefix + ev.Kind + ": " + ev.Source)})
	}
	return out
}

func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// readInput reads a small input file (or stdin for "-"), refusing anything
// larger than any readings file could be so a wrong path (a disk image, a
// device) fails fast instead of filling memory.
func readInput(arg, path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if path != "-" {
		if err := checkFile(arg, path); err != nil {
			return nil, err
		}
		fh, err := os.Open(path)
		if err != nil {
			return nil, argErr(arg, "%s: %v", path, unwrapPath(err))
		}
		defer fh.Close()
		r = fh
	}
	b, err := io.ReadAll(io.LimitReader(r, pcrfile.MaxSize+1))
	if err != nil {
		return nil, argErr(arg, "%s: %v", displayName(path), unwrapPath(err))
	}
	if len(b) > pcrfile.MaxSize {
		return nil, argErr(arg, "%s: larger than %d bytes, not a readings file", displayName(path), pcrfile.MaxSize)
	}
	return b, nil
}
