// Package syslinux parses SYSLINUX/EXTLINUX configuration files
// (extlinux.conf, syslinux.cfg) the way syslinux 6.x's ldlinux.c32 reads
// them (com32/elflink/ldlinux/readconfig.c), and builds each entry's
// kernel, initrds and command-line bytes the way its execute.c and
// kernel.c would hand them to Linux, BOOT_IMAGE= included.
//
// u-root's pkg/boot/syslinux is not used: it joins words with single
// blanks (strings.Fields), drops BOOT_IMAGE= and the initrd= that the
// INITRD directive adds, fetches every file while parsing and logs the
// config; the stub needs the exact bytes syslinux would have passed.
// docs/config-syslinux.md has the rules.
package syslinux

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

// maxLine is readconfig.c's MAX_LINE: fgets splits longer lines, which
// would turn the tail of an APPEND into a directive of its own.
const maxLine = 4096

// maxIncludeDepth bounds INCLUDE nesting. syslinux itself has no bound
// (a loop recurses until it runs out of stack); real configs nest one or
// two deep.
const maxIncludeDepth = 16

// isSpace is syslinux's my_isspace: every byte up to and including ' '.
func isSpace(c byte) bool { return c <= ' ' }

func skipSpace(s string) string {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return s[i:]
}

// lookingAt is readconfig.c's looking_at: a case-insensitive keyword
// (bytes may differ only in bit 0x20) followed by a blank or the end.
// It returns the text after the keyword.
func lookingAt(s, kw string) (string, bool) {
	if len(s) < len(kw) {
		return "", false
	}
	for i := 0; i < len(kw); i++ {
		if (s[i]^kw[i])&^0x20 != 0 {
			return "", false
		}
	}
	if len(s) > len(kw) && !isSpace(s[len(kw)]) {
		return "", false
	}
	return s[len(kw):], true
}

func firstWord(s string) (word, rest string) {
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// kernelTypes is readconfig.c's kernel_types, in enum order.
var kernelTypes = []string{"none", "localboot", "kernel", "linux", "boot", "bss", "pxe", "fdimage", "comboot", "com32", "config"}

const ktKernel = "kernel"

type action int

const (
	maCmd action = iota
	maDisabled
	maOther // goto, exit, quit, submenu
)

// label is readconfig.c's struct labeldata, with where it started.
type label struct {
	label, kernel, ktype string
	append, initrd       *string
	menuLabel            *string
	passwd               bool
	ipappend             uint64
	hide, menuDefault    bool
	separator, disabled  bool
	action               action
	file                 string
	line                 int
}

// rec is a recorded menu entry (readconfig.c's struct menu_entry).
type rec struct {
	label, title string
	cmdline      string // me->cmdline: "kernel[ append][ initrd=...]"
	menu         int    // which menu: 0 is the root, -1 the hidden menu
	hidden       bool
	passwd       bool
	ipappend     uint64
	file         string
	line         int
}

type parser struct {
	fsys fs.FS
	cwd  string
	root string // the main config

	ld        *label
	appendG   *string
	sysAppend uint64

	menus   []int // stack of submenu ids; top is current
	nextID  int
	recs    []rec
	rootDef int // index into recs of the root menu's MENU DEFAULT, or -1

	globalDefault *string
	defaultCmd    *string
	defaultLevel  int // 0 none, 1 DEFAULT, 2 UI
	defaultAt     where
	hasUI         bool
	onTimeout     *string
	onTimeoutAt   where
	// timeout and totalTimeout are TIMEOUT and TOTALTIMEOUT (tenths of
	// a second; 0 is none); prompt is PROMPT (forceprompt).
	timeout, totalTimeout, prompt int
	allowImplicit                 bool
	includeStack                  []string
	warnings                      []string
}

type where struct {
	file string
	line int
}

func (p *parser) warn(file string, line int, format string, a ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf("%s:%d: ", file, line)+fmt.Sprintf(format, a...))
}

func (p *parser) curMenu() int { return p.menus[len(p.menus)-1] }

