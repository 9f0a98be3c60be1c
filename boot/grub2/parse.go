package grub2

// The AST is small on purpose: GRUB's script language has commands, if,
// for/while/until loops, function definitions and the two menu keywords.

type node interface{ nodeLine() int }

type word = []part

type cmdNode struct {
	line  int
	words []word
}

type ifNode struct {
	line   int
	conds  [][]node // if/elif conditions
	bodies [][]node
	els    []node
}

type funcNode struct {
	line int
	name string
	body []node
}

type menuNode struct {
	line    int
	submenu bool
	args    []word
	body    []node
}

type forNode struct {
	line  int
	name  string
	items []word
	body  []node
}

type loopNode struct { // while/until
	line int
	kw   string
	cond []node
	body []node
}

func (n *cmdNode) nodeLine() int  { return n.line }
func (n *ifNode) nodeLine() int   { return n.line }
func (n *funcNode) nodeLine() int { return n.line }
func (n *menuNode) nodeLine() int { return n.line }
func (n *forNode) nodeLine() int  { return n.line }
func (n *loopNode) nodeLine() int { return n.line }

// maxNesting bounds block nesting so hostile input cannot exhaust the stack.
const maxNesting = 64

type parser struct {
	lx    *lexer
	tok   token
	depth int
}

func parseScript(file, src string) ([]node, error) {
	p := &parser{lx: &lexer{file: file, src: src, line: 1}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	nodes, err := p.list(nil, false)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.lx.errorf(p.tok.line, "unexpected %s", p.describe())
	}
	return nodes, nil
}

func (p *parser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) describe() string {
	switch p.tok.kind {
	case tRBrace:
		return "}"
	case tLBrace:
		return "{"
	case tEOF:
		return "end of file"
	}
	if k := p.tok.keyword(); k != "" {
		return "\"" + k + "\""
	}
	return "word"
}

// list parses commands until a command starting with one of stop (left
// unconsumed), a "}" when inBrace, or EOF.
func (p *parser) list(stop map[string]bool, inBrace bool) ([]node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxNesting {
		return nil, p.lx.errorf(p.tok.line, "blocks nested deeper than %d", maxNesting)
	}
	var out []node
	for {
		switch p.tok.kind {
		case tEOF:
			return out, nil
		case tNewline, tSemi:
			if err := p.advance(); err != nil {
				return nil, err
			}
			continue
		case tRBrace:
			if inBrace {
				return out, nil
			}
			return nil, p.lx.errorf(p.tok.line, "unexpected }")
		case tLBrace:
			return nil, p.lx.errorf(p.tok.line, "unexpected {")
		}
		if kw := p.tok.keyword(); stop[kw] {
			return out, nil
		}
		n, err := p.command()
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
}

func (p *parser) expectKeyword(kw string, opener string, line int) error {
	if p.tok.keyword() != kw {
		return p.lx.errorf(line, "%s without matching %q (found %s at line %d)", opener, kw, p.describe(), p.tok.line)
	}
	return p.advance()
}

func (p *parser) command() (node, error) {
	line := p.tok.line
	switch p.tok.keyword() {
	case "if":
		return p.ifBlock()
	case "function":
		if p.depth > 1 {
			// parser.y: "statement: command | function" at the top of a
			// script only; blocks (entry bodies, if, loops, functions)
			// hold commands. GRUB reports a syntax error and drops the
			// enclosing menu entry (checked with grub-emu).
			return nil, p.lx.errorf(line, "function defined inside a block: a GRUB syntax error (GRUB takes function definitions only at the top of a script)")
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tWord {
			return nil, p.lx.errorf(line, "function without a name")
		}
		name := p.tok.keyword()
		if name == "" {
			return nil, p.lx.errorf(line, "function name must be a plain word")
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		body, err := p.braceBody("function "+name, line)
		if err != nil {
			return nil, err
		}
		return &funcNode{line: line, name: name, body: body}, nil
	case "menuentry", "submenu":
		sub := p.tok.keyword() == "submenu"
		kw := p.tok.keyword()
		if err := p.advance(); err != nil {
			return nil, err
		}
		var args []word
		for p.tok.kind == tWord {
			args = append(args, p.tok.parts)
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
		body, err := p.braceBody(kw, line)
		if err != nil {
			return nil, err
		}
		return &menuNode{line: line, submenu: sub, args: args, body: body}, nil
	case "for":
		return p.forBlock()
	case "while", "until":
		return p.loop()
	case "then", "else", "elif", "fi", "do", "done":
		return nil, p.lx.errorf(line, "unexpected %q", p.tok.keyword())
	}
	c := &cmdNode{line: line}
	for p.tok.kind == tWord {
		c.words = append(c.words, p.tok.parts)
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if p.tok.kind == tLBrace {
		return nil, p.lx.errorf(p.tok.line, "unexpected {")
	}
	return c, nil
}

func (p *parser) braceBody(what string, line int) ([]node, error) {
	for p.tok.kind == tNewline {
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if p.tok.kind != tLBrace {
		return nil, p.lx.errorf(line, "%s: expected {", what)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	body, err := p.list(nil, true)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tRBrace {
		return nil, p.lx.errorf(line, "%s: missing closing }", what)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return body, nil
}

var (
	stopThen = map[string]bool{"then": true}
	stopElse = map[string]bool{"elif": true, "else": true, "fi": true}
	stopFi   = map[string]bool{"fi": true}
	stopDo   = map[string]bool{"do": true}
	stopDone = map[string]bool{"done": true}
)

func (p *parser) ifBlock() (node, error) {
	n := &ifNode{line: p.tok.line}
	for {
		// at "if" or "elif"
		if err := p.advance(); err != nil {
			return nil, err
		}
		cond, err := p.list(stopThen, false)
		if err != nil {
			return nil, err
		}
		if err := p.expectKeyword("then", "if", n.line); err != nil {
			return nil, err
		}
		body, err := p.list(stopElse, false)
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch p.tok.keyword() {
		case "elif":
			continue
		case "else":
			if err := p.advance(); err != nil {
				return nil, err
			}
			els, err := p.list(stopFi, false)
			if err != nil {
				return nil, err
			}
			n.els = els
		}
		if err := p.expectKeyword("fi", "if", n.line); err != nil {
			return nil, err
		}
		return n, nil
	}
}

func (p *parser) forBlock() (node, error) {
	n := &forNode{line: p.tok.line}
	if err := p.advance(); err != nil {
		return nil, err
	}
	n.name = p.tok.keyword()
	if n.name == "" {
		return nil, p.lx.errorf(n.line, "for without a variable name")
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("in", "for", n.line); err != nil {
		return nil, err
	}
	for p.tok.kind == tWord {
		n.items = append(n.items, p.tok.parts)
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if _, err := p.list(stopDo, false); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("do", "for", n.line); err != nil {
		return nil, err
	}
	body, err := p.list(stopDone, false)
	if err != nil {
		return nil, err
	}
	n.body = body
	if err := p.expectKeyword("done", "for", n.line); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) loop() (node, error) {
	n := &loopNode{line: p.tok.line, kw: p.tok.keyword()}
	if err := p.advance(); err != nil {
		return nil, err
	}
	var err error
	if n.cond, err = p.list(stopDo, false); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("do", n.kw, n.line); err != nil {
		return nil, err
	}
	if n.body, err = p.list(stopDone, false); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("done", n.kw, n.line); err != nil {
		return nil, err
	}
	return n, nil
}
