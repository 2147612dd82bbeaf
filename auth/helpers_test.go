package auth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

var twoSecrets = []Secret{{ID: "sa", Value: secretA}, {ID: "sb", Value: secretB}}

func newReq(method, target, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return httptest.NewRequest(method, target, rd)
}

// detectVerify runs the handler's sequence: Detect, then Verify.
func detectVerify(r *http.Request, secrets []Secret, opt VerifyOptions) (Credential, Verified, error) {
	var d Detector
	c, err := d.Detect(r)
	if err != nil {
		return c, Verified{}, err
	}
	if opt.Now.IsZero() {
		opt.Now = testNow
	}
	v, err := c.Verify(r, secrets, opt)
	return c, v, err
}

func wantOK(t *testing.T, r *http.Request, secrets []Secret, opt VerifyOptions, scheme Scheme, user, secretID string) Verified {
	t.Helper()
	c, v, err := detectVerify(r, secrets, opt)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Scheme != scheme || c.UserID != user {
		t.Fatalf("credential = %v/%q, want %v/%q", c.Scheme, c.UserID, scheme, user)
	}
	if v.SecretID != secretID {
		t.Fatalf("secret = %q, want %q", v.SecretID, secretID)
	}
	if v.ReplayKey == ([32]byte{}) {
		t.Fatal("empty replay key")
	}
	return v
}

func wantErr(t *testing.T, r *http.Request, secrets []Secret, opt VerifyOptions, want error) {
	t.Helper()
	_, _, err := detectVerify(r, secrets, opt)
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	for _, s := range []string{secretA, secretB, secretC} {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Fatal("error message leaks a secret")
		}
	}
}
