package auth

import (
	"errors"
	"strconv"
)

// A minimal RFC 8941 structured-field parser and serializer: enough for
// Signature-Input, Signature and Content-Digest.

var errSF = errors.New("structured field syntax")

type sfKind uint8

const (
	sfInteger sfKind = iota + 1
	sfDecimal
	sfString
	sfToken
	sfBytes // s holds the base64 text
	sfBool
)

type sfItem struct {
	kind sfKind
	s    string
	n    int64
	b    bool
}

type sfParam struct {
	key string
	val sfItem
}

type sfInner struct {
	item   sfItem
	params []sfParam
}

// sfMember is one dictionary member: an item or an inner list, with parameters.
type sfMember struct {
	key    string
	isList bool
	item   sfItem
	list   []sfInner
	params []sfParam
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) eof() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *sfParser) skipSP() {
	for !p.eof() && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool   { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isTChar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func (p *sfParser) key() (string, error) {
	start := p.i
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return "", errSF
	}
	for !p.eof() {
		c := p.s[p.i]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.i++
	}
	return p.s[start:p.i], nil
}

func (p *sfParser) bareItem() (sfItem, error) {
	c := p.peek()
	switch {
	case c == '-' || isDigit(c):
		start := p.i
		if c == '-' {
			p.i++
		}
		dot := false
		for !p.eof() {
			c := p.s[p.i]
			if c == '.' && !dot {
				dot = true
			} else if !isDigit(c) {
				break
			}
			p.i++
		}
		num := p.s[start:p.i]
		if dot {
			if _, err := strconv.ParseFloat(num, 64); err != nil || len(num) > 17 {
				return sfItem{}, errSF
			}
			return sfItem{kind: sfDecimal, s: num}, nil
		}
		if len(num) > 16 || num == "-" {
			return sfItem{}, errSF
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return sfItem{}, errSF
		}
		return sfItem{kind: sfInteger, n: n, s: num}, nil
	case c == '"':
		p.i++
		var out []byte
		start := p.i
		for {
			if p.eof() {
				return sfItem{}, errSF
			}
			c := p.s[p.i]
			switch {
			case c == '\\':
				if out == nil {
					out = append(make([]byte, 0, 64), p.s[start:p.i]...)
				}
				p.i++
				if p.eof() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
					return sfItem{}, errSF
				}
				out = append(out, p.s[p.i])
				p.i++
			case c == '"':
				p.i++
				if out != nil {
					return sfItem{kind: sfString, s: string(out)}, nil
				}
				return sfItem{kind: sfString, s: p.s[start : p.i-1]}, nil
			case c < 0x20 || c > 0x7e:
				return sfItem{}, errSF
			default:
				if out != nil {
					out = append(out, c)
				}
				p.i++
			}
		}
	case c == '*' || isAlpha(c):
		start := p.i
		for !p.eof() && (isTChar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return sfItem{kind: sfToken, s: p.s[start:p.i]}, nil
	case c == ':':
		p.i++
		start := p.i
		for !p.eof() && p.s[p.i] != ':' {
			c := p.s[p.i]
			if !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=' {
				return sfItem{}, errSF
			}
			p.i++
		}
		if p.eof() {
			return sfItem{}, errSF
		}
		p.i++
		return sfItem{kind: sfBytes, s: p.s[start : p.i-1]}, nil
	case c == '?':
		p.i++
		switch p.peek() {
		case '0':
			p.i++
			return sfItem{kind: sfBool, b: false}, nil
		case '1':
			p.i++
			return sfItem{kind: sfBool, b: true}, nil
		}
	}
	return sfItem{}, errSF
}

func (p *sfParser) params() ([]sfParam, error) {
	var ps []sfParam
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		v := sfItem{kind: sfBool, b: true}
		if p.peek() == '=' {
			p.i++
			if v, err = p.bareItem(); err != nil {
				return nil, err
			}
		}
		replaced := false
		for j := range ps {
			if ps[j].key == k {
				ps[j].val, replaced = v, true
			}
		}
		if !replaced {
			if len(ps) >= maxCovered {
				return nil, errSF
			}
			ps = append(ps, sfParam{key: k, val: v})
		}
	}
	return ps, nil
}

func (p *sfParser) innerList() ([]sfInner, error) {
	if p.peek() != '(' {
		return nil, errSF
	}
	p.i++
	var items []sfInner
	for {
		p.skipSP()
		if p.peek() == ')' {
			p.i++
			return items, nil
		}
		it, err := p.bareItem()
		if err != nil {
			return nil, err
		}
		ps, err := p.params()
		if err != nil {
			return nil, err
		}
		if len(items) >= maxCovered {
			return nil, errSF
		}
		items = append(items, sfInner{item: it, params: ps})
		if c := p.peek(); c != ' ' && c != ')' {
			return nil, errSF
		}
	}
}

// parseSFDictionary parses a Dictionary field value.
func parseSFDictionary(s string) ([]sfMember, error) {
	p := &sfParser{s: s}
	p.skipSP()
	var ms []sfMember
	for !p.eof() {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		m := sfMember{key: k, item: sfItem{kind: sfBool, b: true}}
		if p.peek() == '=' {
			p.i++
			if p.peek() == '(' {
				m.isList = true
				if m.list, err = p.innerList(); err != nil {
					return nil, err
				}
			} else if m.item, err = p.bareItem(); err != nil {
				return nil, err
			}
		}
		if m.params, err = p.params(); err != nil {
			return nil, err
		}
		replaced := false
		for j := range ms {
			if ms[j].key == k {
				ms[j], replaced = m, true
			}
		}
		if !replaced {
			if len(ms) >= maxCovered {
				return nil, errSF
			}
			ms = append(ms, m)
		}
		p.skipOWS()
		if p.eof() {
			break
		}
		if p.peek() != ',' {
			return nil, errSF
		}
		p.i++
		p.skipOWS()
		if p.eof() {
			return nil, errSF
		}
	}
	return ms, nil
}

func appendSFItem(dst []byte, it sfItem) []byte {
	switch it.kind {
	case sfInteger:
		return strconv.AppendInt(dst, it.n, 10)
	case sfDecimal, sfToken:
		return append(dst, it.s...)
	case sfString:
		dst = append(dst, '"')
		for i := 0; i < len(it.s); i++ {
			if c := it.s[i]; c == '"' || c == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, it.s[i])
		}
		return append(dst, '"')
	case sfBytes:
		dst = append(dst, ':')
		dst = append(dst, it.s...)
		return append(dst, ':')
	case sfBool:
		if it.b {
			return append(dst, "?1"...)
		}
		return append(dst, "?0"...)
	}
	return dst
}

func appendSFParams(dst []byte, ps []sfParam) []byte {
	for _, p := range ps {
		dst = append(dst, ';')
		dst = append(dst, p.key...)
		if p.val.kind == sfBool && p.val.b {
			continue
		}
		dst = append(dst, '=')
		dst = appendSFItem(dst, p.val)
	}
	return dst
}

func appendSFInnerList(dst []byte, items []sfInner, ps []sfParam) []byte {
	dst = append(dst, '(')
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = appendSFItem(dst, it.item)
		dst = appendSFParams(dst, it.params)
	}
	dst = append(dst, ')')
	return appendSFParams(dst, ps)
}
