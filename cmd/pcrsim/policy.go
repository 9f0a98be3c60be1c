package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/predict/fleet"
	"github.com/vtpmboot/vtpmboot/host/predict/policy"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

const policyHelp = `usage: pcrsim policy (--kernel FILE [--initrd FILE]... --cmdline STRING
                    | --root DIR | --disk IMAGE... [--entry SEL]... [--all-entries]
                    | --xl-config FILE|DIR... | --expected FILE...)
                    [--pcrs 4,5] [--pcr-init PCR:BANK=HEX]... [--bank BANKS]
                    [--format text|json|tpm2-policy|tpm2-pcrs|cryptenroll|keylime|pcrlock]
                    [--policy-bank BANK] [--policy-alg sha256] [--policy-or tree|flat]
                    [--output-dir DIR]

Turns predictions into what sealing and attestation tools take. Every boot
predicted is an allowed boot: one from --kernel/--root/--disk, each --entry
(or every entry with --all-entries), every guest of --xl-config, every
prediction in --expected files (pcrsim predict --format json output).

--pcrs selects the PCRs (default 4,5). A selected PCR the stub does not
extend must be given a value with --pcr-init, in every bank: a policy is
never computed over a value that was not predicted.

Output formats:
  text         allowed boots, policy digests, TPM 1.2 composites (default)
  json         the same as one JSON document, with the starting values
               and the measurement contract version
  tpm2-policy  the binary policy digest of --policy-bank, for
               'tpm2_create -L FILE' (PolicyPCR, or the root PolicyOR)
  tpm2-pcrs    the binary PCR values file tpm2_pcrread -o writes and
               'tpm2_policypcr -l BANK:PCRS -f FILE' reads; one allowed
               value, or one file each in --output-dir
  cryptenroll  --tpm2-pcrs=4:sha256=...+5:sha256=... for systemd-cryptenroll
               (systemd 255+), one line per allowed value
  keylime      Keylime's tpm_policy JSON for --policy-bank: PCR -> list of
               allowed values
  pcrlock      systemd-pcrlock .pcrlock records (the measurements, every
               bank); several allowed boots are variants: one file each in
               --output-dir (name it NNN-vtpmboot.pcrlock.d)

Several allowed values: TPM 2.0 gets a PolicyOR over the PolicyPCR
branches; beyond 8 (one PolicyOR's limit) a tree of PolicyORs, unless
--policy-or flat, which refuses. TPM 1.2 has no OR: one composite (one
sealed blob) per allowed value. See docs/sealing.md.

Exit status: 0 success, 1 a guest of --xl-config could not be predicted
(no policy is written), 2 usage or input error.

Examples:
  pcrsim policy --disk guest.img
  pcrsim policy --disk guest.img --format tpm2-policy --policy-bank sha256 > policy.digest
  tpm2_create -C 0x81000001 -L policy.digest -i secret.bin -u seal.pub -r seal.priv
  systemd-cryptenroll --tpm2-device=auto $(pcrsim policy --root /mnt/guest --format cryptenroll) /dev/xvda2
  pcrsim policy --disk guest.img --all-entries --format keylime
  pcrsim predict --xl-config /etc/xen/auto > fleet.json; pcrsim policy --expected fleet.json --format json

Flags:
`

// maxPredictionFile bounds --expected: a 500-guest fleet's JSON is a few
// MiB, so this leaves room while refusing a disk image given by mistake.
const maxPredictionFile = 64 << 20

