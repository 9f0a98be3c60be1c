package predict

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
)

// EntryDoc is the chosen entry in JSON: the entry as its parser returned
// it, plus the partition it is on.
type EntryDoc struct {
	Partition string `json:"partition"`
	entry.Entry
}

// GuestDoc is one guest's prediction in JSON: what boots and why, then the
// same "banks"/"events" as a plain prediction (so `pcrsim verify
// --expected` reads it), or the error that prevents a prediction.
type GuestDoc struct {
	Guest  string    `json:"guest,omitempty"`
	Config string    `json:"config,omitempty"`
	Entry  *EntryDoc `json:"entry,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Notes  []string  `json:"notes,omitempty"`
	Error  string    `json:"error,omitempty"`
	*pcrfile.JSONDoc
}

// Doc builds the JSON document of a successful selection and prediction.
func Doc(s *Selection, r *Report, notes []string) GuestDoc {
	d := GuestDoc{Notes: notes}
	if s.Choice != nil {
		d.Entry = &EntryDoc{Partition: s.Choice.Volume.Name, Entry: s.Choice.Entry}
		if d.Entry.Initrds == nil {
			d.Entry.Initrds = []string{}
		}
		d.Reason = s.Choice.Reason
	}
	if r != nil {
		j := r.JSON()
		d.JSONDoc = &j
	}
	return d
}

// NoteStrings are the notes a user should see about a selection: every
// volume that was not searched, in the words the stub prints.
func NoteStrings(s *Selection) []string {
	var out []string
	for _, v := range s.Skipped {
		out = append(out, v.Unreadable())
	}
	return out
}

// ConfigDoc is one configuration found, for --list.
type ConfigDoc struct {
	Partition string `json:"partition"`
	Format    string `json:"format"`
	File      string `json:"file"`
	// Status is "boots", "passed over" or "broken"; Why says why.
	Status        string        `json:"status"`
	Why           string        `json:"why,omitempty"`
	Error         string        `json:"error,omitempty"`
	Default       int           `json:"default"`
	DefaultReason string        `json:"default_reason,omitempty"`
	Warnings      []string      `json:"warnings,omitempty"`
	Entries       []entry.Entry `json:"entries"`
}

// ListDoc is everything discovery found on a guest, for --list.
type ListDoc struct {
	Configs []ConfigDoc `json:"configs"`
	Boots   *EntryDoc   `json:"boots,omitempty"`
	Reason  string      `json:"reason,omitempty"`
	// Error is why nothing boots.
	Error string   `json:"error,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// List describes every configuration and entry found, which one boots and
// why, and which were passed over.
func List(s *Selection) ListDoc {
	d := ListDoc{Configs: []ConfigDoc{}, Notes: NoteStrings(s)}
	for i, f := range s.Found {
		c := ConfigDoc{Partition: f.Volume.Name, Format: string(f.Format), File: "/" + f.Path, Entries: []entry.Entry{}}
		if f.Menu != nil {
			c.Default, c.DefaultReason, c.Warnings = f.Menu.Default, f.Menu.DefaultReason, f.Menu.Warnings
			c.Entries = f.Menu.Entries
		}
		switch {
		case i == 0 && s.Choice != nil:
			c.Status, c.Why = "boots", s.Choice.Reason
		case i == 0:
			c.Status = "broken"
			if s.Err != nil {
				c.Why = s.Err.Error()
			}
		default:
			top := s.Found[0]
			c.Status = "passed over"
			c.Why = fmt.Sprintf("lower priority than %s /%s on %s", top.Format, top.Path, top.Volume.Name)
		}
		if f.Err != nil {
			c.Error = f.Err.Error()
		}
		d.Configs = append(d.Configs, c)
	}
	if s.Choice != nil {
		d.Boots = &EntryDoc{Partition: s.Choice.Volume.Name, Entry: s.Choice.Entry}
		d.Reason = s.Choice.Reason
	} else if s.Err != nil {
		d.Error = s.Err.Error()
	}
	return d
}

// WriteJSON writes the list as one JSON line.
func (d ListDoc) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

// WriteText prints the list for a person. Everything that came from the
// guest's disk is printed quoted (%q), as in the trace: a title or command
// line must not be able to inject terminal escapes or fake lines.
func (d ListDoc) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, n := range d.Notes {
		fmt.Fprintf(bw, "note: %q\n", n)
	}
	if len(d.Configs) == 0 {
		fmt.Fprintln(bw, "no boot configuration found")
	}
	for _, c := range d.Configs {
		fmt.Fprintf(bw, "%s %q on %q: %s", c.Format, c.File, c.Partition, c.Status)
		if c.Why != "" {
			fmt.Fprintf(bw, " (%q)", c.Why)
		}
		fmt.Fprintln(bw)
		if c.Error != "" {
			fmt.Fprintf(bw, "  error: %q\n", c.Error)
			continue
		}
		if c.DefaultReason != "" {
			fmt.Fprintf(bw, "  default: %d (%q)\n", c.Default, c.DefaultReason)
		}
		for _, wn := range c.Warnings {
			fmt.Fprintf(bw, "  warning: %q\n", wn)
		}
		for _, e := range c.Entries {
			mark := " "
			if c.Status == "boots" && d.Boots != nil && e.Index == d.Boots.Index {
				mark = "*"
			}
			fmt.Fprintf(bw, "%s %s %q", mark, e.MenuPath, e.Title)
			if e.ID != "" {
				fmt.Fprintf(bw, " id=%q", e.ID)
			}
			fmt.Fprintf(bw, " (%s:%d)\n", e.Config, e.Line)
			fmt.Fprintf(bw, "    kernel  %q\n", discover.SourceName(e.Kernel))
			for _, i := range e.Initrds {
				fmt.Fprintf(bw, "    initrd  %q\n", discover.SourceName(i))
			}
			fmt.Fprintf(bw, "    cmdline %q\n", e.Cmdline)
		}
	}
	if d.Boots != nil {
		fmt.Fprintf(bw, "boots: %q\n", d.Reason)
	} else if d.Error != "" {
		fmt.Fprintf(bw, "nothing boots: %q\n", d.Error)
	}
	return bw.Flush()
}
