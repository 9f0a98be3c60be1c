// Package grublegacy parses GRUB legacy (0.9x) menu.lst / grub.conf files
// the way pv-grub (GRUB 0.97 built against mini-os, Xen's stubdom/grub)
// read them, so a guest that used to boot through pv-grub gets the same
// entry, kernel, initrd and command-line bytes from the stub.
//
// The rules, with the GRUB source they come from, are in
// docs/config-grublegacy.md.
package grublegacy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

// maxLine is GRUB's NEW_HEAPSIZE, the buffer get_line_from_config fills:
// longer logical lines are cut there.
const maxLine = 1500

// maxFallback is MAX_FALLBACK_ENTRIES in stage2/shared.h.
const maxFallback = 8

// maxInt is GRUB's MAXINT for safe_parse_maxint.
const maxInt = 0x7FFFFFFF

// line is one logical config line after get_line_from_config's
// translation (CRs dropped, tabs to spaces, backslash-newline joined,
// leading spaces and # comments skipped).
type line struct {
	text      string
	num       int // 1-based physical line the logical line starts on
	truncated bool
}

// splitLines reproduces stage2.c get_line_from_config as it is in the
// GRUB CVS tree pv-grub builds from.
func splitLines(data []byte) []line {
	var out []line
	var buf []byte
	pos, literal, comment := 0, false, false
	lineNo, start := 1, 0
	truncated := false
	flush := func() {
		out = append(out, line{text: string(buf[:pos]), num: start, truncated: truncated})
		buf, pos, truncated = buf[:0], 0, false
	}
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '\r' {
			continue
		}
		if c == '\t' {
			c = ' '
		}
		if literal {
			if c == '\n' {
				c = ' '
				if pos > 0 {
					pos--
					buf = buf[:pos]
				}
			}
			literal = false
		}
		if c == '\\' && !literal {
			literal = true
		}
		if data[i] == '\n' {
			lineNo++
		}
		switch {
		case comment:
			if c == '\n' {
				comment = false
			}
		case pos == 0:
			if c == '#' {
				comment = true
			} else if c != ' ' && c != '\n' {
				start = lineNo
				buf = append(buf, c)
				pos++
			}
		default:
			if c == '\n' {
				flush()
				continue
			}
			if pos < maxLine {
				buf = append(buf, c)
				pos++
			} else {
				truncated = true
			}
		}
	}
	if pos > 0 {
		flush()
	}
	return out
}

// commandName is find_command's view of a line: the word up to a space
// or '='.
func commandName(s string) string {
	if i := strings.IndexAny(s, " \t="); i >= 0 {
		return s[:i]
	}
	return s
}

// skipTo is stage2's skip_to: past the first word (ending at whitespace,
// or also at '=' when afterEqual), then past whitespace (and '=').
func skipTo(afterEqual bool, s string) string {
	i := 0
	for i < len(s) && s[i] != ' ' && s[i] != '\t' && !(afterEqual && s[i] == '=') {
		i++
	}
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || (afterEqual && s[i] == '=')) {
		i++
	}
	return s[i:]
}

// parseMaxint is safe_parse_maxint: decimal, or hex after "0x"; it
// returns the value and the rest of the string.
func parseMaxint(s string) (int, string, bool) {
	mult := 10
	i := 0
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		i, mult = 2, 16
	}
	v, found := 0, false
	for ; i < len(s); i++ {
		c := s[i] | 0x20 // tolower for letters; digits are unaffected
		var d int
		switch {
		case s[i] >= '0' && s[i] <= '9':
			d = int(s[i] - '0')
		case mult == 16 && c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		default:
			goto done
		}
		found = true
		if v > (maxInt-d)/mult {
			return 0, s, false
		}
		v = v*mult + d
	}
done:
	if !found {
		return 0, s, false
	}
	return v, s[i:], true
}

// Commands pv-grub's builtin table knows (stage2/builtins.c after
// stubdom/grub.patches/99minios removed the BIOS-only ones). A line whose
// command is not here is skipped by GRUB without a word.
var known = map[string]bool{
	"blocklist": true, "boot": true, "bootp": true, "cat": true,
	"chainloader": true, "cmp": true, "color": true, "configfile": true,
	"debug": true, "default": true, "device": true, "dhcp": true,
	"fallback": true, "find": true, "fstest": true, "geometry": true,
	"halt": true, "help": true, "hiddenmenu": true, "hide": true,
	"ifconfig": true, "initrd": true, "kernel": true, "lock": true,
	"makeactive": true, "map": true, "md5crypt": true, "module": true,
	"modulenounzip": true, "pager": true, "partnew": true, "parttype": true,
	"password": true, "pause": true, "print": true, "rarp": true,
	"read": true, "reboot": true, "root": true, "rootnoverify": true,
	"savedefault": true, "splashimage": true, "terminal": true,
	"terminfo": true, "tftpserver": true, "timeout": true, "title": true,
	"unhide": true, "viewport": true, "foreground": true, "background": true,
	"border": true, "shade": true,
}