// Parse reads the syslinux/extlinux config at config (an fs.ValidPath) in
// fsys, following INCLUDEs.
func Parse(fsys fs.FS, config string) (*entry.Menu, error) {
	p := &parser{
		fsys:          fsys,
		cwd:           path.Dir(config),
		root:          config,
		menus:         []int{0},
		nextID:        1,
		rootDef:       -1,
		allowImplicit: true,
	}
	if err := p.parseFile(config, 1, where{}); err != nil {
		return nil, err
	}
	p.record() // readconfig.c: "On final EOF process the last label statement"
	return p.menu()
}

func (p *parser) parseFile(name string, depth int, from where) error {
	for _, f := range p.includeStack {
		if f == name {
			return &entry.SyntaxError{File: from.file, Line: from.line, Msg: fmt.Sprintf("INCLUDE loop: %s includes itself via %s", name, strings.Join(p.includeStack, " -> "))}
		}
	}
	if depth > maxIncludeDepth {
		return &entry.SyntaxError{File: from.file, Line: from.line, Msg: fmt.Sprintf("INCLUDE nested more than %d deep", maxIncludeDepth)}
	}
	data, err := entry.ReadConfig(p.fsys, name)
	if err != nil {
		if from.file != "" {
			return fmt.Errorf("%s:%d: INCLUDE: %w", from.file, from.line, err)
		}
		return err
	}
	p.includeStack = append(p.includeStack, name)
	defer func() { p.includeStack = p.includeStack[:len(p.includeStack)-1] }()

	lines := bytes.SplitAfter(data, []byte("\n"))
	inText := false
	for i, raw := range lines {
		n := i + 1
		if len(raw) == 0 {
			continue
		}
		if len(raw) >= maxLine {
			return &entry.SyntaxError{File: name, Line: n, Msg: fmt.Sprintf("line longer than %d bytes (syslinux would split it into two directives)", maxLine-1)}
		}
		if bytes.IndexByte(raw, 0) >= 0 {
			return &entry.SyntaxError{File: name, Line: n, Msg: "NUL byte: not a text config"}
		}
		s := string(raw)
		// readconfig.c cuts at the first CR, then at the first LF.
		if j := strings.IndexByte(s, '\r'); j >= 0 {
			s = s[:j]
		}
		s = strings.TrimSuffix(s, "\n")
		if inText {
			if _, ok := lookingAt(skipSpace(s), "endtext"); ok {
				inText = false
			}
			continue
		}
		var err error
		inText, err = p.directive(skipSpace(s), name, n, depth)
		if err != nil {
			return err
		}
	}
	return nil
}

