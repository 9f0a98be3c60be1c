package pcrsim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/predict/policy"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// PolicyConfig is pcrsim policy's flags. Every boot Input predicts is an
// allowed boot: the files, each of Entries (or every entry, AllEntries),
// every guest of XLConfigs, every prediction in Expected.
type PolicyConfig struct {
	Input
	AllEntries bool
	// PCRs is the PCR selection, e.g. "4,5".
	PCRs string
	// Format: text, json, tpm2-policy, tpm2-pcrs, cryptenroll, keylime or
	// pcrlock.
	Format string
	// PolicyBank is the one bank of the single-bank formats ("": sha256
	// if predicted, else the only bank); PolicyAlg the session's hash.
	PolicyBank, PolicyAlg string
	// ORMode is tree (a tree of PolicyORs beyond 8 values) or flat.
	ORMode string
	// OutputDir gets one file per allowed value (tpm2-pcrs, pcrlock).
	OutputDir string
}

// maxPredictionFile bounds --expected: a 500-guest fleet's JSON is a few
// MiB, so this leaves room while refusing a disk image given by mistake.
const maxPredictionFile = 64 << 20

// policyRun is a policy being built.
type policyRun struct {
	*PolicyConfig
	io   IO
	sel  policy.Selection
	alg  pcrbank.Alg
	opts policy.Options
	set  *policy.Set
	bank pcrbank.Alg
	w    *bufio.Writer
}

// Policy turns predictions into what sealing and attestation tools take.
func Policy(c PolicyConfig, o IO) (int, error) {
	c.manyEntries = true
	defer c.close()
	p := &policyRun{PolicyConfig: &c, io: o}
	if err := p.parse(); err != nil {
		return 0, err
	}
	preds, code, err := c.collect(o)
	if err != nil || code != ExitOK {
		return code, err
	}
	if err := p.build(preds); err != nil {
		return 0, err
	}
	p.w = bufio.NewWriter(o.Stdout)
	return ExitOK, flush(p.w, p.write())
}

// parse checks the flags that need no prediction.
func (p *policyRun) parse() error {
	var err error
	if p.sel, err = policy.ParseSelection(p.PCRs); err != nil {
		return &ArgError{Arg: "--pcrs", Err: err}
	}
	if p.alg, err = pcrbank.ParseAlg(p.PolicyAlg); err != nil {
		return &ArgError{Arg: "--policy-alg", Err: err}
	}
	p.opts = policy.Options{PolicyAlg: p.alg}
	switch p.ORMode {
	case "tree":
	case "flat":
		p.opts.Flat = true
	default:
		return argErr("--policy-or", "unknown mode %q (want tree or flat)", p.ORMode)
	}
	switch p.Format {
	case "text", "json", "tpm2-policy", "tpm2-pcrs", "cryptenroll", "keylime", "pcrlock":
	default:
		return argErr("--format", "unknown format %q (want text, json, tpm2-policy, tpm2-pcrs, cryptenroll, keylime or pcrlock)", p.Format)
	}
	return check(p.rules())
}

// build makes the set of allowed values and picks the single-bank
// formats' bank.
func (p *policyRun) build(preds []policy.Prediction) error {
	var err error
	if p.set, err = policy.NewSet(p.sel, preds); err != nil {
		var me *policy.MissingError
		if errors.As(err, &me) {
			return &ArgError{Arg: "--pcrs", Err: err}
		}
		return &ArgError{Arg: p.sourceArg(), Err: err}
	}
	if p.Format != "text" && p.Format != "json" && p.Format != "pcrlock" {
		p.bank, err = pickPolicyBank(p.PolicyBank, p.set.Banks)
	}
	return err
}

func (p *policyRun) write() error {
	switch p.Format {
	case "text", "json":
		return p.writeDoc()
	case "tpm2-policy":
		return p.writeTPM2Policy()
	case "tpm2-pcrs":
		return p.writeTPM2PCRs()
	case "cryptenroll":
		tuples, _ := p.set.Tuples(p.bank)
		for _, vs := range tuples {
			fmt.Fprintln(p.w, policy.CryptenrollArg(p.bank, p.set.Selection, vs))
		}
		return nil
	case "keylime":
		k, err := p.set.Keylime(p.bank)
		if err != nil {
			return &ArgError{Arg: "--pcrs", Err: err}
		}
		return writeJSON(p.w, k)
	}
	return p.writePcrlock()
}