// harmless are entry commands that do not change what is loaded or how;
// the stub can skip them without booting anything different.
var harmless = map[string]bool{
	"root": true, "rootnoverify": true, "savedefault": true, "color": true,
	"splashimage": true, "terminal": true, "terminfo": true, "hiddenmenu": true,
	"timeout": true, "viewport": true, "foreground": true, "background": true,
	"border": true, "shade": true, "print": true, "debug": true, "pager": true,
	"find": true, "fstest": true, "device": true, "geometry": true,
	"help": true, "cat": true, "cmp": true, "blocklist": true, "md5crypt": true,
	"tftpserver": true, "ifconfig": true, "dhcp": true, "bootp": true,
	"rarp": true, "read": true,
}

type rawEntry struct {
	title string
	line  int
	cmds  []line
}

// maxConfigfile bounds a chain of configfile defaults (a loop of two
// files would otherwise never end; GRUB itself would loop too).
const maxConfigfile = 8

// Parse reads the GRUB legacy config at config (an fs.ValidPath) in fsys.
// When the default entry is "configfile FILE", GRUB loads FILE and shows
// its menu instead, so the menu returned is FILE's (recursively).
func Parse(fsys fs.FS, config string) (*entry.Menu, error) {
	return parse(fsys, config, 0)
}