// directive handles one line; it reports whether a TEXT block starts.
func (p *parser) directive(s, file string, n, depth int) (bool, error) {
	here := where{file, n}
	if rest, ok := lookingAt(s, "menu"); ok {
		return false, p.menuDirective(skipSpace(rest), file, n, depth)
	}
	if _, ok := lookingAt(s, "text"); ok {
		return true, nil
	}
	if isFkey(s) {
		return false, nil
	}
	if rest, ok := lookingAt(s, "include"); ok {
		return false, p.include(rest, here, depth, "")
	}
	if rest, ok := lookingAt(s, "append"); ok {
		a := skipSpace(rest)
		if p.ld != nil {
			p.ld.append = &a
		} else {
			p.appendG = &a
		}
		return false, nil
	}
	if rest, ok := lookingAt(s, "initrd"); ok {
		if p.ld != nil {
			a := skipSpace(rest)
			p.ld.initrd = &a
		} else {
			p.warn(file, n, "INITRD outside a LABEL: ignored, as syslinux does")
		}
		return false, nil
	}
	if rest, ok := lookingAt(s, "label"); ok {
		p.record()
		w, _ := firstWord(skipSpace(rest))
		p.ld = &label{label: w, kernel: w, ktype: ktKernel, ipappend: p.sysAppend, file: file, line: n}
		return false, nil
	}
	for _, kt := range kernelTypes {
		if rest, ok := lookingAt(s, kt); ok {
			if p.ld != nil {
				p.ld.kernel = skipSpace(rest)
				p.ld.ktype = kt
			} else {
				p.warn(file, n, "%s outside a LABEL: ignored, as syslinux does", strings.ToUpper(kt))
			}
			return false, nil
		}
	}
	if rest, ok := lookingAt(s, "ontimeout"); ok {
		v := skipSpace(rest)
		p.onTimeout, p.onTimeoutAt = &v, here
		return false, nil
	}
	for _, kw := range []string{"ipappend", "sysappend"} {
		if rest, ok := lookingAt(s, kw); ok {
			v := strtoul(skipSpace(rest))
			if p.ld != nil {
				p.ld.ipappend = v
			} else {
				p.sysAppend = v
			}
			return false, nil
		}
	}
	if rest, ok := lookingAt(s, "default"); ok {
		v := skipSpace(rest)
		p.globalDefault = &v
		if p.defaultLevel < 2 {
			p.defaultLevel = 1
			p.defaultCmd, p.defaultAt = &v, here
		}
		return false, nil
	}
	if rest, ok := lookingAt(s, "ui"); ok {
		v := skipSpace(rest)
		p.hasUI = true
		p.defaultLevel = 2
		p.defaultCmd, p.defaultAt = &v, here
		return false, nil
	}
	for _, kw := range []struct {
		name string
		v    *int
	}{{"timeout", &p.timeout}, {"totaltimeout", &p.totalTimeout}, {"prompt", &p.prompt}} {
		if rest, ok := lookingAt(s, kw.name); ok {
			*kw.v = atoi(skipSpace(rest))
			return false, nil
		}
	}
	if rest, ok := lookingAt(s, "implicit"); ok {
		p.allowImplicit = atoi(skipSpace(rest)) != 0
		return false, nil
	}
	// Everything else (SAY, DISPLAY, FONT,
	// KBDMAP, SERIAL, CONSOLE, ALLOWOPTIONS, NOESCAPE, NOCOMPLETE, NOHALT,
	// ONERROR, PXERETRY, PATH, F1..F12, comments) does not change what an
	// unattended boot loads.
	return false, nil
}

func (p *parser) menuDirective(s, file string, n, depth int) error {
	here := where{file, n}
	switch {
	case has(s, "label"):
		if p.ld != nil {
			v := skipSpace(s[5:])
			p.ld.menuLabel = &v
		}
	case has(s, "default"):
		if p.ld != nil {
			p.ld.menuDefault = true
		}
	case has(s, "hide"):
		if p.ld != nil {
			p.ld.hide = true
		}
	case has(s, "passwd"):
		if p.ld != nil {
			p.ld.passwd = true
		}
	case has(s, "include"):
		rest, _ := lookingAt(s, "include")
		rest = skipSpace(rest)
		_, tag := firstWord(rest)
		return p.include(rest, here, depth, skipSpace(tag))
	case has(s, "separator"):
		p.record()
		p.ld = &label{separator: true, file: file, line: n}
		p.record()
	case has(s, "disable"), has(s, "disabled"):
		if p.ld != nil {
			p.ld.disabled = true
		}
	case has(s, "begin"):
		p.record()
		p.menus = append(p.menus, p.nextID)
		p.nextID++
	case has(s, "end"):
		p.record()
		if len(p.menus) > 1 {
			p.menus = p.menus[:len(p.menus)-1]
		}
	case has(s, "quit"), has(s, "goto"), has(s, "exit"):
		if p.ld != nil {
			p.ld.action = maOther
		}
	}
	return nil
}

func has(s, kw string) bool { _, ok := lookingAt(s, kw); return ok }

// include parses another file with the same state, as do_include does:
// the name is relative to the working directory (the main config's
// directory), not to the including file; a missing file is skipped.
func (p *parser) include(rest string, at where, depth int, submenu string) error {
	w, _ := firstWord(skipSpace(rest))
	if w == "" {
		return nil
	}
	name, err := entry.ResolvePath(p.cwd, w)
	if err != nil {
		p.warn(at.file, at.line, "INCLUDE %q: %v: skipped", w, err)
		return nil
	}
	if st, err := fs.Stat(p.fsys, name); err != nil {
		p.warn(at.file, at.line, "INCLUDE %s: %v: skipped, as syslinux does", name, err)
		return nil
	} else if !st.Mode().IsRegular() {
		p.warn(at.file, at.line, "INCLUDE %s: not a regular file: skipped, as syslinux does", name)
		return nil
	}
	if submenu != "" {
		p.record()
		p.menus = append(p.menus, p.nextID)
		p.nextID++
	}
	if err := p.parseFile(name, depth+1, at); err != nil {
		return err
	}
	if submenu != "" {
		p.record()
		p.menus = p.menus[:len(p.menus)-1]
	}
	return nil
}