func cmdPolicy(name string, args []string, e env) (int, error) {
	in := inputFlags{manyEntries: true}
	fs := newFlagSet(name, policyHelp, e)
	in.register(fs)
	allEntries := fs.Bool("all-entries", false, "with --root/--disk: allow every entry of the configuration the stub uses")
	var xlConfigs, expected listFlag
	fs.Var(&xlConfigs, "xl-config", "allow every guest of xl domU config `FILE` or DIR; repeatable")
	fs.Var(&expected, "expected", "allow every prediction in `FILE` (pcrsim predict --format json, --xl-config json or jsonl); repeatable")
	pcrs := fs.String("pcrs", "4,5", "the PCR `SELECTION`, e.g. 4,5 or 0,4,5,7")
	format := fs.String("format", "text", "output `FORMAT`: text, json, tpm2-policy, tpm2-pcrs, cryptenroll, keylime or pcrlock")
	policyBank := fs.String("policy-bank", "", "the `BANK` of tpm2-policy, tpm2-pcrs, cryptenroll and keylime (default sha256 if predicted, else the only bank)")
	policyAlg := fs.String("policy-alg", "sha256", "the policy session's hash `ALG` (the sealed object's nameAlg)")
	orMode := fs.String("policy-or", "tree", "more than 8 allowed values: `MODE` tree (a tree of PolicyORs) or flat (refuse)")
	outDir := fs.String("output-dir", "", "with tpm2-pcrs or pcrlock: write one file per allowed value into `DIR`")
	if err := parseFlags(fs, args); err != nil {
		return 0, err
	}
	defer in.close()
	sel, err := policy.ParseSelection(*pcrs)
	if err != nil {
		return 0, &argError{arg: "--pcrs", err: err}
	}
	alg, err := pcrbank.ParseAlg(*policyAlg)
	if err != nil {
		return 0, &argError{arg: "--policy-alg", err: err}
	}
	opts := policy.Options{PolicyAlg: alg}
	switch *orMode {
	case "tree":
	case "flat":
		opts.Flat = true
	default:
		return 0, argErr("--policy-or", "unknown mode %q (want tree or flat)", *orMode)
	}
	switch *format {
	case "text", "json", "tpm2-policy", "tpm2-pcrs", "cryptenroll", "keylime", "pcrlock":
	default:
		return 0, argErr("--format", "unknown format %q (want text, json, tpm2-policy, tpm2-pcrs, cryptenroll, keylime or pcrlock)", *format)
	}
	if *outDir != "" && *format != "tpm2-pcrs" && *format != "pcrlock" {
		return 0, argErr("--output-dir", "only applies to --format tpm2-pcrs or pcrlock")
	}
	if *policyBank != "" && (*format == "text" || *format == "json" || *format == "pcrlock") {
		return 0, argErr("--policy-bank", "does not apply to --format %s (it covers every bank)", *format)
	}

	preds, code, err := collectPredictions(&in, *allEntries, xlConfigs, expected, e)
	if err != nil || code != exitOK {
		return code, err
	}
	set, err := policy.NewSet(sel, preds)
	if err != nil {
		var me *policy.MissingError
		if errors.As(err, &me) {
			return 0, &argError{arg: "--pcrs", err: err}
		}
		return 0, &argError{arg: sourceArg(&in, expected), err: err}
	}
	bank := pcrbank.Alg(0)
	if *format != "text" && *format != "json" && *format != "pcrlock" {
		if bank, err = pickPolicyBank(*policyBank, set.Banks); err != nil {
			return 0, err
		}
	}

	w := bufio.NewWriter(e.stdout)
	switch *format {
	case "text", "json":
		d, err := set.Build(opts)
		if err != nil {
			return 0, orArg(err)
		}
		if *format == "json" {
			err = writeJSON(w, d)
		} else {
			err = d.WriteText(w)
		}
		if err != nil {
			return 0, argErr("output", "%w", err)
		}
	case "tpm2-policy":
		p, err := set.TPM2Policy(bank, alg, !opts.Flat)
		if err != nil {
			return 0, orArg(err)
		}
		w.Write(p.Tree.Root())
		if len(p.Leaves) > 1 {
			fmt.Fprintf(e.stderr, "%s: note: %d allowed values: the digest is a PolicyOR; unsealing takes PolicyPCR then the PolicyOR lists of --format json (or_levels)\n", name, len(p.Leaves))
		}
	case "tpm2-pcrs":
		tuples, labels := set.Tuples(bank)
		selArg := policy.TPM2SelectionArg(bank, set.Selection)
		if *outDir == "" {
			if len(tuples) > 1 {
				return 0, argErr("--format", "tpm2-pcrs writes one allowed value and there are %d; use --output-dir DIR for one file each", len(tuples))
			}
			w.Write(policy.TPM2Values(tuples[0]))
			fmt.Fprintf(e.stderr, "%s: note: read it with tpm2_policypcr -l %s -f FILE\n", name, selArg)
			break
		}
		for i, vs := range tuples {
			p := filepath.Join(*outDir, fmt.Sprintf("%03d.pcrvalues", i))
			if err := writeNewFile(p, policy.TPM2Values(vs)); err != nil {
				return 0, &argError{arg: "--output-dir", err: err}
			}
			fmt.Fprintf(e.stdout, "%s -l %s boots %q\n", p, selArg, labels[i])
		}
	case "cryptenroll":
		tuples, _ := set.Tuples(bank)
		for _, vs := range tuples {
			fmt.Fprintln(w, policy.CryptenrollArg(bank, set.Selection, vs))
		}
	case "keylime":
		k, err := set.Keylime(bank)
		if err != nil {
			return 0, &argError{arg: "--pcrs", err: err}
		}
		if err := writeJSON(w, k); err != nil {
			return 0, argErr("output", "%w", err)
		}
	case "pcrlock":
		docs, labels, err := set.Pcrlock()
		if err != nil {
			return 0, &argError{arg: sourceArg(&in, expected), err: err}
		}
		if *outDir == "" {
			if len(docs) > 1 {
				return 0, argErr("--format", "pcrlock: %d allowed boots are %d variants; use --output-dir DIR (e.g. /var/lib/pcrlock.d/650-vtpmboot.pcrlock.d) for one file each", len(docs), len(docs))
			}
			if err := writeJSON(w, docs[0]); err != nil {
				return 0, argErr("output", "%w", err)
			}
			break
		}
		for i, d := range docs {
			var b bytes.Buffer
			writeJSON(&b, d)
			p := filepath.Join(*outDir, fmt.Sprintf("%03d.pcrlock", i))
			if err := writeNewFile(p, b.Bytes()); err != nil {
				return 0, &argError{arg: "--output-dir", err: err}
			}
			fmt.Fprintf(e.stdout, "%s boots %q\n", p, labels[i])
		}
	}
	if err := w.Flush(); err != nil {
		return 0, argErr("output", "%w", err)
	}
	return exitOK, nil
}

