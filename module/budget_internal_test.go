package module

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keys"
)

// newSignedApp is newBenchApp with an APPLICATION user "app" of tenant
// acme holding one signing secret, which it returns.
func newSignedApp(t *testing.T) (*App, string, string) {
	t.Helper()
	app, _ := newBenchApp(t)
	ctx := context.Background()
	st := app.shared.store
	u, err := st.CreateUser(ctx, keys.User{Name: "app", Type: keys.UserApplication, Role: keys.RoleMember, PrimaryTenant: "acme"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: "acme", Role: keys.RoleMember, Status: keys.PermissionActive}, "test"); err != nil {
		t.Fatal(err)
	}
	value, id := keys.NewSigningSecret(), keys.NewID()
	s := keys.Secret{ID: id, UserID: u.ID, Name: "a", Status: keys.SecretActive, Sealed: app.sealer.Seal([]byte(value), keys.SecretAAD(u.ID, id))}
	if _, err := st.CreateSecret(ctx, s, "test"); err != nil {
		t.Fatal(err)
	}
	return app, u.ID, value
}

// cavagePost is a draft-cavage hs2019 POST of body, signed over
// (request-target), (created) and digest.
func cavagePost(user, secret, path string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://gw"+path, bytes.NewReader(body))
	sum := sha256.Sum256(body)
	r.Header.Set("Digest", "SHA-256="+base64.StdEncoding.EncodeToString(sum[:]))
	created := time.Now().Unix()
	m := hmac.New(sha512.New, []byte(secret))
	fmt.Fprintf(m, "(request-target): post %s\n(created): %d\ndigest: %s", path, created, r.Header.Get("Digest"))
	r.Header.Set("Authorization", fmt.Sprintf(`Signature keyId="%s",algorithm="hs2019",created=%d,headers="(request-target) (created) digest",signature="%s"`,
		user, created, base64.StdEncoding.EncodeToString(m.Sum(nil))))
	return r
}

// TestBodyHeldUntilRequestEnds: the bytes of a verified body stay held
// while the next handler runs (it still reads them), and are given back
// when ServeHTTP returns, however it returns: normally, with an error, or
// by a panic of the next handler.
func TestBodyHeldUntilRequestEnds(t *testing.T) {
	app, user, secret := newSignedApp(t)
	h := &Handler{Tenant: "acme"}
	if err := h.provision(app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("z"), 40<<10)
	var n int
	run := func(next caddyhttp.Handler) (err error, panicked any) {
		n++
		defer func() { panicked = recover() }()
		w := httptest.NewRecorder()
		err = h.ServeHTTP(w, cavagePost(user, secret, "/up/"+strconv.Itoa(n), body), next)
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		return err, nil
	}
	during := func(w http.ResponseWriter, r *http.Request) error {
		if held := app.bodyBudget.Used(); held < int64(len(body)) {
			t.Errorf("while the upstream reads the body, %d bytes are held", held)
		}
		got, _ := io.ReadAll(r.Body)
		if !bytes.Equal(got, body) {
			t.Error("the next handler does not get the body")
		}
		return nil
	}
	boom := errors.New("upstream failed")
	cases := map[string]caddyhttp.HandlerFunc{
		"ok":    during,
		"error": func(w http.ResponseWriter, r *http.Request) error { _ = during(w, r); return boom },
		"panic": func(w http.ResponseWriter, r *http.Request) error { _ = during(w, r); panic("upstream panicked") },
		"unread": func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusOK)
			return nil
		},
	}
	for name, next := range cases {
		err, p := run(next)
		switch {
		case name == "error" && !errors.Is(err, boom), name == "panic" && p == nil, name != "error" && err != nil:
			t.Fatalf("%s: err %v, panic %v", name, err, p)
		}
		if held := app.bodyBudget.Used(); held != 0 {
			t.Fatalf("%s: %d bytes still held after the request", name, held)
		}
	}
	// The defaults: 128 MiB, of which one client may hold an eighth.
	if limit, per := app.bodyBudget.Limits(); limit != DefaultSignedBodyBuffer || per != DefaultSignedBodyBuffer/8 {
		t.Fatalf("default budget %d, per client %d", limit, per)
	}
}