// record is readconfig.c's record(): it turns the pending LABEL into a
// menu entry, building me->cmdline from KERNEL, APPEND (or the global
// APPEND) and INITRD.
func (p *parser) record() {
	ld := p.ld
	p.ld = nil
	if ld == nil || ld.separator {
		return
	}
	if ld.disabled || ld.action != maCmd {
		return // not a boot entry; nothing can select it by label
	}
	a := ld.append
	if a == nil {
		a = p.appendG
	}
	args := ""
	if a != nil && *a != "-" {
		args = *a
	}
	cmd := ld.kernel
	if ld.ktype != ktKernel {
		cmd = "." + ld.ktype + " " + ld.kernel
	}
	if args != "" {
		cmd += " " + args
	}
	if ld.initrd != nil {
		cmd += " initrd=" + *ld.initrd
	}
	title := ld.label
	if ld.menuLabel != nil {
		title = *ld.menuLabel
	}
	menu := p.curMenu()
	if ld.hide {
		menu = -1
	}
	r := rec{
		label:    ld.label,
		title:    strings.ReplaceAll(title, "^", ""),
		cmdline:  cmd,
		menu:     menu,
		hidden:   ld.hide,
		passwd:   ld.passwd,
		ipappend: ld.ipappend,
		file:     ld.file,
		line:     ld.line,
	}
	p.recs = append(p.recs, r)
	if ld.menuDefault && menu == 0 {
		p.rootDef = len(p.recs) - 1
	}
}

// findLabel is find_label: the first entry whose label equals the first
// word of s (case-sensitive).
func (p *parser) findLabel(s string) int {
	w, _ := firstWord(s)
	for i, r := range p.recs {
		if r.label == w {
			return i
		}
	}
	return -1
}

// boot turns a command line as ldlinux would execute it into the kernel,
// initrds and Linux command line; why is non-empty when it is not a
// Linux boot the stub can do.
func (p *parser) boot(cmd string) (kernel string, initrds []string, cmdline, why string) {
	word, rest := firstWord(cmd)
	if t, ok := typeSpecifier(word); ok {
		// A type specifier from LINUX/COM32/...; only .linux and
		// .kernel load a Linux kernel.
		if t != "linux" && t != ktKernel {
			return "", nil, "", fmt.Sprintf("%s is not a Linux kernel (%s)", strings.ToUpper(t), strings.TrimSpace(rest))
		}
		word, rest = firstWord(skipSpace(rest))
	} else if t := imageType(word); t != "" {
		return "", nil, "", fmt.Sprintf("%s is a %s image, not a Linux kernel", word, t)
	}
	if word == "" {
		return "", nil, "", "no kernel"
	}
	args := skipSpace(rest)
	// kernel.c: "BOOT_IMAGE=%s %s", then the first "initrd=" anywhere in
	// that string names the initrds, comma-separated, up to a blank.
	cmdline = "BOOT_IMAGE=" + word + " " + args
	kp, err := entry.ResolvePath(p.cwd, word)
	if err != nil {
		return "", nil, "", fmt.Sprintf("kernel: %v", err)
	}
	initrds = []string{}
	if i := strings.Index(cmdline, "initrd="); i >= 0 {
		t := cmdline[i+len("initrd"):]
		for {
			t = t[1:] // the '=' or ','
			j := strings.IndexAny(t, " ,")
			if j < 0 {
				j = len(t)
			}
			name := t[:j]
			t = t[j:]
			if name == "" {
				return "", nil, "", "empty initrd name in initrd= (syslinux fails to load it)"
			}
			ip, err := entry.ResolvePath(p.cwd, name)
			if err != nil {
				return "", nil, "", fmt.Sprintf("initrd: %v", err)
			}
			initrds = append(initrds, ip)
			if !strings.HasPrefix(t, ",") {
				break
			}
		}
	}
	return kp, initrds, cmdline, ""
}