// orArg reports a PolicyOR that cannot be built under the flag that chose
// to refuse folding.
func orArg(err error) error {
	if errors.Is(err, policy.ErrTooManyBranches) {
		return &argError{arg: "--policy-or", err: err}
	}
	return err
}

// pickPolicyBank is the one bank of the single-bank formats: the named
// one, else sha256 (what systemd and Keylime default to), else the only
// bank predicted.
func pickPolicyBank(name string, banks []pcrbank.Alg) (pcrbank.Alg, error) {
	if name != "" {
		a, err := pcrbank.ParseAlg(name)
		if err != nil {
			return 0, &argError{arg: "--policy-bank", err: err}
		}
		for _, b := range banks {
			if b == a {
				return a, nil
			}
		}
		return 0, argErr("--policy-bank", "bank %v is not predicted (banks %v)", a, banks)
	}
	for _, b := range banks {
		if b == pcrbank.SHA256 {
			return b, nil
		}
	}
	if len(banks) == 1 {
		return banks[0], nil
	}
	return 0, argErr("--policy-bank", "required: this format covers one bank and %v are predicted", banks)
}

// writeNewFile refuses to overwrite: a stale policy file left next to new
// ones would quietly allow a boot nobody asked for.
func writeNewFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func sourceArg(in *inputFlags, expected []string) string {
	switch {
	case len(expected) > 0:
		return "--expected"
	case in.set("xl-config"):
		return "--xl-config"
	case in.fromGuest():
		return in.guestArg()
	}
	return "--kernel"
}

