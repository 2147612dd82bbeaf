package events

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// GitHub's secret scanning partner program sends leaked tokens as a JSON
// array of {token, type, url, source}, signed with ECDSA P-256 over
// SHA-256 of the raw body (ASN.1 DER, base64) in
// Github-Public-Key-Signature, naming the key in Github-Public-Key-Identifier;
// the keys are published at https://api.github.com/meta/public_keys/secret_scanning.

// Leak report request headers.
const (
	LeakKeyIDHeader     = "Github-Public-Key-Identifier"
	LeakSignatureHeader = "Github-Public-Key-Signature"
)

// MaxLeakReports bounds the tokens of one report.
const MaxLeakReports = 1000

// LeakReport is one reported token.
type LeakReport struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// LeakFeedback is the answer for one token, in GitHub's feedback format
// (the hashed form, so the answer never repeats a key).
type LeakFeedback struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	// Label is true_positive or false_positive.
	Label string `json:"label"`
}

// NewLeakFeedback returns the feedback for a token.
func NewLeakFeedback(r LeakReport, truePositive bool) LeakFeedback {
	sum := sha256.Sum256([]byte(r.Token))
	label := "false_positive"
	if truePositive {
		label = "true_positive"
	}
	return LeakFeedback{TokenHash: hex.EncodeToString(sum[:]), TokenType: r.Type, Label: label}
}

// ParseLeakPublicKey reads an ECDSA P-256 public key (PEM, PKIX).
func ParseLeakPublicKey(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the public key: %w", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve.Params().Name != "P-256" {
		return nil, errors.New("not an ECDSA P-256 public key")
	}
	return ek, nil
}

// ErrLeakSignature is returned for a report that is unsigned, signed with
// an unknown key, or badly signed.
var ErrLeakSignature = errors.New("leak report signature invalid")

// VerifyLeakReport checks the signature of a report's raw body.
func VerifyLeakReport(pub map[string]*ecdsa.PublicKey, keyID, signature string, body []byte) error {
	if keyID == "" || signature == "" {
		return fmt.Errorf("%w: unsigned", ErrLeakSignature)
	}
	k := pub[keyID]
	if k == nil {
		return fmt.Errorf("%w: unknown key identifier", ErrLeakSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) > 128 {
		return fmt.Errorf("%w: bad encoding", ErrLeakSignature)
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(k, digest[:], sig) {
		return fmt.Errorf("%w: does not verify", ErrLeakSignature)
	}
	return nil
}

// ParseLeakReports decodes a report body: a JSON array of at most
// MaxLeakReports objects with string members (unknown members ignored, as
// GitHub may add some).
func ParseLeakReports(body []byte) ([]LeakReport, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var out []LeakReport
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("leak report: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("leak report: data after the array")
	}
	if out == nil {
		return nil, errors.New("leak report: not an array")
	}
	if len(out) > MaxLeakReports {
		return nil, fmt.Errorf("leak report: more than %d tokens", MaxLeakReports)
	}
	for i, r := range out {
		if r.Token == "" || len(r.Token) > 512 || len(r.URL) > 4096 || len(r.Type) > 200 || len(r.Source) > 200 {
			return nil, fmt.Errorf("leak report: entry %d: token missing or a field too long", i)
		}
	}
	return out, nil
}