// typeSpecifier recognises execute.c's ".type" prefixes (image_boot_types);
// any other word starting with '.' is just a file name.
func typeSpecifier(word string) (string, bool) {
	if !strings.HasPrefix(word, ".") {
		return "", false
	}
	for _, t := range kernelTypes[1:] {
		if word[1:] == t {
			return t, true
		}
	}
	return "", false
}

// imageType is ldlinux's parse_image_type by file extension: these load
// something other than a Linux kernel.
func imageType(name string) string {
	for _, e := range []struct{ ext, t string }{
		{".c32", "COM32"}, {".0", "PXE"}, {".bs", "boot sector"}, {".bin", "boot sector"},
		{".bss", "BSS boot sector"}, {".com", "COMBOOT"}, {".cbt", "COMBOOT"}, {".img", "floppy"},
	} {
		if strings.HasSuffix(name, e.ext) {
			return e.t
		}
	}
	return ""
}

func (p *parser) menu() (*entry.Menu, error) {
	m := &entry.Menu{Format: entry.Syslinux, Config: p.root, Entries: []entry.Entry{}}
	bootable := 0
	add := func(e entry.Entry, why string) int {
		e.Format = entry.Syslinux
		e.Index = len(m.Entries)
		e.MenuPath = strconv.Itoa(e.Index)
		if why != "" {
			e.Kernel, e.Initrds, e.Cmdline = "", []string{}, ""
			p.warn(e.Config, e.Line, "entry %d %q cannot be booted by the stub: %s", e.Index, e.Title, why)
		} else {
			bootable++
		}
		m.Entries = append(m.Entries, e)
		return e.Index
	}
	for _, r := range p.recs {
		e := entry.Entry{Config: r.file, Line: r.line, Title: r.title, ID: r.label}
		var why string
		e.Kernel, e.Initrds, e.Cmdline, why = p.boot(r.cmdline)
		// MENU PASSWD is asked only when a person picks the entry:
		// menu.c32 boots it at the timeout (e2e/loader syslinux/menu-passwd).
		if why == "" && strings.Count(e.Cmdline, "initrd=") > 1 {
			p.warn(r.file, r.line, "more than one initrd= in the command line: only the first is loaded, as syslinux does")
		}
		if why == "" && r.ipappend != 0 {
			p.warn(r.file, r.line, "IPAPPEND/SYSAPPEND %d: the machine-dependent strings are not appended", r.ipappend)
		}
		add(e, why)
	}

	// command resolves a DEFAULT/ONTIMEOUT command line as load_kernel
	// does: a label (plus extra arguments), else an implicit kernel.
	command := func(cmd string, at where, what string) (int, string) {
		if i := p.findLabel(cmd); i >= 0 {
			_, rest := firstWord(cmd)
			rest = skipSpace(rest)
			if rest == "" {
				return i, fmt.Sprintf("%s %s: label %q", what, cmd, p.recs[i].label)
			}
			e := entry.Entry{Config: at.file, Line: at.line, Title: what + " " + cmd}
			var why string
			e.Kernel, e.Initrds, e.Cmdline, why = p.boot(p.recs[i].cmdline + " " + rest)
			return add(e, why), fmt.Sprintf("%s %s: label %q with extra arguments (an entry of its own)", what, cmd, p.recs[i].label)
		}
		if !p.allowImplicit {
			return -1, fmt.Sprintf("%s %s names no label and IMPLICIT is 0", what, cmd)
		}
		e := entry.Entry{Config: at.file, Line: at.line, Title: what + " " + cmd}
		var why string
		e.Kernel, e.Initrds, e.Cmdline, why = p.boot(cmd)
		return add(e, why), fmt.Sprintf("%s %s: not a label, booted as a kernel file (an entry of its own)", what, cmd)
	}

	def, reason := -1, ""
	ui := p.hasUI
	if !ui && p.defaultCmd != nil && p.findLabel(*p.defaultCmd) < 0 {
		// syslinux 3/4 style "DEFAULT menu.c32": the menu is the UI.
		w, _ := firstWord(*p.defaultCmd)
		if b := path.Base(w); b == "menu.c32" || b == "vesamenu.c32" {
			ui = true
		}
	}
	timed := p.timeout > 0 || p.totalTimeout > 0
	switch {
	case !ui && p.defaultCmd != nil && p.prompt != 0 && timed && p.onTimeout != nil:
		// The boot: prompt times out into ONTIMEOUT (ldlinux.c).
		def, reason = command(*p.onTimeout, p.onTimeoutAt, "ONTIMEOUT")
	case ui && p.onTimeout != nil:
		def, reason = command(*p.onTimeout, p.onTimeoutAt, "ONTIMEOUT")
	case ui:
		if p.globalDefault != nil {
			if i := p.findLabel(*p.globalDefault); i >= 0 && !p.recs[i].hidden {
				def, reason = i, fmt.Sprintf("menu default from DEFAULT %s", *p.globalDefault)
			}
		}
		if def < 0 && p.rootDef >= 0 {
			def, reason = p.rootDef, fmt.Sprintf("MENU DEFAULT on label %q", p.recs[p.rootDef].label)
		}
		if def < 0 {
			for i, r := range p.recs {
				if !r.hidden {
					def, reason = i, fmt.Sprintf("first menu entry (label %q): no DEFAULT label or MENU DEFAULT", r.label)
					break
				}
			}
		}
	case p.defaultCmd != nil:
		def, reason = command(*p.defaultCmd, p.defaultAt, "DEFAULT")
	}
	if bootable == 0 {
		return nil, fmt.Errorf("%s: no bootable entry among %d", p.root, len(m.Entries))
	}
	// When SYSLINUX waits for a person (ldlinux.c, menu.c32; proved by
	// e2e/loader syslinux/no-default, prompt-no-timeout,
	// ui-menu-no-timeout): no DEFAULT or UI; a menu with no timeout; the
	// boot: prompt forced by PROMPT 1 with no timeout.
	var waits string
	switch {
	case def < 0 && reason == "":
		waits = "no DEFAULT or UI line: SYSLINUX prints \"No DEFAULT or UI configuration directive found!\" and waits at its boot: prompt"
	case ui && !timed:
		waits = "the menu has no TIMEOUT (or TIMEOUT 0), so it waits for a key"
	case !ui && p.prompt != 0 && !timed:
		waits = "PROMPT 1 with no TIMEOUT: the boot: prompt waits for a key"
	}
	if def < 0 {
		why := reason
		if why == "" {
			why = "no DEFAULT or UI"
		}
		def, reason = 0, why+"; entry 0 shown as the default"
		if waits == "" {
			waits = why
		}
	}
	m.Default, m.DefaultReason, m.Waits = def, reason, waits
	m.Warnings = p.warnings
	return m, nil
}

// strtoul is C strtoul(s, NULL, 0): base from the prefix (0x hex, 0
// octal, else decimal), digits up to the first that does not fit, 0 when
// there are none.
func strtoul(s string) uint64 {
	base, i := uint64(10), 0
	if len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		base, i = 16, 2
	} else if len(s) > 0 && s[0] == '0' {
		base = 8
	}
	var v uint64
	for ; i < len(s); i++ {
		c := s[i]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			d = uint64(c|0x20-'a') + 10
		default:
			return v
		}
		if d >= base {
			return v
		}
		v = v*base + d
	}
	return v
}

func atoi(s string) int {
	end := 0
	if end < len(s) && (s[end] == '-' || s[end] == '+') {
		end++
	}
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	v, _ := strconv.Atoi(s[:end])
	return v
}

// isFkey matches the F1..F12 help-file directives so their file names
// are not taken for anything else.
func isFkey(s string) bool {
	if len(s) < 2 || s[0]|0x20 != 'f' {
		return false
	}
	i := 1
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 1 {
		return false
	}
	return i == len(s) || isSpace(s[i])
}
