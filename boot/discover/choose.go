package discover

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/disks"
)

// Selection is the outcome of the search over a guest's volumes.
type Selection struct {
	// Found lists every configuration found, the one that boots first.
	Found  []Found
	Choice *Choice
	// Err is why nothing boots; Choice is nil then.
	Err error
	// Skipped are the volumes that were not searched, in order.
	Skipped []disks.Volume
}

// Choose is the one selector: it searches the volumes in order for boot
// configurations (search), applies the rule for volumes it cannot read
// (disks.Volume.Skippable), then selects an entry of the configuration
// with the highest priority: the boot loader's default when selector is
// empty, otherwise the entry that selector names (SelectEntry). If that
// configuration is broken, Choose fails rather than quietly booting from a
// lower-priority leftover file. The stub and pcrsim both call it, so they
// pass over, and refuse, the same volumes and boot the same entry.
func Choose(vols []disks.Volume, entrySelector string) *Selection {
	s := &Selection{}
	var parts []disks.Volume
	pos := map[string]int{}
	for i, v := range vols {
		pos[v.Name] = i
		if v.FS == nil {
			s.Skipped = append(s.Skipped, v)
			continue
		}
		parts = append(parts, v)
	}
	s.Found = search(parts)
	// The rule for unreadable volumes comes first: whatever the first
	// configuration found says (even a broken entry), a volume before it
	// that a boot loader could read would have been searched first.
	if len(s.Found) > 0 {
		first := s.Found[0]
		at := pos[first.Volume.Name]
		for _, v := range vols[:at] {
			if v.FS == nil && !v.Skippable() {
				hint := "vtpmboot.disk="
				if d := vols[at].Device; d != "" {
					hint += d
				}
				s.Err = &ShadowedError{Volume: v.Name, Err: v.Err, Config: "/" + first.Path, On: first.Volume.Name, Hint: hint}
				return s
			}
		}
	}
	c, err := chooseFrom(s.Found, entrySelector)
	if err != nil {
		if errors.Is(err, ErrNoConfig) && len(s.Skipped) > 0 {
			var ns []string
			for _, v := range s.Skipped {
				ns = append(ns, v.Unreadable())
			}
			err = fmt.Errorf("%w; %s", err, strings.Join(ns, "; "))
		}
		s.Err = err
		return s
	}
	s.Choice = c
	return s
}

// ShadowedError is Choose's refusal to pass over a volume it cannot read
// that is searched before the configuration it found.
type ShadowedError struct {
	Volume string // the unreadable volume
	Err    error  // why it cannot be read
	Config string // the configuration found after it
	On     string // the volume holding Config
	Hint   string // the vtpmboot.disk= setting that leaves Volume out
}

func (e *ShadowedError) Error() string {
	return fmt.Sprintf("%s cannot be read (%v) and is searched before %s, which holds %s: a boot loader that reads %s could boot something else; repair it, or leave it out with %s",
		e.Volume, e.Err, e.On, e.Config, e.Volume, e.Hint)
}

func (e *ShadowedError) Unwrap() error { return e.Err }
