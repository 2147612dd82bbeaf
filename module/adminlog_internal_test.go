package module

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
)

// TestAdminErrorsLogged (issue 23, item 6): the admin API's store errors
// and failed activity-log writes reach the app's (Caddy's) logger, under
// keygate.admin, at error level, and no line carries the caller's key.
func TestAdminErrorsLogged(t *testing.T) {
	srv := testredis.StartServer(t)
	core, logs := observer.New(zapcore.DebugLevel)
	app := &App{
		Store:  &StoreConfig{Backend: "redis", Addresses: []string{srv.Addr}, Prefix: "kg-adminlog:"},
		logger: zap.New(core).Named("keygate"),
	}
	if err := app.setup(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Cleanup() })
	ctx := t.Context()
	st := app.shared.store
	if _, err := st.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "test"); err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(ctx, keys.User{Name: "ops", Type: keys.UserTechnical, Role: keys.RoleAdmin, PrimaryTenant: "acme", Superadmin: true}, "test")
	if err != nil {
		t.Fatal(err)
	}
	plain, k := keys.NewAccessKey(app.hasher, u.ID, "acme", "main", time.Now().Add(time.Hour))
	if _, err := st.CreateKey(ctx, k, "test"); err != nil {
		t.Fatal(err)
	}
	// The key works while the store answers.
	call := func(r *http.Request) int {
		w := httptest.NewRecorder()
		app.adminAPI().ServeHTTP(w, r)
		return w.Code
	}
	get := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/v1/users?size=1", nil)
		r.Header.Set("Authorization", "Bearer "+plain)
		return r
	}
	if code := call(get()); code != http.StatusOK {
		t.Fatalf("GET /v1/users with the key: %d", code)
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Fatalf("%d error lines before the store failed: %v", n, logs.All())
	}

	srv.Stop()
	if code := call(get()); code != http.StatusServiceUnavailable {
		t.Fatalf("GET /v1/users with the store down: %d", code)
	}
	post := httptest.NewRequest(http.MethodPost, "/v1/tenants", strings.NewReader(`{"id":"beta","name":"`+plain+`"}`))
	post.Header.Set("Content-Type", "application/json")
	post = post.WithContext(admin.WithTrustedCaller(post.Context(), "cli"))
	if code := call(post); code != http.StatusServiceUnavailable {
		t.Fatalf("POST /v1/tenants with the store down: %d", code)
	}

	errs := logs.FilterLoggerName("keygate.admin").FilterLevelExact(zapcore.ErrorLevel)
	var failed, activity bool
	for _, e := range errs.All() {
		failed = failed || strings.Contains(e.Message, "request failed")
		activity = activity || strings.Contains(e.Message, "recording activity failed")
		if _, ok := e.ContextMap()["error"]; !ok {
			t.Errorf("log line without the error: %s %v", e.Message, e.ContextMap())
		}
	}
	if !failed || !activity {
		t.Fatalf("no error line for the store failure (%v) or the lost activity entry (%v); logged: %v", failed, activity, logs.All())
	}
	// No line carries the key, its secret, or the request body.
	secret := plain[strings.LastIndexByte(plain, '_')+1:]
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, e := range logs.All() {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err != nil {
			t.Fatal(err)
		}
		line := buf.String()
		buf.Free()
		if strings.Contains(line, secret) || strings.Contains(line, "Bearer") {
			t.Fatalf("a log line carries the credential: %s", line)
		}
	}
	t.Logf("%d admin error lines, e.g. %s %v", errs.Len(), errs.All()[0].Message, errs.All()[0].ContextMap())
}
