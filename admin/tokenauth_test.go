package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// fakeTokens accepts the tokens in m (token → key id, user, tenant).
type fakeTokens map[string][3]string

func (f fakeTokens) VerifyAccessToken(tok string, _ time.Time) (string, string, string, error) {
	v, ok := f[tok]
	if !ok {
		return "", "", "", errors.New("bad token")
	}
	return v[0], v[1], v[2], nil
}

func TestAccessTokenAuthentication(t *testing.T) {
	e := newEnv(t, newFileStore)
	rootKeyID, _ := keys.ParseAccessKey(e.rootKey)
	const good, stranger, otherTenant = "aaaaaaaaaa.bbbbbbbbbbbb.cccccccccc", "dddddddddd.eeeeeeeeeeee.ffffffffff", "gggggggggg.hhhhhhhhhhhh.iiiiiiiiii"
	h := New(Config{Store: e.store, Hasher: keys.NewHasher([]byte("pepper")), Now: e.clk.Now, Tokens: fakeTokens{
		good:        {rootKeyID, e.rootID, "root"},
		stranger:    {rootKeyID, "someone-else", "root"},
		otherTenant: {rootKeyID, e.rootID, "a"},
	}})
	call := func(tok string) int {
		r := httptest.NewRequest(http.MethodGet, "/v1/users?size=1", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		checked(t, h).ServeHTTP(w, r)
		return w.Code
	}
	if c := call(good); c != 200 {
		t.Fatalf("valid token: %d", c)
	}
	for name, tok := range map[string]string{"unknown": "xxxxxxxxxx.yyyyyyyyyyyy.zzzzzzzzzz", "wrong user": stranger, "wrong tenant": otherTenant, "not a JWT": "kg_nope"} {
		if c := call(tok); c != 401 {
			t.Errorf("%s: %d, want 401", name, c)
		}
	}
	// Revoking the key the token came from ends the token at once.
	if _, err := e.store.RevokeKey(t.Context(), e.rootID, rootKeyID, 0, "test"); err != nil {
		t.Fatal(err)
	}
	if c := call(good); c != 401 {
		t.Errorf("token of a revoked key: %d, want 401", c)
	}
	// Without a TokenVerifier, tokens are not accepted at all.
	if c := func() int {
		r := httptest.NewRequest(http.MethodGet, "/v1/users", nil)
		r.Header.Set("Authorization", "Bearer "+good)
		w := httptest.NewRecorder()
		checked(t, e.h).ServeHTTP(w, r)
		return w.Code
	}(); c != 401 {
		t.Errorf("no verifier: %d, want 401", c)
	}
}
