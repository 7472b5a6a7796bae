package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseYAML reads the block-style YAML subset that cloud-init network
// configs are written in (and that podvisor's cloudinit package emits):
// mappings, sequences (also at their key's indentation), "- key: value"
// items, plain and quoted scalars, literal block scalars (|, |-, |+),
// {} and [] and flow lists of scalars.
// Values are map[string]any, []any or string (nil for an empty value).
func parseYAML(src string) (any, error) {
	var ls []yline
	raws := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	for n, raw := range raws {
		trimmed := strings.TrimRight(raw, " \t\r")
		text := strings.TrimLeft(trimmed, " ")
		if text == "" || strings.HasPrefix(text, "#") || text == "---" {
			continue
		}
		if strings.HasPrefix(text, "\t") {
			return nil, fmt.Errorf("line %d: tab indentation is not YAML", n+1)
		}
		ls = append(ls, yline{no: n + 1, indent: len(trimmed) - len(text), text: stripComment(text)})
	}
	if len(ls) == 0 {
		return nil, nil
	}
	if len(ls) == 1 && !isItem(ls[0].text) && !isKey(ls[0].text) {
		// A document that is one scalar, e.g. "{}".
		return scalar(ls[0].text, ls[0].no)
	}
	p := &yparser{ls: ls, raws: raws}
	v, err := p.block(ls[0].indent)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.ls) {
		return nil, fmt.Errorf("line %d: unexpected indentation", p.ls[p.i].no)
	}
	return v, nil
}

type yline struct {
	no, indent int
	text       string
}

type yparser struct {
	ls []yline
	i  int
	// raws are the source lines (block scalars keep blank and # lines).
	raws []string
}

// blockScalar reads a literal block scalar (| with chomping - or +) whose
// indicator ended line no (1-based) under a parent at indent, and moves
// the parser past it.
func (p *yparser) blockScalar(ind string, no, indent int) (string, error) {
	if ind != "|" && ind != "|-" && ind != "|+" {
		return "", fmt.Errorf("line %d: block scalar %q: only |, |- and |+ are supported", no, ind)
	}
	var body []string
	blockIndent := -1
	end := no // index in raws of the first line after the block
	for ; end < len(p.raws); end++ {
		raw := strings.TrimRight(p.raws[end], "\r")
		text := strings.TrimLeft(raw, " ")
		if strings.TrimSpace(raw) == "" {
			body = append(body, "")
			continue
		}
		in := len(raw) - len(text)
		if in <= indent {
			break
		}
		if blockIndent < 0 {
			blockIndent = in
		}
		if in < blockIndent {
			return "", fmt.Errorf("line %d: block scalar line less indented than its first line", end+1)
		}
		body = append(body, raw[blockIndent:])
	}
	// Skip the tokens inside the block.
	for p.i < len(p.ls) && p.ls[p.i].no <= end {
		p.i++
	}
	// Trailing blank lines belong to the block only for chomping.
	trail := 0
	for len(body) > 0 && body[len(body)-1] == "" {
		body = body[:len(body)-1]
		trail++
	}
	out := strings.Join(body, "\n")
	switch {
	case ind == "|-" || len(body) == 0:
	case ind == "|+":
		out += strings.Repeat("\n", trail+1)
	default:
		out += "\n"
	}
	return out, nil
}

func isItem(t string) bool { return t == "-" || strings.HasPrefix(t, "- ") }

func (p *yparser) block(indent int) (any, error) {
	if isItem(p.ls[p.i].text) {
		return p.seq(indent)
	}
	return p.mapping(indent)
}

