package module_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConsoleSessionOnlyForTheConsole (seed 002): a console session token
// works at the admin API and nowhere else: the gateway refuses it like any
// unknown credential, and revoking the key it came from ends it.
func TestConsoleSessionOnlyForTheConsole(t *testing.T) {
	e := startEnv(t, "", "")
	userID, keyID, key := e.newUserKey("acme", "operator", time.Now().Add(24*time.Hour))
	e.api(http.MethodPut, "/v1/users/"+userID+"/roles/ADMIN", nil, http.StatusOK)
	req, _ := http.NewRequest(http.MethodPost, e.adminURL+"/v1/console/session", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	tok := env.Data.Token
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(tok, "kgs_") {
		t.Fatalf("sign-in: %d %q", resp.StatusCode, tok)
	}
	adminGet := func(cred string) int {
		req, _ := http.NewRequest(http.MethodGet, e.adminURL+"/v1/users/"+userID, nil)
		req.Header.Set("Authorization", "Bearer "+cred)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := adminGet(tok); got != http.StatusOK {
		t.Fatalf("admin API with the session: %d", got)
	}
	expectProblem(t, e.get("/x", map[string]string{"Authorization": "Bearer " + tok}), http.StatusUnauthorized)
	expectProblem(t, e.get("/x", map[string]string{"X-Api-Key": tok}), http.StatusUnauthorized)
	e.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK)
	if got := adminGet(tok); got != http.StatusUnauthorized {
		t.Fatalf("session after its key was revoked: %d", got)
	}
}