func (p *policyRun) writeDoc() error {
	d, err := p.set.Build(p.opts)
	if err != nil {
		return orArg(err)
	}
	if p.Format == "json" {
		return writeJSON(p.w, d)
	}
	return d.WriteText(p.w)
}

func (p *policyRun) writeTPM2Policy() error {
	pol, err := p.set.TPM2Policy(p.bank, p.alg, !p.opts.Flat)
	if err != nil {
		return orArg(err)
	}
	p.w.Write(pol.Tree.Root())
	if len(pol.Leaves) > 1 {
		p.io.note("%d allowed values: the digest is a PolicyOR; unsealing takes PolicyPCR then the PolicyOR lists of --format json (or_levels)", len(pol.Leaves))
	}
	return nil
}

func (p *policyRun) writeTPM2PCRs() error {
	tuples, labels := p.set.Tuples(p.bank)
	selArg := policy.TPM2SelectionArg(p.bank, p.set.Selection)
	if p.OutputDir == "" {
		if len(tuples) > 1 {
			return argErr("--format", "tpm2-pcrs writes one allowed value and there are %d; use --output-dir DIR for one file each", len(tuples))
		}
		p.w.Write(policy.TPM2Values(tuples[0]))
		p.io.note("read it with tpm2_policypcr -l %s -f FILE", selArg)
		return nil
	}
	for i, vs := range tuples {
		path := filepath.Join(p.OutputDir, fmt.Sprintf("%03d.pcrvalues", i))
		if err := writeNewFile(path, policy.TPM2Values(vs)); err != nil {
			return &ArgError{Arg: "--output-dir", Err: err}
		}
		fmt.Fprintf(p.w, "%s -l %s boots %q\n", path, selArg, labels[i])
	}
	return nil
}

func (p *policyRun) writePcrlock() error {
	docs, labels, err := p.set.Pcrlock()
	if err != nil {
		return &ArgError{Arg: p.sourceArg(), Err: err}
	}
	if p.OutputDir == "" {
		if len(docs) > 1 {
			return argErr("--format", "pcrlock: %d allowed boots are %d variants; use --output-dir DIR (e.g. /var/lib/pcrlock.d/650-vtpmboot.pcrlock.d) for one file each", len(docs), len(docs))
		}
		return writeJSON(p.w, docs[0])
	}
	for i, d := range docs {
		var b bytes.Buffer
		writeJSON(&b, d)
		path := filepath.Join(p.OutputDir, fmt.Sprintf("%03d.pcrlock", i))
		if err := writeNewFile(path, b.Bytes()); err != nil {
			return &ArgError{Arg: "--output-dir", Err: err}
		}
		fmt.Fprintf(p.w, "%s boots %q\n", path, labels[i])
	}
	return nil
}