func (p *yparser) seq(indent int) (any, error) {
	out := []any{}
	for p.i < len(p.ls) && p.ls[p.i].indent == indent && isItem(p.ls[p.i].text) {
		l := p.ls[p.i]
		rest := strings.TrimLeft(strings.TrimPrefix(l.text, "-"), " ")
		switch {
		case rest == "":
			p.i++
			v, err := p.nested(indent, false)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case isItem(rest) || isKey(rest):
			// "- key: value": the item is a block starting in this line.
			inner := indent + (len(l.text) - len(rest))
			p.ls[p.i] = yline{no: l.no, indent: inner, text: rest}
			v, err := p.block(inner)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case strings.HasPrefix(rest, "|") || strings.HasPrefix(rest, ">"):
			p.i++
			v, err := p.blockScalar(rest, l.no, indent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		default:
			v, err := scalar(rest, l.no)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			p.i++
		}
	}
	return out, nil
}

// nested parses the value of a key or item whose text was empty: a deeper
// block, a sequence at the key's own indentation (keys only), or null.
func (p *yparser) nested(indent int, key bool) (any, error) {
	if p.i >= len(p.ls) {
		return nil, nil
	}
	n := p.ls[p.i]
	if n.indent > indent || (key && n.indent == indent && isItem(n.text)) {
		return p.block(n.indent)
	}
	return nil, nil
}

// isKey tells a "key: value" or "key:" line from a scalar.
func isKey(t string) bool {
	k, _, ok := splitKey(t)
	return ok && k != ""
}

func splitKey(t string) (key, value string, ok bool) {
	if t[0] == '"' || t[0] == '\'' {
		end := closingQuote(t)
		if end < 0 || end+1 >= len(t) || t[end+1] != ':' {
			return "", "", false
		}
		k, err := scalar(t[:end+1], 0)
		if err != nil {
			return "", "", false
		}
		ks, _ := k.(string)
		return ks, strings.TrimSpace(t[end+2:]), true
	}
	if i := strings.Index(t, ": "); i >= 0 {
		return t[:i], strings.TrimSpace(t[i+2:]), true
	}
	if strings.HasSuffix(t, ":") {
		return t[:len(t)-1], "", true
	}
	return "", "", false
}

func (p *yparser) mapping(indent int) (any, error) {
	out := map[string]any{}
	for p.i < len(p.ls) && p.ls[p.i].indent == indent && !isItem(p.ls[p.i].text) {
		l := p.ls[p.i]
		k, v, ok := splitKey(l.text)
		if !ok {
			return nil, fmt.Errorf("line %d: want \"key: value\", got %q", l.no, l.text)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("line %d: key %q repeated", l.no, k)
		}
		p.i++
		if v == "" {
			val, err := p.nested(indent, true)
			if err != nil {
				return nil, err
			}
			out[k] = val
			continue
		}
		if strings.HasPrefix(v, "|") || strings.HasPrefix(v, ">") {
			bs, err := p.blockScalar(v, l.no, indent)
			if err != nil {
				return nil, err
			}
			out[k] = bs
			continue
		}
		val, err := scalar(v, l.no)
		if err != nil {
			return nil, err
		}
		out[k] = val
	}
	return out, nil
}

func closingQuote(t string) int {
	q := t[0]
	for i := 1; i < len(t); i++ {
		switch {
		case q == '\'' && t[i] == '\'':
			if i+1 < len(t) && t[i+1] == '\'' {
				i++
				continue
			}
			return i
		case q == '"' && t[i] == '\\':
			i++
		case q == '"' && t[i] == '"':
			return i
		}
	}
	return -1
}

func scalar(t string, line int) (any, error) {
	switch {
	case t == "":
		return nil, nil
	case t == "{}":
		return map[string]any{}, nil
	case t == "[]":
		return []any{}, nil
	case t == "~" || t == "null":
		return nil, nil
	case strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]"):
		var out []any
		for _, part := range strings.Split(t[1:len(t)-1], ",") {
			v, err := scalar(strings.TrimSpace(part), line)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case t[0] == '\'':
		if closingQuote(t) != len(t)-1 {
			return nil, fmt.Errorf("line %d: unterminated quote in %s", line, t)
		}
		return strings.ReplaceAll(t[1:len(t)-1], "''", "'"), nil
	case t[0] == '"':
		s, err := strconv.Unquote(t)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad double-quoted string %s: %v", line, t, err)
		}
		return s, nil
	case t[0] == '{' || t[0] == '&' || t[0] == '*' || t[0] == '|' || t[0] == '>':
		return nil, fmt.Errorf("line %d: %q: flow mappings, anchors and block scalars are not supported", line, t)
	}
	return t, nil
}

// stripComment drops a " #" comment outside quotes.
func stripComment(t string) string {
	var q byte
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '\'' || c == '"':
			q = c
		case c == '#' && i > 0 && t[i-1] == ' ':
			return strings.TrimRight(t[:i], " ")
		}
	}
	return t
}
