// Package grubenv reads GRUB's environment block (grubenv), the file
// grub-editenv and save_env write and load_env reads: saved_entry,
// next_entry and Fedora's kernelopts live there.
package grubenv

import (
	"fmt"
	"strings"
)

// Header is the first line GRUB requires; load_env rejects a block
// without it ("invalid environment block").
const Header = "# GRUB Environment Block\n"

// Var is one name=value pair in file order.
type Var struct {
	Name, Value string
}

// Parse decodes a block. GRUB escapes '\' and newline in values with a
// backslash; lines starting with '#' (the header and the '#' padding that
// keeps the file at 1024 bytes) are skipped.
func Parse(data []byte) ([]Var, error) {
	s := string(data)
	if !strings.HasPrefix(s, Header) {
		return nil, fmt.Errorf("invalid environment block: missing %q header", strings.TrimSpace(Header))
	}
	s = s[len(Header):]
	var vars []Var
	for len(s) > 0 {
		// Find the end of the line, honouring backslash escapes.
		var line strings.Builder
		i := 0
		for ; i < len(s) && s[i] != '\n'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			line.WriteByte(s[i])
		}
		raw := s[:i]
		if i < len(s) {
			i++
		}
		s = s[i:]
		if strings.HasPrefix(raw, "#") || raw == "" {
			continue
		}
		l := line.String()
		eq := strings.IndexByte(l, '=')
		if eq <= 0 {
			// GRUB's envblk iterator skips lines without '='.
			continue
		}
		vars = append(vars, Var{Name: l[:eq], Value: l[eq+1:]})
	}
	return vars, nil
}

// Map returns the variables as a map; a later duplicate wins, as
// load_env applies them in order.
func Map(vars []Var) map[string]string {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}
