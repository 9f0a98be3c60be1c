// Package xl parses xl domU configuration files (xl.cfg(5)) the way Xen's
// libxlutil does, so that pcrsim sees the same kernel, ramdisk, command line
// and disks that `xl create` would hand to the guest.
//
// The grammar follows libxlu_cfg_l.l / libxlu_cfg_y.y (Xen 4.17): settings
// `key = value` or `key += value` end at a newline or `;`; values are quoted
// strings, numbers (kept as their text, like libxlu does) or bracketed lists,
// which may nest, span lines and end with a trailing comma. A later setting
// replaces an earlier one; `+=` concatenates with the earlier value. See
// docs/xl.md for where we deliberately differ (we refuse, rather than
// reproduce, libxlu's broken numeric string escapes).
package xl

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

// MaxConfigSize bounds what ParseFile reads: a domU config is a few KiB, and
// a path pointing at a device or a huge file must not exhaust dom0 memory.
const MaxConfigSize = 1 << 20

// maxDepth bounds list nesting; libxlu's bison stack would give out too, and
// the recursion here must not be driven arbitrarily deep by untrusted input.
const maxDepth = 64

// SyntaxError reports input that libxlu would also reject (or that we refuse
// because xl's interpretation is undefined), with the 1-based line.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Value is one setting's value: a string (IsList false) or a list whose
// elements are strings or, as libxlu allows since Xen 4.7, lists.
type Value struct {
	IsList bool
	Str    string
	List   []Value
	Line   int // where the value starts
}

type setting struct {
	val  Value
	add  bool // set with +=: libxlu refuses such settings as numbers
	line int
}

// Config is a parsed xl domain configuration.
type Config struct {
	File     string
	settings map[string]*setting
	order    []string // first appearance, for stable dumps
}

