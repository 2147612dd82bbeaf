package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// rfc9421Sig is the selected signature of an RFC 9421 request.
type rfc9421Sig struct {
	label      string
	components []sfInner
	params     []sfParam
	keyID      string
	created    int64
	expires    int64 // 0 when absent
	hasNonce   bool
	sig        []byte
}

// combinedHeader joins the field lines of a structured header, capped.
func combinedHeader(h http.Header, name string) (string, error) {
	vs := h.Values(name)
	if len(vs) == 1 {
		if len(vs[0]) > maxHeaderLen {
			return "", fmt.Errorf("header %s too long: %w", name, ErrMalformed)
		}
		return vs[0], nil
	}
	total := 0
	for _, v := range vs {
		total += len(v) + 2
	}
	if total > maxHeaderLen {
		return "", fmt.Errorf("header %s too long: %w", name, ErrMalformed)
	}
	return strings.Join(vs, ", "), nil
}

// parseRFC9421 selects the first signature of Signature-Input that has a
// keyid and a matching Signature member.
func parseRFC9421(h http.Header) (Credential, error) {
	in, err := combinedHeader(h, "Signature-Input")
	if err != nil {
		return Credential{}, err
	}
	sv, err := combinedHeader(h, "Signature")
	if err != nil {
		return Credential{}, err
	}
	inputs, err := parseSFDictionary(in)
	if err != nil {
		return Credential{}, fmt.Errorf("signature-input: %w", ErrMalformed)
	}
	sigs, err := parseSFDictionary(sv)
	if err != nil {
		return Credential{}, fmt.Errorf("signature: %w", ErrMalformed)
	}
	for _, m := range inputs {
		if !m.isList {
			continue
		}
		var sigItem *sfItem
		for i := range sigs {
			if sigs[i].key == m.key && !sigs[i].isList && sigs[i].item.kind == sfBytes {
				sigItem = &sigs[i].item
			}
		}
		if sigItem == nil {
			continue
		}
		s := &rfc9421Sig{label: m.key, components: m.list, params: m.params}
		var haveCreated bool
		for _, p := range m.params {
			switch p.key {
			case "keyid":
				if p.val.kind != sfString {
					return Credential{}, fmt.Errorf("signature-input: bad keyid: %w", ErrMalformed)
				}
				s.keyID = p.val.s
			case "created", "expires":
				if p.val.kind != sfInteger || p.val.n <= 0 {
					return Credential{}, fmt.Errorf("signature-input: bad %s: %w", p.key, ErrMalformed)
				}
				if p.key == "created" {
					s.created, haveCreated = p.val.n, true
				} else {
					s.expires = p.val.n
				}
			case "nonce":
				if p.val.kind != sfString {
					return Credential{}, fmt.Errorf("signature-input: bad nonce: %w", ErrMalformed)
				}
				s.hasNonce = p.val.s != ""
			case "alg":
				if p.val.kind != sfString || p.val.s != "hmac-sha256" {
					return Credential{}, fmt.Errorf("signature-input: unsupported alg: %w", ErrMalformed)
				}
			}
		}
		if s.keyID == "" || len(s.keyID) > maxUserIDLen {
			continue
		}
		if !haveCreated {
			return Credential{}, fmt.Errorf("signature-input: no created: %w", ErrMalformed)
		}
		for _, c := range s.components {
			if c.item.kind != sfString || c.item.s == "" || c.item.s != strings.ToLower(c.item.s) || len(c.params) > 0 {
				return Credential{}, fmt.Errorf("signature-input: unsupported component: %w", ErrMalformed)
			}
			switch name := c.item.s; {
			case name[0] != '@':
			case name == "@method", name == "@target-uri", name == "@authority", name == "@scheme",
				name == "@request-target", name == "@path", name == "@query":
			default:
				return Credential{}, fmt.Errorf("signature-input: unsupported component: %w", ErrMalformed)
			}
		}
		b, err := base64.StdEncoding.Strict().DecodeString(sigItem.s)
		if err != nil || len(b) != sha256.Size {
			return Credential{}, fmt.Errorf("signature: bad encoding: %w", ErrMalformed)
		}
		s.sig = b
		return Credential{Scheme: HTTPSignature, UserID: s.keyID, loc: inSignatureHeaders, sig: s}, nil
	}
	return Credential{}, fmt.Errorf("signature-input: no usable signature: %w", ErrMalformed)
}

