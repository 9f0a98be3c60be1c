package grub2

import (
	"fmt"
	"strings"
)

// partKind says how a piece of a word was written, because GRUB expands
// each differently: unquoted variables are split into fields, quoted ones
// are not, and quoted text (even empty) always makes an argument.
type partKind int

const (
	pLit   partKind = iota // unquoted text, backslash escapes already removed
	pQuote                 // text from '...' or "..." (no variables)
	pVar                   // unquoted $name / ${name}
	pDQVar                 // $name inside "..."
)

type part struct {
	kind partKind
	text string
}

type tokKind int

const (
	tWord tokKind = iota
	tNewline
	tSemi
	tLBrace
	tRBrace
	tEOF
)

type token struct {
	kind  tokKind
	parts []part
	line  int
}

// keyword reports the token as a bare keyword: only an unquoted,
// variable-free word can be one, as in GRUB's lexer.
func (t token) keyword() string {
	if t.kind != tWord || len(t.parts) != 1 || t.parts[0].kind != pLit {
		return ""
	}
	return t.parts[0].text
}

type lexer struct {
	file string
	src  string
	pos  int
	line int
}

func (l *lexer) errorf(line int, format string, a ...any) error {
	return &syntaxError{file: l.file, line: line, msg: fmt.Sprintf(format, a...)}
}

// syntaxError is converted to *entry.SyntaxError at the package boundary;
// kept separate so the lexer does not depend on where the file came from.
type syntaxError struct {
	file string
	line int
	msg  string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

func isVarChar(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// isWordEnd: characters that end an unquoted word in GRUB's lexer.
func isWordEnd(c byte) bool { return isBlank(c) || c == '\n' || c == ';' }

func (l *lexer) next() (token, error) {
	for {
		for l.pos < len(l.src) && isBlank(l.src[l.pos]) {
			l.pos++
		}
		if l.pos+1 < len(l.src) && l.src[l.pos] == '\\' && l.src[l.pos+1] == '\n' {
			l.pos += 2
			l.line++
			continue
		}
		break
	}
	if l.pos >= len(l.src) {
		return token{kind: tEOF, line: l.line}, nil
	}
	c := l.src[l.pos]
	switch c {
	case '#':
		for l.pos < len(l.src) && l.src[l.pos] != '\n' {
			l.pos++
		}
		return l.next()
	case '\n':
		l.pos++
		l.line++
		return token{kind: tNewline, line: l.line - 1}, nil
	case ';':
		l.pos++
		return token{kind: tSemi, line: l.line}, nil
	case '{', '}':
		if l.pos+1 >= len(l.src) || isWordEnd(l.src[l.pos+1]) {
			l.pos++
			if c == '{' {
				return token{kind: tLBrace, line: l.line}, nil
			}
			return token{kind: tRBrace, line: l.line}, nil
		}
	}
	return l.word()
}

func (l *lexer) word() (token, error) {
	t := token{kind: tWord, line: l.line}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{pLit, lit.String()})
			lit.Reset()
		}
	}
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case isWordEnd(c):
			flush()
			return t, nil
		case c == '|' || c == '&' || c == '<' || c == '>':
			// yylex.l makes each a token of its own (PIPE, AMP, LT, GT;
			// CHAR excludes them) and parser.y has no rule taking one:
			// GRUB reports a syntax error and skips input in ways not
			// modelled here, so the config is refused.
			return t, l.errorf(l.line, "unquoted %q: a GRUB syntax error (GRUB's lexer makes it a token no command takes); quote it", string(c))
		case c == '\\':
			if l.pos+1 >= len(l.src) {
				l.pos++
				continue
			}
			n := l.src[l.pos+1]
			l.pos += 2
			if n == '\n' {
				l.line++
				continue
			}
			lit.WriteByte(n)
		case c == '\'':
			start := l.line
			end := strings.IndexByte(l.src[l.pos+1:], '\'')
			if end < 0 {
				return t, l.errorf(start, "unterminated single quote")
			}
			s := l.src[l.pos+1 : l.pos+1+end]
			l.line += strings.Count(s, "\n")
			l.pos += end + 2
			flush()
			t.parts = append(t.parts, part{pQuote, s})
		case c == '"':
			flush()
			if err := l.dquote(&t); err != nil {
				return t, err
			}
		case c == '$':
			p, ok, err := l.variable(pVar)
			if err != nil {
				return t, err
			}
			if !ok {
				lit.WriteByte('$')
				l.pos++
				continue
			}
			flush()
			t.parts = append(t.parts, p)
		default:
			lit.WriteByte(c)
			l.pos++
		}
	}
	flush()
	return t, nil
}

// dquote reads "..." : backslash escapes only \, ", $ and newline there,
// as GRUB's lexer does; any other backslash stays literal.
func (l *lexer) dquote(t *token) error {
	start := l.line
	l.pos++
	var sb strings.Builder
	quoted := false
	flush := func(force bool) {
		if sb.Len() > 0 || force {
			t.parts = append(t.parts, part{pQuote, sb.String()})
			sb.Reset()
			quoted = true
		}
	}
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch c {
		case '"':
			l.pos++
			if !quoted {
				// "" still makes an (empty) argument.
				flush(true)
			} else {
				flush(false)
			}
			return nil
		case '\\':
			if l.pos+1 < len(l.src) {
				n := l.src[l.pos+1]
				switch n {
				case '\\', '"', '$':
					sb.WriteByte(n)
					l.pos += 2
					continue
				case '\n':
					l.line++
					l.pos += 2
					continue
				}
			}
			sb.WriteByte(c)
			l.pos++
		case '$':
			p, ok, err := l.variable(pDQVar)
			if err != nil {
				return err
			}
			if !ok {
				sb.WriteByte('$')
				l.pos++
				continue
			}
			flush(false)
			t.parts = append(t.parts, p)
			quoted = true
		default:
			if c == '\n' {
				l.line++
			}
			sb.WriteByte(c)
			l.pos++
		}
	}
	return l.errorf(start, "unterminated double quote")
}

// variable reads $name, ${name}, $1, $#, $?, $@, $* at l.pos ('$').
func (l *lexer) variable(kind partKind) (part, bool, error) {
	rest := l.src[l.pos+1:]
	if rest == "" {
		return part{}, false, nil
	}
	if rest[0] == '{' {
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return part{}, false, l.errorf(l.line, "unterminated ${")
		}
		name := rest[1:end]
		if strings.ContainsAny(name, "\n\"'$") {
			return part{}, false, l.errorf(l.line, "bad variable name in ${%s}", name)
		}
		l.pos += end + 2
		return part{kind, name}, true, nil
	}
	switch rest[0] {
	case '#', '?', '@', '*':
		l.pos += 2
		return part{kind, rest[:1]}, true, nil
	}
	n := 0
	for n < len(rest) && isVarChar(rest[n]) {
		n++
	}
	if n == 0 {
		return part{}, false, nil
	}
	l.pos += 1 + n
	return part{kind, rest[:n]}, true, nil
}