// ParseFile reads and parses an xl config file.
func ParseFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("xl config: %w", err)
	}
	defer f.Close()
	data, err := entry.ReadLimited(f, MaxConfigSize)
	if errors.Is(err, entry.ErrTooLarge) {
		return nil, fmt.Errorf("xl config: %s: larger than %d bytes, not a domU config", path, MaxConfigSize)
	}
	if err != nil {
		return nil, fmt.Errorf("xl config: read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses data; name is used in errors and as the directory against
// which relative paths (kernel=, ramdisk=, disk targets) are resolved.
func Parse(name string, data []byte) (*Config, error) {
	p := &parser{name: name, lx: lexer{src: data, line: 1}}
	c := &Config{File: name, settings: map[string]*setting{}}
	if err := p.file(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Keys lists the settings in order of first appearance.
func (c *Config) Keys() []string { return append([]string(nil), c.order...) }

// Value returns a setting's value as stored.
func (c *Config) Value(key string) (Value, bool) {
	s, ok := c.settings[key]
	if !ok {
		return Value{}, false
	}
	return s.val, true
}

// Line is the line of the setting's (last) value, 0 if unset.
func (c *Config) Line(key string) int {
	if s, ok := c.settings[key]; ok {
		return s.line
	}
	return 0
}

// String returns a string (or number) setting. A list is reported as absent,
// as xl does (it warns and ignores it); use StringErr to tell the two apart.
func (c *Config) String(key string) (string, bool) {
	s, ok := c.settings[key]
	if !ok || s.val.IsList {
		return "", false
	}
	return s.val.Str, true
}

// StringErr is String with an error for a list where a string belongs:
// pcrsim must not silently predict a boot xl would configure differently.
func (c *Config) StringErr(key string) (string, bool, error) {
	s, ok := c.settings[key]
	if !ok {
		return "", false, nil
	}
	if s.val.IsList {
		return "", false, fmt.Errorf("%s:%d: %s is a list but should be a single value", c.File, s.line, key)
	}
	return s.val.Str, true, nil
}

// List returns a list setting's string elements. Like xlu_cfg_get_listitem,
// a nested list element ends the usable part: elements after it are dropped.
func (c *Config) List(key string) ([]string, bool) {
	s, ok := c.settings[key]
	if !ok || !s.val.IsList {
		return nil, false
	}
	out := make([]string, 0, len(s.val.List))
	for _, v := range s.val.List {
		if v.IsList {
			break
		}
		out = append(out, v.Str)
	}
	return out, true
}

// Int parses a setting as libxlu's xlu_cfg_get_long does (C strtol, base 0:
// 0x hex, leading 0 octal). ok is false when the key is unset.
func (c *Config) Int(key string) (n int64, ok bool, err error) {
	s, ok := c.settings[key]
	if !ok {
		return 0, false, nil
	}
	if s.val.IsList {
		return 0, true, fmt.Errorf("%s:%d: %s is a list but should be a single value", c.File, s.line, key)
	}
	if s.add {
		return 0, true, fmt.Errorf("%s:%d: can't use += with numbers for %s", c.File, s.line, key)
	}
	n, err = strtol(s.val.Str)
	if err != nil {
		return 0, true, fmt.Errorf("%s:%d: %s: %w", c.File, s.line, key, err)
	}
	return n, true, nil
}

var errNotNumber = errors.New("not a valid number")

func strtol(s string) (int64, error) {
	i := 0
	for i < len(s) && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	base := uint64(10)
	switch {
	case i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') && i+2 < len(s) && hexVal(s[i+2]) >= 0:
		base, i = 16, i+2
	case i < len(s) && s[i] == '0':
		base = 8
	}
	start := i
	var v uint64
	for ; i < len(s); i++ {
		d := hexVal(s[i])
		if d < 0 || uint64(d) >= base {
			break
		}
		if v > (1<<63)/base {
			return 0, fmt.Errorf("%q: %w", s, errors.New("out of range"))
		}
		v = v*base + uint64(d)
		if v > 1<<63 {
			return 0, fmt.Errorf("%q: %w", s, errors.New("out of range"))
		}
	}
	if i == start || i != len(s) {
		return 0, fmt.Errorf("%q: %w", s, errNotNumber)
	}
	if !neg && v == 1<<63 {
		return 0, fmt.Errorf("%q: %w", s, errors.New("out of range"))
	}
	if neg {
		return -int64(v), nil
	}
	return int64(v), nil
}

func hexVal(b byte) int {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0')
	case b >= 'a' && b <= 'f':
		return int(b-'a') + 10
	case b >= 'A' && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}

// Dump renders every setting in a stable, unambiguous form (Go-quoted
// strings), for golden tests and `pcrsim --explain`.
func (c *Config) Dump() string {
	var b strings.Builder
	keys := c.Keys()
	sort.Strings(keys)
	for _, k := range keys {
		s := c.settings[k]
		op := "="
		if s.add {
			op = "+="
		}
		fmt.Fprintf(&b, "%s %s %s\n", k, op, dumpValue(s.val))
	}
	return b.String()
}

func dumpValue(v Value) string {
	if !v.IsList {
		return fmt.Sprintf("%q", v.Str)
	}
	parts := make([]string, len(v.List))
	for i, e := range v.List {
		parts[i] = dumpValue(e)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// ---- lexer (libxlu_cfg_l.l) ----

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tNewline
	tComma
	tLBrack
	tRBrack
	tAssign
	tAdd
	tSemi
)

var tokNames = map[tokKind]string{
	tEOF: "end of file", tIdent: "name", tNumber: "number", tString: "string",
	tNewline: "newline", tComma: "`,'", tLBrack: "`['", tRBrack: "`]'",
	tAssign: "`='", tAdd: "`+='", tSemi: "`;'",
}

type token struct {
	kind tokKind
	text string
	line int
}

type lexer struct {
	src  []byte
	pos  int
	line int
}

func (lx *lexer) next() (token, *SyntaxError) {
	for lx.pos < len(lx.src) && (lx.src[lx.pos] == ' ' || lx.src[lx.pos] == '\t') {
		lx.pos++
	}
	if lx.pos >= len(lx.src) {
		return token{kind: tEOF, line: lx.line}, nil
	}
	start, line := lx.pos, lx.line
	c := lx.src[lx.pos]
	if lx.pos == len(lx.src)-1 && !startsToken(c) {
		// A quirk of libxlu's flex scanner: a stray character enters its
		// error state, and the error is only reported when more text
		// follows. As the very last byte it is ignored, so xl accepts
		// the file; so must we, or we would refuse configs xl boots.
		lx.pos++
		return token{kind: tEOF, line: lx.line}, nil
	}
	switch {
	case c >= 'a' && c <= 'z':
		for lx.pos < len(lx.src) && isIdentByte(lx.src[lx.pos]) {
			lx.pos++
		}
		return token{tIdent, string(lx.src[start:lx.pos]), line}, nil
	case c >= '0' && c <= '9':
		// libxlu's NUMBER is [0-9][0-9a-fx]*: the text is kept and only
		// interpreted (by strtol) when a number is asked for.
		for lx.pos < len(lx.src) && isNumberByte(lx.src[lx.pos]) {
			lx.pos++
		}
		return token{tNumber, string(lx.src[start:lx.pos]), line}, nil
	case c == ',':
		lx.pos++
		return token{tComma, ",", line}, nil
	case c == '[':
		lx.pos++
		return token{tLBrack, "[", line}, nil
	case c == ']':
		lx.pos++
		return token{tRBrack, "]", line}, nil
	case c == '+' && lx.pos+1 < len(lx.src) && lx.src[lx.pos+1] == '=':
		lx.pos += 2
		return token{tAdd, "+=", line}, nil
	case c == '=':
		lx.pos++
		return token{tAssign, "=", line}, nil
	case c == ';':
		lx.pos++
		return token{tSemi, ";", line}, nil
	case c == '\n':
		lx.pos++
		lx.line++
		return token{tNewline, "\n", line}, nil
	case c == '#':
		// libxlu's comment rule is `#.*\n`: a comment that ends the file
		// without a newline is a lexical error there, so xl rejects the
		// file; we must not predict a boot from a config xl refuses.
		for lx.pos < len(lx.src) && lx.src[lx.pos] != '\n' {
			lx.pos++
		}
		if lx.pos >= len(lx.src) {
			return token{}, &SyntaxError{Line: line, Msg: "comment at end of file without a newline: xl rejects this, add one"}
		}
		lx.pos++
		lx.line++
		return token{tNewline, "\n", line}, nil
	case c == '"' || c == '\'':
		return lx.str(c)
	}
	msg := fmt.Sprintf("lexical error near %q", lexeme(lx.src[start:]))
	switch {
	case c == '\r':
		msg = "carriage return in config (CRLF line endings?): xl rejects it"
	case strings.IndexByte("+-.():", c) >= 0:
		msg += ": this looks like Python, which xl no longer supports"
	case c >= 'A' && c <= 'Z':
		msg += ": setting names are lower case"
	}
	return token{}, &SyntaxError{Line: line, Msg: msg}
}

func lexeme(b []byte) string {
	end := 0
	for end < len(b) && end < 40 && b[end] != ' ' && b[end] != '\t' && b[end] != '\n' {
		end++
	}
	if end == 0 && len(b) > 0 {
		end = 1
	}
	return string(b[:end])
}

// startsToken reports whether b can begin a complete token on its own.
func startsToken(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || strings.IndexByte(",[]=;\n", b) >= 0
}

// Names are [a-z][._0-9a-z]* in the libxlu Xen 4.17 ships (dots allowed:
// checked against Debian's libxlutil, see oracle_test.go).
func isIdentByte(b byte) bool {
	return b == '_' || b == '.' || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z')
}

func isNumberByte(b byte) bool {
	return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || b == 'x'
}

// str lexes a quoted string with the escapes xlu__cfgl_dequote accepts.
func (lx *lexer) str(q byte) (token, *SyntaxError) {
	line := lx.line
	lx.pos++ // opening quote
	var b strings.Builder
	for {
		if lx.pos >= len(lx.src) || lx.src[lx.pos] == '\n' {
			return token{}, &SyntaxError{Line: line, Msg: "unterminated quoted string (strings cannot span lines)"}
		}
		c := lx.src[lx.pos]
		lx.pos++
		switch {
		case c == q:
			return token{tString, b.String(), line}, nil
		case c == 0:
			// libxl passes C strings: a NUL would silently truncate.
			return token{}, &SyntaxError{Line: line, Msg: "NUL byte in quoted string"}
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		if lx.pos >= len(lx.src) || lx.src[lx.pos] == '\n' {
			return token{}, &SyntaxError{Line: line, Msg: "unterminated quoted string (backslash at end of line)"}
		}
		e := lx.src[lx.pos]
		lx.pos++
		switch e {
		case '"', '\'', '\\':
			b.WriteByte(e)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x', '0', '1', '2', '3', '4', '5', '6', '7':
			// libxlu (up to at least 4.19) mis-parses these: \x always
			// errors, and octal escapes are consumed without producing a
			// character. Refuse rather than predict a cmdline from a bug.
			return token{}, &SyntaxError{Line: line, Msg: fmt.Sprintf("numeric escape \\%c in quoted string: xl does not decode these correctly; write the character itself", e)}
		default:
			return token{}, &SyntaxError{Line: line, Msg: fmt.Sprintf("invalid character %q after backslash in quoted string", e)}
		}
	}
}

// ---- parser (libxlu_cfg_y.y) ----

type parser struct {
	name string
	lx   lexer
	tok  token
}

func (p *parser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		err.File = p.name
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{File: p.name, Line: p.tok.line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) unexpected(want string) error {
	what := tokNames[p.tok.kind]
	if p.tok.kind == tIdent || p.tok.kind == tNumber {
		what += " `" + p.tok.text + "'"
	}
	return p.errorf("config parsing error near %s: expected %s", what, want)
}

func (p *parser) file(c *Config) error {
	if err := p.advance(); err != nil {
		return err
	}
	for {
		switch p.tok.kind {
		case tEOF:
			return nil
		case tNewline, tSemi:
			if err := p.advance(); err != nil {
				return err
			}
			continue
		case tIdent:
		default:
			return p.unexpected("a setting name")
		}
		name := p.tok.text
		if err := p.advance(); err != nil {
			return err
		}
		var add bool
		switch p.tok.kind {
		case tAssign:
		case tAdd:
			add = true
		default:
			return p.unexpected("`=' or `+=' after " + name)
		}
		if err := p.advance(); err != nil {
			return err
		}
		v, err := p.value(0)
		if err != nil {
			return err
		}
		if err := c.store(name, add, v); err != nil {
			return err
		}
		switch p.tok.kind {
		case tEOF, tNewline, tSemi:
		default:
			return p.unexpected("newline or `;' after the value of " + name)
		}
	}
}

func (c *Config) store(name string, add bool, v Value) error {
	prev, had := c.settings[name]
	if add && had {
		if prev.val.IsList != v.IsList {
			return &SyntaxError{File: c.File, Line: v.Line, Msg: fmt.Sprintf("%s: can't add [list] to \"string\" or vice versa", name)}
		}
		if v.IsList {
			v.List = append(append([]Value(nil), prev.val.List...), v.List...)
		} else {
			v.Str = prev.val.Str + v.Str
		}
	}
	if !had {
		c.order = append(c.order, name)
	}
	c.settings[name] = &setting{val: v, add: add, line: v.Line}
	return nil
}

func (p *parser) skipNewlines() error {
	for p.tok.kind == tNewline {
		if err := p.advance(); err != nil {
			return err
		}
	}
	return nil
}

// value parses one value and leaves p.tok on the token after it.
func (p *parser) value(depth int) (Value, error) {
	switch p.tok.kind {
	case tString, tNumber:
		v := Value{Str: p.tok.text, Line: p.tok.line}
		return v, p.advance()
	case tLBrack:
	default:
		return Value{}, p.unexpected("a string, number or [list]")
	}
	if depth >= maxDepth {
		return Value{}, p.errorf("lists nested deeper than %d", maxDepth)
	}
	v := Value{IsList: true, Line: p.tok.line, List: []Value{}}
	if err := p.advance(); err != nil {
		return Value{}, err
	}
	if err := p.skipNewlines(); err != nil {
		return Value{}, err
	}
	for p.tok.kind != tRBrack {
		e, err := p.value(depth + 1)
		if err != nil {
			return Value{}, err
		}
		v.List = append(v.List, e)
		if err := p.skipNewlines(); err != nil {
			return Value{}, err
		}
		if p.tok.kind == tRBrack {
			break
		}
		if p.tok.kind != tComma {
			return Value{}, p.unexpected("`,' or `]' in list")
		}
		if err := p.advance(); err != nil {
			return Value{}, err
		}
		if err := p.skipNewlines(); err != nil {
			return Value{}, err
		}
	}
	return v, p.advance()
}