func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// authority returns the lower-cased Host without the scheme's default port.
func authority(r *http.Request, scheme string) string {
	h := strings.ToLower(r.Host)
	if scheme == "https" {
		h = strings.TrimSuffix(h, ":443")
	} else {
		h = strings.TrimSuffix(h, ":80")
	}
	return h
}

// base builds the RFC 9421 signature base into dst.
func (s *rfc9421Sig) base(dst []byte, r *http.Request, target string) ([]byte, bool, error) {
	coversDigest := false
	path, query, _ := splitTarget(target)
	for _, c := range s.components {
		name := c.item.s
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `": `...)
		switch name {
		case "@method":
			dst = append(dst, r.Method...)
		case "@target-uri":
			sc := requestScheme(r)
			dst = append(dst, sc...)
			dst = append(dst, "://"...)
			dst = append(dst, authority(r, sc)...)
			dst = append(dst, target...)
		case "@authority":
			dst = append(dst, authority(r, requestScheme(r))...)
		case "@scheme":
			dst = append(dst, requestScheme(r)...)
		case "@request-target":
			dst = append(dst, target...)
		case "@path":
			if path == "" {
				path = "/"
			}
			dst = append(dst, path...)
		case "@query":
			dst = append(dst, '?')
			dst = append(dst, query...)
		default:
			var ok bool
			if dst, ok = appendFieldValue(dst, r, name); !ok {
				return dst, false, fmt.Errorf("covered component %s missing: %w", name, ErrMalformed)
			}
			if name == "content-digest" {
				coversDigest = true
			}
		}
		dst = append(dst, '\n')
	}
	dst = append(dst, `"@signature-params": `...)
	dst = appendSFInnerList(dst, s.components, s.params)
	return dst, coversDigest, nil
}

func (s *rfc9421Sig) verify(r *http.Request, secrets []Secret, e *env) (Verified, error) {
	if err := check9421Coverage(s, r, e); err != nil {
		return Verified{}, err
	}
	ts := time.Unix(s.created, 0)
	if err := checkFresh(ts, e.now, e.skew); err != nil {
		return Verified{}, fmt.Errorf("http signature: %w", err)
	}
	if s.expires != 0 && e.now.After(time.Unix(s.expires, 0)) {
		return Verified{}, fmt.Errorf("http signature: expired: %w", ErrStale)
	}
	bp := getBuf()
	defer putBuf(bp)
	base, coversDigest, err := s.base((*bp)[:0], r, e.target)
	*bp = base
	if err != nil {
		return Verified{}, fmt.Errorf("http signature: %w", err)
	}
	i, ok := matchHMAC(sha256.New, secrets, base, s.sig)
	if !ok {
		return Verified{}, fmt.Errorf("http signature: %w", ErrBadSignature)
	}
	if coversDigest {
		if err := checkContentDigest(r, e); err != nil {
			return Verified{}, fmt.Errorf("http signature: %w", err)
		}
	}
	return Verified{SecretID: secrets[i].ID, Timestamp: ts, HasNonce: s.hasNonce, ReplayKey: replayKey(HTTPSignature, s.sig)}, nil
}

// checkContentDigest verifies RFC 9530 Content-Digest against the body:
// every sha-256 / sha-512 member must match, and one must exist.
func checkContentDigest(r *http.Request, e *env) error {
	if e.noBody {
		return ErrNoBody
	}
	v, err := combinedHeader(r.Header, "Content-Digest")
	if err != nil {
		return err
	}
	ms, err := parseSFDictionary(v)
	if err != nil {
		return fmt.Errorf("content-digest: %w", ErrMalformed)
	}
	body, err := readBody(r, e)
	if err != nil {
		return err
	}
	known := 0
	for _, m := range ms {
		sum, ok := sumBody(m.key, body)
		if !ok {
			continue
		}
		if m.isList || m.item.kind != sfBytes {
			return fmt.Errorf("content-digest: %w", ErrMalformed)
		}
		if err := matchDigest("content-digest", m.item.s, sum); err != nil {
			return err
		}
		known++
	}
	if known == 0 {
		return fmt.Errorf("content-digest: no supported algorithm: %w", ErrMalformed)
	}
	return nil
}
