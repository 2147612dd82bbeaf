package module_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// verifyAnswer is the body of POST /v1/verify.
type verifyAnswer struct {
	Valid bool   `json:"valid"`
	Code  string `json:"code"`
	User  *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"user"`
	Tenant        string   `json:"tenant"`
	Role          string   `json:"role"`
	CustomerRoles []string `json:"customerRoles"`
	KeyID         string   `json:"keyId"`
	RateLimit     *struct {
		Limit     int64 `json:"limit"`
		Remaining int64 `json:"remaining"`
		Reset     int64 `json:"reset"`
	} `json:"ratelimit"`
}

// verify calls POST /v1/verify with the Go net/http client as callerKey.
func (e *env) verify(callerKey string, body map[string]any, want int) (verifyAnswer, string) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.adminURL+"/v1/verify", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+callerKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	checkAdminAnswer(e.t, req, resp, data)
	if resp.StatusCode != want {
		e.t.Fatalf("verify: %d, want %d: %s", resp.StatusCode, want, data)
	}
	var a verifyAnswer
	if want == http.StatusOK {
		if err := json.Unmarshal(data, &a); err != nil {
			e.t.Fatalf("verify answer %s: %v", data, err)
		}
	}
	return a, string(data)
}

// TestVerifyAPI: POST /v1/verify answers like the gateway decides, for
// keys and tokens, with the limit, revocation and caller rules.
func TestVerifyAPI(t *testing.T) {
	e := startTokenEnv(t, "")
	userID, keyID, key := e.newUserKey("acme", "svc-client", time.Now().Add(time.Hour))

	a, _ := e.verify(e.adminKey, map[string]any{"key": key}, http.StatusOK)
	if !a.Valid || a.Code != "VALID" || a.User == nil || a.User.ID != userID || a.Tenant != "acme" || a.Role != "MEMBER" || a.KeyID != keyID {
		t.Fatalf("valid key: %+v", a)
	}

	// Unknown, wrong and malformed keys get one and the same answer.
	_, unknown := e.verify(e.adminKey, map[string]any{"key": "kg_aaaaaaaaaaaaaaaa_" + strings.Repeat("a", 52)}, http.StatusOK)
	_, wrong := e.verify(e.adminKey, map[string]any{"key": key[:len(key)-4] + "aaaa"}, http.StatusOK)
	_, junk := e.verify(e.adminKey, map[string]any{"key": "nonsense"}, http.StatusOK)
	if unknown != wrong || wrong != junk || !strings.Contains(wrong, `"valid":false`) || !strings.Contains(wrong, `"code":"INVALID"`) {
		t.Fatalf("invalid answers differ or leak:\n%s\n%s\n%s", unknown, wrong, junk)
	}

	// Another tenant: FORBIDDEN (the key is valid, in acme only).
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "beta"}, http.StatusCreated)
	if a, _ := e.verify(e.adminKey, map[string]any{"key": key, "tenant": "beta"}, http.StatusOK); a.Valid || a.Code != "FORBIDDEN" {
		t.Fatalf("key of another tenant: %+v", a)
	}

	// Access tokens.
	tok := e.fetchToken(e.adminKey)
	if a, _ := e.verify(e.adminKey, map[string]any{"token": tok}, http.StatusOK); !a.Valid || a.User == nil || a.User.ID != e.adminID {
		t.Fatalf("token: %+v", a)
	}
	if a, _ := e.verify(e.adminKey, map[string]any{"token": tok + "x"}, http.StatusOK); a.Valid || a.Code != "INVALID" {
		t.Fatalf("bad token: %+v", a)
	}

	// The request limit, shared with the gateway's count.
	e.api(http.MethodPatch, "/v1/users/"+userID, map[string]any{"requestLimit": 2}, http.StatusOK)
	for i, want := range []string{"VALID", "VALID", "RATE_LIMITED"} {
		a, _ := e.verify(e.adminKey, map[string]any{"key": key}, http.StatusOK)
		if a.Code != want || a.RateLimit == nil || a.RateLimit.Limit != 2 {
			t.Fatalf("call %d: %+v (ratelimit %+v), want %s", i+1, a, a.RateLimit, want)
		}
		if want == "RATE_LIMITED" && (a.Valid || a.RateLimit.Remaining != 0 || a.RateLimit.Reset <= 0 || a.RateLimit.Reset > 120) {
			t.Fatalf("limited: %+v %+v", a, a.RateLimit)
		}
	}
	if a, _ := e.verify(e.adminKey, map[string]any{"key": key, "consume": 0}, http.StatusOK); !a.Valid || a.RateLimit != nil {
		t.Fatalf("consume 0 must check only: %+v", a)
	}
	if st := e.bearer("/x", key); st != http.StatusTooManyRequests {
		t.Fatalf("gateway after the verify calls: %d, want 429 (one count)", st)
	}

	// Callers: a plain member's key may not verify (not even itself); with
	// the customer role VERIFIER it may, in its own tenant only.
	_, _, memberKey := e.newUserKey("acme", "plain", time.Now().Add(time.Hour))
	e.verify(memberKey, map[string]any{"key": memberKey}, http.StatusForbidden)
	verifierID, _, verifierKey := e.newUserKey("acme", "checker", time.Now().Add(time.Hour))
	e.api(http.MethodPut, "/v1/users/"+verifierID+"/roles/VERIFIER", nil, http.StatusOK)
	if a, _ := e.verify(verifierKey, map[string]any{"key": memberKey}, http.StatusOK); !a.Valid {
		t.Fatalf("VERIFIER caller: %+v", a)
	}
	e.verify(verifierKey, map[string]any{"key": memberKey, "tenant": "beta"}, http.StatusForbidden)
	e.verify("kg_nonsense", map[string]any{"key": memberKey}, http.StatusUnauthorized)
	e.verify(e.adminKey, map[string]any{"key": key, "token": tok}, http.StatusBadRequest)
	e.verify(e.adminKey, map[string]any{"key": key, "consume": 5}, http.StatusBadRequest)

	// Revocation applies at once.
	e.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK)
	if a, _ := e.verify(e.adminKey, map[string]any{"key": key, "consume": 0}, http.StatusOK); a.Valid || a.Code != "INVALID" {
		t.Fatalf("revoked key: %+v", a)
	}

	// curl, as the README shows it.
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-s", "-H", "Authorization: Bearer "+e.adminKey, "-H", "Content-Type: application/json",
			e.adminURL+"/v1/verify", "-d", `{"key":"`+memberKey+`","consume":0}`).Output()
		if err != nil || !strings.Contains(string(out), `"valid":true`) || !strings.Contains(string(out), `"code":"VALID"`) {
			t.Fatalf("curl: %v %s", err, out)
		}
	}
}

// TestVerifyForbiddenNoIdentity: a tenant admin verifying a key of another
// tenant learns that it is FORBIDDEN there, not whose it is (issue 23: the
// answer carried the other tenant's user id, name, type and key id).
func TestVerifyForbiddenNoIdentity(t *testing.T) {
	e := startTokenEnv(t, "")
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "beta"}, http.StatusCreated)
	betaUser, betaKeyID, betaKey := e.newUserKey("beta", "beta-secret-service", time.Now().Add(time.Hour))
	adminID, _, adminKey := e.newUserKey("acme", "acme-admin", time.Now().Add(time.Hour))
	e.api(http.MethodPost, "/v1/permissions", map[string]any{
		"user": map[string]any{"id": adminID}, "workspace": map[string]any{"id": "acme"},
		"role": "ADMIN", "status": "ACTIVE",
	}, http.StatusOK)

	a, raw := e.verify(adminKey, map[string]any{"key": betaKey, "consume": 0}, http.StatusOK)
	if a.Valid || a.Code != "FORBIDDEN" || a.Tenant != "acme" {
		t.Fatalf("key of another tenant: %+v", a)
	}
	if a.User != nil || a.KeyID != "" || a.Role != "" {
		t.Fatalf("FORBIDDEN answer names who holds the key: %s", raw)
	}
	for _, leak := range []string{betaUser, betaKeyID, "beta-secret-service", "TECHNICAL"} {
		if strings.Contains(raw, leak) {
			t.Fatalf("FORBIDDEN answer contains %q: %s", leak, raw)
		}
	}
	// The superadmin's answer for the same key is the same.
	if _, raw2 := e.verify(e.adminKey, map[string]any{"key": betaKey, "tenant": "acme", "consume": 0}, http.StatusOK); raw2 != raw {
		t.Fatalf("superadmin: %s, tenant admin: %s", raw2, raw)
	}
	// In its own tenant the key is VALID, with its identity.
	if a, _ := e.verify(e.adminKey, map[string]any{"key": betaKey, "tenant": "beta", "consume": 0}, http.StatusOK); !a.Valid || a.User == nil || a.User.ID != betaUser || a.KeyID != betaKeyID {
		t.Fatalf("in beta: %+v", a)
	}
}