func parse(fsys fs.FS, config string, depth int) (*entry.Menu, error) {
	data, err := entry.ReadConfig(fsys, config)
	if err != nil {
		return nil, err
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, &entry.SyntaxError{File: config, Line: 1 + bytes.Count(data[:i], []byte("\n")), Msg: "NUL byte: not a text config"}
	}
	m := &entry.Menu{Format: entry.GRUBLegacy, Config: config, Entries: []entry.Entry{}}
	warn := func(n int, format string, a ...any) {
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s:%d: ", config, n)+fmt.Sprintf(format, a...))
	}

	savedEntry, savedNote := readSaved(fsys, config)

	var (
		entries      []rawEntry
		cur          *rawEntry
		defaultEntry = 0
		defaultWhy   = "no default command: entry 0"
		fallbacks    []int
		password     bool
		timeout      = -1
	)
	for _, ln := range splitLines(data) {
		if ln.truncated {
			warn(ln.num, "line longer than %d bytes: cut there, as GRUB does", maxLine)
		}
		name := commandName(ln.text)
		if !known[name] {
			warn(ln.num, "unknown command %q skipped, as GRUB does", name)
			continue
		}
		arg := skipTo(true, ln.text)
		if name == "title" {
			if cur != nil && len(cur.cmds) > 0 {
				entries = append(entries, *cur)
			} else if cur != nil {
				warn(cur.line, "title %q has no commands: GRUB drops it from the menu", cur.title)
			}
			cur = &rawEntry{title: arg, line: ln.num}
			continue
		}
		if cur != nil {
			cur.cmds = append(cur.cmds, ln)
			continue
		}
		// Global section: only BUILTIN_MENU commands run here.
		switch name {
		case "default":
			if arg == "saved" {
				defaultEntry = savedEntry
				defaultWhy = "default saved: " + savedNote
				break
			}
			v, _, ok := parseMaxint(arg)
			if !ok {
				warn(ln.num, "default %q is not a number: ignored, as GRUB does", arg)
				break
			}
			defaultEntry = v
			defaultWhy = fmt.Sprintf("default %d", v)
		case "fallback":
			fallbacks = fallbacks[:0]
			rest := arg
			for len(fallbacks) < maxFallback {
				v, r, ok := parseMaxint(rest)
				if !ok {
					break
				}
				fallbacks = append(fallbacks, v)
				rest = skipTo(false, r)
				if r == rest && rest != "" {
					break
				}
			}
			if len(fallbacks) == 0 {
				warn(ln.num, "fallback %q is not a number: ignored", arg)
			}
		case "password":
			password = true
		case "timeout":
			// timeout_func: safe_parse_maxint, so a bad number leaves
			// grub_timeout at -1 (no timeout).
			if v, _, ok := parseMaxint(arg); ok {
				timeout = v
			} else {
				warn(ln.num, "timeout %q is not a number: ignored, as GRUB does", arg)
			}
		case "hiddenmenu", "color", "splashimage", "terminal", "terminfo",
			"viewport", "foreground", "background", "border", "shade", "pager", "debug":
			// Presentation only: with no user at the console the default
			// boots either way.
		default:
			warn(ln.num, "command %q before the first title is not a menu command: GRUB ignores it", name)
		}
	}
	if cur != nil {
		if len(cur.cmds) > 0 {
			entries = append(entries, *cur)
		} else {
			warn(cur.line, "title %q has no commands: GRUB drops it from the menu", cur.title)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s: no menu entries (no title with commands)", config)
	}

	bootable := 0
	for i, re := range entries {
		e := entry.Entry{
			Format:   entry.GRUBLegacy,
			Config:   config,
			Line:     re.line,
			Index:    i,
			MenuPath: strconv.Itoa(i),
			Title:    re.title,
			Initrds:  []string{},
		}
		if why := build(&e, re, password); why != "" {
			e.Kernel, e.Initrds, e.Cmdline = "", []string{}, ""
			warn(re.line, "entry %d %q cannot be booted by the stub: %s", i, re.title, why)
		} else {
			bootable++
		}
		m.Entries = append(m.Entries, e)
	}
	if _, _, chain := configfileOf(entries[min(max(defaultEntry, 0), len(entries)-1)]); bootable == 0 && !chain {
		return nil, fmt.Errorf("%s: no bootable entry among %d", config, len(entries))
	}

	// stage2.c: drop fallbacks past the end; a default past the end
	// becomes the first remaining fallback, else entry 0.
	valid := fallbacks[:0:0]
	for _, f := range fallbacks {
		if f < len(entries) {
			valid = append(valid, f)
		}
	}
	if defaultEntry >= len(entries) {
		was := defaultWhy
		if len(valid) > 0 {
			defaultWhy = fmt.Sprintf("%s is past the last entry (%d entries): fallback %d, as GRUB does", was, len(entries), valid[0])
			defaultEntry = valid[0]
		} else {
			defaultWhy = fmt.Sprintf("%s is past the last entry (%d entries): entry 0, as GRUB does", was, len(entries))
			defaultEntry = 0
		}
		m.Warnings = append(m.Warnings, config+": "+defaultWhy)
	}
	m.Default = defaultEntry
	m.DefaultReason = defaultWhy
	m.Fallback = valid
	// stage2.c run_menu: with grub_timeout < 0 (no timeout command) the
	// menu, hidden or not, waits for a key; GRUB 0.97 under QEMU proves
	// it (e2e/loader grub-legacy no-timeout, hiddenmenu-no-timeout).
	if timeout < 0 {
		m.Waits = config + " has no timeout command, so the menu waits for a key"
	} else if why := lockWhy(entries[defaultEntry], password); why != "" {
		m.Waits = fmt.Sprintf("the default entry %d %q is locked: %s", defaultEntry, entries[defaultEntry].title, why)
	} else if target, ln, ok := configfileOf(entries[defaultEntry]); ok {
		if depth >= maxConfigfile {
			return nil, fmt.Errorf("%s:%d: configfile chain deeper than %d", config, ln, maxConfigfile)
		}
		p, err := resolve(target)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: configfile: %w", config, ln, err)
		}
		sub, err := parse(fsys, p, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: configfile %s: %w", config, ln, target, err)
		}
		sub.DefaultReason = fmt.Sprintf("%s: %s: entry %d %q is configfile %s; there: %s", config, defaultWhy, defaultEntry, entries[defaultEntry].title, target, sub.DefaultReason)
		sub.Warnings = append(m.Warnings, sub.Warnings...)
		return sub, nil
	}
	return m, nil
}