// orArg reports a PolicyOR that cannot be built under the flag that chose
// to refuse folding.
func orArg(err error) error {
	if errors.Is(err, policy.ErrTooManyBranches) {
		return &ArgError{Arg: "--policy-or", Err: err}
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
			return 0, &ArgError{Arg: "--policy-bank", Err: err}
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

func (in *Input) sourceArg() string {
	switch {
	case len(in.Expected) > 0:
		return "--expected"
	case len(in.XLConfigs) > 0:
		return "--xl-config"
	case in.fromGuest():
		return in.guestArg()
	}
	return "--kernel"
}

// collect runs or reads every allowed boot.
func (c *PolicyConfig) collect(o IO) ([]policy.Prediction, int, error) {
	switch {
	case len(c.Expected) > 0:
		return c.readPredictions()
	case len(c.XLConfigs) > 0:
		return fleetPredictions(&c.Input, o)
	}
	po, err := c.options()
	if err != nil {
		return nil, 0, err
	}
	if !c.fromGuest() {
		r, err := predict.Run(po)
		if err != nil {
			return nil, 0, err
		}
		return []policy.Prediction{policy.FromReport("kernel "+c.Kernel, r)}, ExitOK, nil
	}
	for _, n := range predict.NoteStrings(c.sel) {
		o.note("%s", n)
	}
	out, err := c.entryPredictions(po, o)
	return out, ExitOK, err
}

// selectors are the entries allowed: each --entry, every entry of the
// configuration the stub uses (--all-entries), or the default one.
func (c *PolicyConfig) selectors() []string {
	if c.AllEntries {
		var out []string
		for _, en := range c.sel.Found[0].Menu.Entries {
			out = append(out, en.MenuPath)
		}
		return out
	}
	if len(c.Entries) == 0 {
		return []string{""}
	}
	return c.Entries
}

func (c *PolicyConfig) entryPredictions(po predict.Options, o IO) ([]policy.Prediction, error) {
	var out []policy.Prediction
	for _, s := range c.selectors() {
		sel := c.guest.Choose(s)
		if sel.Err != nil {
			if c.AllEntries {
				// An entry that cannot boot is not allowed; say so
				// instead of failing the entries that can.
				o.note("entry %s not allowed: %v", s, sel.Err)
				continue
			}
			return nil, &ArgError{Arg: c.guestArg(), Err: sel.Err}
		}
		po.Inputs = c.guest.Inputs(sel.Choice)
		r, err := predict.Run(po)
		if err != nil {
			return nil, err
		}
		out = append(out, policy.FromReport(fmt.Sprintf("entry %s %q", sel.Choice.Entry.MenuPath, sel.Choice.Entry.Title), r))
	}
	if len(out) == 0 {
		return nil, &ArgError{Arg: c.guestArg(), Err: errors.New("no entry can boot")}
	}
	return out, nil
}

// readPredictions reads pcrsim JSON: one document, an --xl-config JSON
// array, or JSON lines. With --bank, each prediction is cut down to those
// banks (so a fleet predicted with more banks still yields a policy).
func (c *PolicyConfig) readPredictions() ([]policy.Prediction, int, error) {
	keep, err := c.bankList()
	if err != nil {
		return nil, 0, err
	}
	var out []policy.Prediction
	for _, path := range c.Expected {
		b, err := readInput("--expected", path, nil, maxPredictionFile, "a prediction")
		if err != nil {
			return nil, 0, err
		}
		docs, err := decodeDocs(b)
		if err != nil {
			return nil, 0, argErr("--expected", "%s: %v", path, err)
		}
		if len(docs) == 0 {
			return nil, 0, argErr("--expected", "%s: no prediction in it", path)
		}
		for i, d := range docs {
			p, err := fileDocPrediction(path, i, d, keep)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, p)
		}
	}
	return out, ExitOK, nil
}

// decodeDocs reads one JSON document, a JSON array of them, or JSON lines.
func decodeDocs(b []byte) ([]predict.GuestDoc, error) {
	var docs []predict.GuestDoc
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		err := json.Unmarshal(t, &docs)
		return docs, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var d predict.GuestDoc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return docs, err
		}
		docs = append(docs, d)
	}
}

// fileDocPrediction is document i of the --expected file path.
func fileDocPrediction(path string, i int, d predict.GuestDoc, keep []pcrbank.Alg) (policy.Prediction, error) {
	label := fmt.Sprintf("%s #%d", path, i)
	if d.Guest != "" {
		label = path + ": " + guestLabel(d)
	} else if d.Entry != nil {
		label = fmt.Sprintf("%s: entry %s %q", path, d.Entry.MenuPath, d.Entry.Title)
	}
	if d.Error != "" {
		return policy.Prediction{}, argErr("--expected", "%s: was not predicted: %s", label, d.Error)
	}
	p, err := policy.FromJSON(label, d.JSONDoc)
	if err != nil {
		return p, argErr("--expected", "%s: %v", label, err)
	}
	if keep != nil {
		if p, err = keepBanks(p, keep); err != nil {
			return p, argErr("--bank", "%s: %v", label, err)
		}
	}
	return p, nil
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