// collectPredictions runs or reads every allowed boot.
func collectPredictions(in *inputFlags, allEntries bool, xlConfigs, expected []string, e env) ([]policy.Prediction, int, error) {
	kinds := 0
	for _, b := range []bool{len(expected) > 0, len(xlConfigs) > 0, in.fromGuest(), in.set("kernel") || in.set("initrd") || in.set("cmdline")} {
		if b {
			kinds++
		}
	}
	if kinds > 1 {
		return nil, 0, argErr("--expected", "give one source of predictions: --kernel..., --root, --disk, --xl-config or --expected")
	}
	if allEntries && !in.fromGuest() {
		return nil, 0, argErr("--all-entries", "only applies to --root or --disk")
	}
	if allEntries && len(in.entries) > 0 {
		return nil, 0, argErr("--all-entries", "cannot be combined with --entry")
	}
	switch {
	case len(expected) > 0:
		if in.set("pcr-init") {
			return nil, 0, argErr("--pcr-init", "does not apply to --expected (each prediction records its own starting values)")
		}
		return readPredictions(expected, in)
	case len(xlConfigs) > 0:
		return fleetPredictions(xlConfigs, in, e)
	}
	o, err := in.options()
	if err != nil {
		return nil, 0, err
	}
	if !in.fromGuest() {
		r, err := predict.Run(o)
		if err != nil {
			return nil, 0, err
		}
		return []policy.Prediction{policy.FromReport("kernel "+in.kernel, r)}, exitOK, nil
	}
	for _, n := range predict.NoteStrings(in.sel) {
		fmt.Fprintf(e.stderr, "pcrsim policy: note: %s\n", n)
	}
	selectors := []string(in.entries)
	if len(selectors) == 0 {
		selectors = []string{""}
	}
	if allEntries {
		selectors = nil
		for _, en := range in.sel.Found[0].Menu.Entries {
			selectors = append(selectors, en.MenuPath)
		}
	}
	var out []policy.Prediction
	for _, s := range selectors {
		sel := in.guest.Choose(s)
		if sel.Err != nil {
			if allEntries {
				// An entry that cannot boot is not allowed; say so
				// instead of failing the entries that can.
				fmt.Fprintf(e.stderr, "pcrsim policy: note: entry %s not allowed: %v\n", s, sel.Err)
				continue
			}
			return nil, 0, &argError{arg: in.guestArg(), err: sel.Err}
		}
		o.Inputs = in.guest.Inputs(sel.Choice)
		r, err := predict.Run(o)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, policy.FromReport(fmt.Sprintf("entry %s %q", sel.Choice.Entry.MenuPath, sel.Choice.Entry.Title), r))
	}
	if len(out) == 0 {
		return nil, 0, &argError{arg: in.guestArg(), err: errors.New("no entry can boot")}
	}
	return out, exitOK, nil
}