// build runs an entry's commands the way pv-grub's run_script would for
// loading purposes and fills e; it returns why the stub cannot boot the
// entry, or "".
func build(e *entry.Entry, re rawEntry, password bool) string {
	haveKernel := false
	for _, ln := range re.cmds {
		name := commandName(ln.text)
		arg := skipTo(true, ln.text)
		switch {
		case name == "kernel":
			// kernel_func: options first, then the rest is copied whole
			// into the multiboot command line; pv-grub's load_image
			// drops the file name and the blanks after it (skip_to(0)).
			for {
				if strings.HasPrefix(arg, "--type=") || strings.HasPrefix(arg, "--no-mem-option") {
					arg = skipTo(false, arg)
					continue
				}
				break
			}
			file := firstWord(arg)
			if file == "" {
				return "kernel: no file name"
			}
			p, err := resolve(file)
			if err != nil {
				return fmt.Sprintf("line %d: kernel: %v", ln.num, err)
			}
			e.Kernel = p
			e.Cmdline = skipTo(false, arg)
			haveKernel = true
		case name == "initrd":
			if !haveKernel {
				return fmt.Sprintf("line %d: initrd before kernel (GRUB: \"Linux kernel must be loaded before initrd\")", ln.num)
			}
			file := firstWord(arg)
			if file == "" {
				return fmt.Sprintf("line %d: initrd: no file name", ln.num)
			}
			p, err := resolve(file)
			if err != nil {
				return fmt.Sprintf("line %d: initrd: %v", ln.num, err)
			}
			// pv-grub's load_initrd frees the previous one: last wins.
			e.Initrds = []string{p}
		case name == "boot":
			// Commands after an explicit boot never run.
			if !haveKernel {
				return "no kernel command"
			}
			return ""
		case name == "lock" || name == "password":
			// GRUB asks for the password here (lockWhy): a person has
			// to be there, so only an explicit choice boots the entry.
		case name == "module" || name == "modulenounzip":
			return fmt.Sprintf("line %d: %s: multiboot modules are not a Linux boot", ln.num, name)
		case name == "chainloader" || name == "makeactive" || name == "configfile" ||
			name == "map" || name == "hide" || name == "unhide" || name == "partnew" ||
			name == "parttype" || name == "halt" || name == "reboot":
			return fmt.Sprintf("line %d: %s is not supported", ln.num, name)
		case name == "pause":
			// pause waits for a key; an unattended boot would hang there,
			// the stub boots on.
		case harmless[name]:
		default:
			// Menu-only commands (default, fallback, ...) inside an entry
			// do nothing at boot time.
		}
	}
	if !haveKernel {
		return "no kernel command"
	}
	return ""
}

// configfileOf reports the file of a "configfile" the entry runs before
// any kernel command.
func configfileOf(re rawEntry) (string, int, bool) {
	for _, ln := range re.cmds {
		switch commandName(ln.text) {
		case "configfile":
			if f := firstWord(skipTo(true, ln.text)); f != "" {
				return f, ln.num, true
			}
		case "kernel", "boot", "chainloader":
			return "", 0, false
		}
	}
	return "", 0, false
}

// lockWhy says why GRUB would ask for a password before booting re: a
// "lock" with a global password (lock_func), or a "password" command in the
// entry itself (password_func outside the menu checks it then and there).
func lockWhy(re rawEntry, password bool) string {
	for _, ln := range re.cmds {
		switch commandName(ln.text) {
		case "lock":
			if password {
				return fmt.Sprintf("line %d: lock needs the menu password", ln.num)
			}
		case "password":
			return fmt.Sprintf("line %d: password asks for a password", ln.num)
		case "boot":
			return ""
		}
	}
	return ""
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i]
	}
	return s
}

var errRelative = errors.New("GRUB legacy needs an absolute path (\"/...\" or \"(hdN,M)/...\")")

// resolve turns a GRUB legacy file name into a path in the config's
// filesystem. The device part is dropped: the stub reads the filesystem
// that held menu.lst (see the doc for why that is what pv-grub did for
// the configs it could boot).
func resolve(name string) (string, error) {
	rest := name
	if strings.HasPrefix(rest, "(") {
		i := strings.IndexByte(rest, ')')
		if i < 0 {
			return "", fmt.Errorf("path %q: unterminated device name", name)
		}
		rest = rest[i+1:]
	}
	if !strings.HasPrefix(rest, "/") {
		if rest != "" && rest[0] >= '0' && rest[0] <= '9' && strings.Contains(rest, "+") {
			return "", fmt.Errorf("path %q: block lists are not supported", name)
		}
		return "", fmt.Errorf("path %q: %w", name, errRelative)
	}
	return entry.ResolvePath(".", rest)
}

// readSaved reads the "default" file next to the config, as GRUB's cmain
// does before parsing it: at most 9 bytes, an optional "prev:" prefix
// (the --once format), then a number. Anything unreadable leaves 0.
func readSaved(fsys fs.FS, config string) (int, string) {
	name := path.Join(path.Dir(config), "default")
	f, err := fsys.Open(name)
	if err != nil {
		return 0, name + " not readable: entry 0"
	}
	defer f.Close()
	buf := make([]byte, 10)
	n := 0
	for n < len(buf) {
		k, err := f.Read(buf[n:])
		n += k
		if err != nil || k == 0 {
			break
		}
	}
	if n > 9 {
		n = 9 // buf[sizeof(buf)-1] = 0
	}
	s := string(buf[:n])
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[i+1:]
	}
	v, _, ok := parseMaxint(s)
	if !ok {
		return 0, name + " holds no number: entry 0"
	}
	return v, fmt.Sprintf("%s says %d", name, v)
}
