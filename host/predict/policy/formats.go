package policy

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// TPM2Values is the PCR values file of tpm2-tools for one bank: the raw
// digests of the selected PCRs concatenated in ascending PCR order, no
// header. It is what `tpm2_pcrread -o FILE bank:sel` writes in its default
// "values" format (lib/pcr.c pcr_fwrite_values) and what `tpm2_policypcr
// -l bank:sel -f FILE` and `tpm2_createpolicy --policy-pcr -l bank:sel -f
// FILE` read (lib/tpm2_policy.c: the file size must be exactly the digest
// size times the number of selected PCRs).
func TPM2Values(values [][]byte) []byte {
	var b []byte
	for _, v := range values {
		b = append(b, v...)
	}
	return b
}

// TPM2SelectionArg is the tpm2-tools -l argument matching TPM2Values and
// PolicyPCR ("sha256:4,5").
func TPM2SelectionArg(bank pcrbank.Alg, sel Selection) string {
	return bank.String() + ":" + sel.String()
}

// CryptenrollArg is systemd-cryptenroll's --tpm2-pcrs= with values:
// "--tpm2-pcrs=4:sha256=<hex>+5:sha256=<hex>". The syntax is systemd's
// tpm2_pcr_values_from_string (src/shared/tpm2-util.c, systemd 255 and
// later): entries joined by '+', each INDEX:HASH=HEX, lower-case hex as
// tpm2_pcr_value_to_string writes it, sorted by index and unique within
// the one bank (tpm2_pcr_values_valid). systemd 252 (Debian 12) accepts
// only indices here and rejects this form ("Failed to parse PCR number").
func CryptenrollArg(bank pcrbank.Alg, sel Selection, values [][]byte) string {
	parts := make([]string, len(sel))
	for i, p := range sel {
		parts[i] = fmt.Sprintf("%d:%s=%x", p, bank, values[i])
	}
	return "--tpm2-pcrs=" + strings.Join(parts, "+")
}

// Keylime's reserved PCRs (keylime/config.py): its tpm_policy parser
// (keylime/tpm/tpm_util.py readPolicy) refuses them in a tpm_policy.
const (
	keylimeIMAPCR  = 10
	keylimeDataPCR = 16
)

// Keylime is Keylime's tpm_policy for one bank: each selected PCR (a
// decimal string key) maps to the sorted list of its allowed lower-case
// hex values, without 0x, as Keylime compares them with the quote's
// bytes.hex(). No "mask" key: readPolicy computes it and refuses any key
// that is not a PCR number. Keylime checks each PCR on its own, so with
// several allowed boots it also accepts a mix (PCR 4 of one boot with PCR
// 5 of another); the TPM 2.0 PolicyOR does not.
func (s *Set) Keylime(bank pcrbank.Alg) (map[string][]string, error) {
	if !s.HasBank(bank) {
		return nil, fmt.Errorf("bank %v is not predicted (banks %v)", bank, s.Banks)
	}
	for _, pcr := range s.Selection {
		switch pcr {
		case keylimeIMAPCR:
			return nil, fmt.Errorf("PCR %d: Keylime refuses it in tpm_policy (it holds IMA's measurements)", pcr)
		case keylimeDataPCR:
			return nil, fmt.Errorf("PCR %d: Keylime refuses it in tpm_policy (it binds the agent's data)", pcr)
		}
	}
	out := map[string][]string{}
	for i, pcr := range s.Selection {
		var vals []string
		for j := range s.Predictions {
			vs, err := s.Predictions[j].Values(bank, s.Selection)
			if err != nil {
				return nil, err
			}
			h := hex.EncodeToString(vs[i])
			if !slices.Contains(vals, h) {
				vals = append(vals, h)
			}
		}
		slices.Sort(vals)
		out[strconv.Itoa(pcr)] = vals
	}
	return out, nil
}

// PcrlockDoc is a systemd-pcrlock component file (.pcrlock): the records
// systemd-pcrlock replays, each a PCR and the digest extended into it per
// bank, as its event_log_record_parse_json reads them ("pcr" an unsigned
// integer below 24; "digests" an array of {"hashAlg": name, "digest":
// hex}).
type PcrlockDoc struct {
	Records []PcrlockRecord `json:"records"`
}

// PcrlockRecord is one measurement.
type PcrlockRecord struct {
	PCR     int             `json:"pcr"`
	Digests []PcrlockDigest `json:"digests"`
}

// PcrlockDigest is one bank's digest of a measurement.
type PcrlockDigest struct {
	HashAlg string `json:"hashAlg"`
	Digest  string `json:"digest"`
}

// Pcrlock returns one .pcrlock document per distinct allowed boot (the
// variants of one component: files in a NAME.pcrlock.d/ directory), with
// the labels of the boots each stands for. Records are the measurements
// (not PCR values) into the selected PCRs, in order, every bank: pcrlock
// replays them on top of whatever its other components (the firmware's,
// from the event log) put there, so --pcr-init does not enter them.
func (s *Set) Pcrlock() ([]PcrlockDoc, [][]string, error) {
	var docs []PcrlockDoc
	var labels [][]string
	seen := map[string]int{}
	for i := range s.Predictions {
		p := &s.Predictions[i]
		if len(p.Events) == 0 {
			return nil, nil, fmt.Errorf("%s: the prediction lists no measurements (pcrlock needs its events)", labelOr(p.Label, "prediction"))
		}
		d := PcrlockDoc{Records: []PcrlockRecord{}}
		for _, e := range p.Events {
			if !slices.Contains(s.Selection, e.PCR) {
				continue
			}
			r := PcrlockRecord{PCR: e.PCR}
			for _, a := range s.Banks {
				v, ok := e.Digests[a]
				if !ok {
					return nil, nil, fmt.Errorf("%s: PCR %d measurement has no %v digest", labelOr(p.Label, "prediction"), e.PCR, a)
				}
				r.Digests = append(r.Digests, PcrlockDigest{HashAlg: a.String(), Digest: hex.EncodeToString(v)})
			}
			d.Records = append(d.Records, r)
		}
		k, _ := json.Marshal(d)
		j, ok := seen[string(k)]
		if !ok {
			j = len(docs)
			seen[string(k)] = j
			docs = append(docs, d)
			labels = append(labels, nil)
		}
		labels[j] = append(labels[j], p.Label)
	}
	return docs, labels, nil
}