// fleetPredictions predicts every guest; one that fails means the policy
// would not cover the fleet, so nothing is written (exit 1).
func fleetPredictions(args []string, in *inputFlags, e env) ([]policy.Prediction, int, error) {
	for _, fl := range []string{"kernel", "initrd", "cmdline", "root", "disk", "entry"} {
		if in.set(fl) {
			return nil, 0, argErr("--"+fl, "cannot be combined with --xl-config (each guest's config says what to boot)")
		}
	}
	banks, err := in.bankList()
	if err != nil {
		return nil, 0, err
	}
	banks = predict.Banks(banks)
	o := fleet.Options{Banks: banks}
	if o.Init, err = predict.ParsePCRInits(in.pcrInits, banks); err != nil {
		return nil, 0, &argError{arg: "--pcr-init", err: err}
	}
	jobs, skipped, err := fleet.Expand(args)
	if err != nil {
		return nil, 0, &argError{arg: "--xl-config", err: err}
	}
	for _, s := range skipped {
		fmt.Fprintf(e.stderr, "pcrsim policy: note: %s\n", s)
	}
	if len(jobs) == 0 {
		return nil, 0, argErr("--xl-config", "no xl domU config found in %v", args)
	}
	var out []policy.Prediction
	failed := 0
	_, err = fleet.Run(jobs, o, func(r fleet.Result) error {
		if r.Err != nil {
			failed++
			fmt.Fprintf(e.stderr, "pcrsim policy: guest %s: %s\n", r.Doc.Guest, strings.ReplaceAll(r.Err.Error(), "\n", " "))
			return nil
		}
		out = append(out, policy.FromReport(guestLabel(r.Doc), r.Report))
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if failed > 0 {
		fmt.Fprintf(e.stderr, "pcrsim policy: %d of %d guests failed; no policy written\n", failed, len(jobs))
		return nil, exitGuestFailed, nil
	}
	return out, exitOK, nil
}

func guestLabel(d predict.GuestDoc) string {
	l := "guest " + d.Guest
	if d.Entry != nil {
		l += fmt.Sprintf(" entry %s %q", d.Entry.MenuPath, d.Entry.Title)
	}
	return l
}

// predictionFileDoc is one document of an --expected file: a plain
// prediction or one guest of --xl-config.
type predictionFileDoc struct {
	predict.GuestDoc
}

// readPredictions reads pcrsim JSON: one document, an --xl-config JSON
// array, or JSON lines. With --bank, each prediction is cut down to those
// banks (so a fleet predicted with more banks still yields a policy).
func readPredictions(paths []string, in *inputFlags) ([]policy.Prediction, int, error) {
	keep, err := in.bankList()
	if err != nil {
		return nil, 0, err
	}
	var out []policy.Prediction
	for _, path := range paths {
		b, err := readPredictionFile(path)
		if err != nil {
			return nil, 0, err
		}
		var docs []predictionFileDoc
		if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
			err = json.Unmarshal(t, &docs)
		} else {
			dec := json.NewDecoder(bytes.NewReader(b))
			for {
				var d predictionFileDoc
				if err = dec.Decode(&d); err != nil {
					break
				}
				docs = append(docs, d)
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		if err != nil {
			return nil, 0, argErr("--expected", "%s: %v", path, err)
		}
		if len(docs) == 0 {
			return nil, 0, argErr("--expected", "%s: no prediction in it", path)
		}
		for i, d := range docs {
			label := fmt.Sprintf("%s #%d", path, i)
			if d.Guest != "" {
				label = path + ": " + guestLabel(d.GuestDoc)
			} else if d.Entry != nil {
				label = fmt.Sprintf("%s: entry %s %q", path, d.Entry.MenuPath, d.Entry.Title)
			}
			if d.Error != "" {
				return nil, 0, argErr("--expected", "%s: was not predicted: %s", label, d.Error)
			}
			p, err := policy.FromJSON(label, d.JSONDoc)
			if err != nil {
				return nil, 0, argErr("--expected", "%s: %v", label, err)
			}
			if keep != nil {
				if p, err = keepBanks(p, keep); err != nil {
					return nil, 0, argErr("--bank", "%s: %v", label, err)
				}
			}
			out = append(out, p)
		}
	}
	return out, exitOK, nil
}

func keepBanks(p policy.Prediction, keep []pcrbank.Alg) (policy.Prediction, error) {
	final, init := pcrfile.Readings{}, pcrfile.Readings{}
	for _, a := range keep {
		if p.Final[a] == nil {
			return p, fmt.Errorf("bank %v is not in the prediction (it has %v)", a, p.Banks)
		}
		final[a] = p.Final[a]
		if p.Init[a] != nil {
			init[a] = p.Init[a]
		}
	}
	p.Final, p.Init, p.Banks = final, init, append([]pcrbank.Alg(nil), keep...)
	return p, nil
}

func readPredictionFile(path string) ([]byte, error) {
	if err := checkFile("--expected", path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, argErr("--expected", "%s: %v", path, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPredictionFile+1))
	if err != nil {
		return nil, argErr("--expected", "%s: %v", path, unwrapPath(err))
	}
	if len(b) > maxPredictionFile {
		return nil, argErr("--expected", "%s: larger than %d bytes, not a prediction", path, maxPredictionFile)
	}
	return b, nil
}
