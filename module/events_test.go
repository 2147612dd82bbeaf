package module_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/internal/testsmtp"
)

// hookReceiver is a webhook endpoint that verifies every delivery twice,
// neither time with keygate's events package: with a check written from
// the Standard Webhooks spec alone (signature and timestamp), and with the
// published Go library (verifyDelivery, the README's snippet). Both must
// pass. It dedupes by webhook-id and records what arrived.
type hookReceiver struct {
	*httptest.Server
	t      testing.TB
	secret atomic.Value // string
	down   atomic.Int64 // answer 503 to this many requests
	delay  atomic.Int64 // wait this long (ns) before answering: attempts in flight
	// holding makes requests hang on hold, then fail.
	holding atomic.Bool
	hold    chan struct{}
	held    atomic.Int64

	mu     sync.Mutex
	raw    map[string]int // webhook-id → requests that verified
	first  map[string]time.Time
	events []map[string]any
	bad    int
	cond   chan struct{}
}

func newHookReceiver(t testing.TB) *hookReceiver {
	rc := &hookReceiver{t: t, raw: map[string]int{}, first: map[string]time.Time{}, cond: make(chan struct{})}
	rc.Server = httptest.NewServer(rc)
	t.Cleanup(rc.Close)
	return rc
}

func (rc *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if d := rc.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if rc.holding.Load() {
		rc.held.Add(1)
		<-rc.hold // hangs until released, and counts for nothing
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if rc.down.Add(-1) >= 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	secret, _ := rc.secret.Load().(string)
	r.Body = io.NopCloser(bytes.NewReader(body))
	libErr := errors.New("no secret")
	if wh, err := standardwebhooks.NewWebhook(secret); err == nil {
		_, _, libErr = verifyDelivery(wh, r)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	sec, _ := strconv.ParseInt(ts, 10, 64)
	ok := false
	for _, s := range strings.Fields(r.Header.Get("webhook-signature")) {
		if v, sig, _ := strings.Cut(s, ","); v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			ok = true
		}
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		ok = false
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !ok || secret == "" || libErr != nil {
		if ok != (libErr == nil) {
			rc.t.Errorf("the spec check (%v) and standardwebhooks (%v) disagree about delivery %s", ok, libErr, id)
		}
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.raw[id]++
	if rc.raw[id] == 1 {
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil || ev["specversion"] != "1.0" || ev["id"] != id {
			rc.t.Errorf("not a CloudEvent for %s: %s", id, body)
		}
		rc.first[id] = time.Now()
		rc.events = append(rc.events, ev)
		close(rc.cond)
		rc.cond = make(chan struct{})
	}
	w.WriteHeader(http.StatusNoContent)
}

// waitType waits for the first event of typ after since (by arrival) for
// which match is true, and returns it with its arrival time.
func (rc *hookReceiver) waitType(typ string, match func(map[string]any) bool, d time.Duration) (map[string]any, time.Time) {
	rc.t.Helper()
	deadline := time.After(d)
	for {
		rc.mu.Lock()
		for _, ev := range rc.events {
			if ev["type"] == typ && (match == nil || match(ev)) {
				at := rc.first[ev["id"].(string)]
				rc.mu.Unlock()
				return ev, at
			}
		}
		ch := rc.cond
		rc.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			rc.t.Fatalf("no %s event within %v; got %v", typ, d, rc.types())
		}
	}
}

func (rc *hookReceiver) types() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, ev := range rc.events {
		out = append(out, fmt.Sprint(ev["type"]))
	}
	return out
}

func data(ev map[string]any) map[string]any { d, _ := ev["data"].(map[string]any); return d }

func keyOf(ev map[string]any) map[string]any { k, _ := data(ev)["key"].(map[string]any); return k }

// wrongSecret returns a well-formed access key (checksum right) with the
// key id of key and another secret.
func wrongSecret(key string) string {
	body := key[:len("kg_")+17] + strings.Repeat("a", 52)
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE([]byte(body)))
	return body + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// eventsCaddyfile is a gateway (tenant acme, limit 10 per 2m), the admin
// API and the leak endpoint, with events delivered fast and to loopback.
func eventsCaddyfile(store, events string, gw, ad, leaks int, upstream string) string {
	return fmt.Sprintf(`{
	admin {admin}
	keygate {
		%s
		master_key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
		auth_failures off
		events {
			allow_loopback
			poll 200ms
			retry 50ms 400ms 24h
			%s
		}
	}
}
http://127.0.0.1:%d {
	keygate {
		tenant acme
		limit 10 2m
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	keygate_admin
}
http://127.0.0.1:%d {
	keygate_leaks
}
`, store, events, gw, upstream, ad, leaks)
}

type eventsEnv struct {
	*env
	leaks string
}

func startEventsEnv(t *testing.T, store, events string, opts testcaddy.Options) *eventsEnv {
	t.Helper()
	up := newUpstream(t)
	gw, ad, lk := testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &eventsEnv{env: &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}, leaks: fmt.Sprintf("http://127.0.0.1:%d", lk)}
	opts.Wait = append(opts.Wait, e.gateway, e.adminURL)
	e.srv = testcaddy.Start(t, eventsCaddyfile(store, events, gw, ad, lk, up.addr()), opts)
	return e
}

// webhook creates a webhook for all events of tenant ("" = all tenants)
// pointing at rc and gives rc its secret.
func (e *env) webhook(rc *hookReceiver, tenant string) string {
	e.t.Helper()
	body := map[string]any{"url": rc.URL + "/hook", "events": []string{"*"}}
	if tenant != "" {
		body["tenant"] = tenant
	}
	var w struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/webhooks", body, http.StatusCreated), &w)
	if !strings.HasPrefix(w.Secret, "whsec_") {
		e.t.Fatalf("webhook secret %q", w.Secret)
	}
	rc.secret.Store(w.Secret)
	return w.ID
}

// signLeak signs a leak report body with k, GitHub's way.
func signLeak(k *ecdsa.PrivateKey, body []byte) string {
	d := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	return base64.StdEncoding.EncodeToString(sig)
}

func postLeak(t *testing.T, url, keyID, sig string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if keyID != "" {
		req.Header.Set("Github-Public-Key-Identifier", keyID)
	}
	if sig != "" {
		req.Header.Set("Github-Public-Key-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric sums the samples of a metric (with labels containing filter)
// on the server's /metrics.
func metric(t *testing.T, srv *testcaddy.Server, name, filter string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + srv.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name) && (line[len(name)] == '{' || line[len(name)] == ' ') && strings.Contains(line, filter) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// TestEventsEndToEnd: every event type reaches a real receiver (which
// verifies the Standard Webhooks signature itself) after the action that
// causes it; key.expiring also reaches a real SMTP server's mailbox over
// STARTTLS with AUTH; the leak endpoint revokes a key from a signed report
// and refuses unsigned and badly signed ones; a key with a broken checksum
// is refused without a store lookup.
func TestEventsEndToEnd(t *testing.T) {
	rc := newHookReceiver(t)
	mail := testsmtp.Start(t)
	leakKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&leakKey.PublicKey)
	pemFile := filepath.Join(t.TempDir(), "leak.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	e := startEventsEnv(t, "", fmt.Sprintf(`scan_interval 1s
			auth_failures 3 1m
			smtp {
				address %s
				username %s
				password %s
				from "keygate <noreply@example.com>"
				ca %s
			}
			leak_report_key test-key %s`, mail.Addr, mail.Username, mail.Password, mail.CAFile, pemFile), testcaddy.Options{})
	e.bootstrap()
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "other", "name": "Other"}, http.StatusCreated)
	e.webhook(rc, "")

	var lat []time.Duration
	// after runs act and waits for the event it causes.
	after := func(typ string, match func(map[string]any) bool, act func()) map[string]any {
		t.Helper()
		start := time.Now()
		act()
		ev, at := rc.waitType(typ, match, 15*time.Second)
		if at.Before(start) {
			t.Fatalf("%s arrived before its action", typ)
		}
		lat = append(lat, at.Sub(start))
		t.Logf("%-22s %6.1f ms after its action", typ, float64(at.Sub(start).Microseconds())/1000)
		return ev
	}
	var u struct {
		ID string `json:"id"`
	}
	after("user.created", nil, func() {
		json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{"name": "etl", "type": "TECHNICAL", "role": "MEMBER",
			"primaryTenant": "acme", "email": "etl-team@example.com", "notifications": []string{"key.expiring"}}, http.StatusCreated), &u)
	})
	after("user.updated", nil, func() {
		e.api(http.MethodPatch, "/v1/users/"+u.ID, map[string]any{"description": "nightly ETL"}, http.StatusOK)
	})
	var k struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	ev := after("key.created", nil, func() {
		json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+u.ID+"/keys", map[string]any{"name": "ci",
			"expiresAt": time.Now().Add(50 * time.Hour).UTC().Format(time.RFC3339)}, http.StatusCreated), &k)
	})
	if keyOf(ev)["id"] != k.ID || ev["tenant"] != "acme" || ev["actor"] != e.adminID || ev["subject"] != "users/"+u.ID+"/keys/"+k.ID {
		t.Fatalf("key.created: %v", ev)
	}
	if raw, _ := json.Marshal(ev); strings.Contains(string(raw), k.Key) || strings.Contains(string(raw), `"hash"`) {
		t.Fatalf("the event carries the key: %s", raw)
	}
	// The scan finds the key within its 3-day reminder.
	ev, _ = rc.waitType("key.expiring", func(ev map[string]any) bool { return keyOf(ev)["id"] == k.ID }, 15*time.Second)
	if data(ev)["days"] != 3.0 {
		t.Fatalf("key.expiring: %v", data(ev))
	}
	msg := mail.Wait(t, 15*time.Second, func(m testsmtp.Message) bool { return strings.Contains(m.Body, k.ID) })
	if !msg.TLS || msg.To[0] != "etl-team@example.com" || !strings.Contains(msg.Header.Get("Subject"), `"ci"`) ||
		!strings.Contains(msg.Body, "/replace") {
		t.Fatalf("mail: tls %v to %v subject %q\n%s", msg.TLS, msg.To, msg.Header.Get("Subject"), msg.Body)
	}
	after("key.updated", nil, func() {
		e.api(http.MethodPatch, "/v1/users/"+u.ID+"/keys/"+k.ID, map[string]any{"name": "ci-2"}, http.StatusOK)
	})
	var rep struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	after("key.replaced", nil, func() {
		json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+u.ID+"/keys/"+k.ID+"/replace", map[string]any{"gracePeriod": "1h"}, http.StatusCreated), &rep)
	})
	// Limits: 10 per window; 8 used passes 80 %, 10 passes 95 %, the 11th is refused.
	after("ratelimit.exceeded", nil, func() {
		for i := range 11 {
			resp := e.get("/x", map[string]string{"X-Api-Key": rep.Key})
			resp.Body.Close()
			if want := map[bool]int{true: 200, false: 429}[i < 10]; resp.StatusCode != want {
				t.Fatalf("request %d: %d", i+1, resp.StatusCode)
			}
		}
	})
	for _, th := range []float64{80, 95} {
		ev, _ := rc.waitType("ratelimit.approaching", func(ev map[string]any) bool { return data(ev)["threshold"] == th }, 5*time.Second)
		if data(ev)["userId"] != u.ID || data(ev)["limit"] != 10.0 {
			t.Fatalf("approaching %v: %v", th, data(ev))
		}
	}
	// A burst of wrong secrets for one key id: well-formed keys (checksum
	// right) with the id of the replacement key.
	wrong := wrongSecret(rep.Key)
	broken := wrong[:len(wrong)-1] + map[bool]string{true: "b", false: "a"}[wrong[len(wrong)-1] == 'a']
	ev = after("auth.failures", nil, func() {
		for range 3 {
			resp := e.get("/x", map[string]string{"X-Api-Key": wrong})
			resp.Body.Close()
		}
	})
	_ = ev
	// Broken checksums are refused before any lookup: no store read, no cache lookup.
	reads := metric(t, e.srv, "caddy_keygate_store_duration_seconds_count", `op="get_key"`)
	looks := metric(t, e.srv, "caddy_keygate_cache_lookups_total", "")
	for range 5 {
		if st := status(e.env, broken); st != http.StatusUnauthorized {
			t.Fatalf("broken checksum: %d", st)
		}
	}
	if r2, l2 := metric(t, e.srv, "caddy_keygate_store_duration_seconds_count", `op="get_key"`), metric(t, e.srv, "caddy_keygate_cache_lookups_total", ""); r2 != reads || l2 != looks {
		t.Fatalf("a broken key was looked up: store reads %v → %v, cache lookups %v → %v", reads, r2, looks, l2)
	}
	// Leak reports: unsigned and badly signed ones change nothing.
	body, _ := json.Marshal([]map[string]string{{"token": rep.Key, "type": "keygate_access_key", "url": "https://github.com/o/r/blob/1/.env", "source": "content"}})
	if st, _ := postLeak(t, e.leaks, "", "", body); st != http.StatusUnauthorized {
		t.Fatalf("unsigned report: %d", st)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if st, _ := postLeak(t, e.leaks, "test-key", signLeak(other, body), body); st != http.StatusUnauthorized {
		t.Fatalf("badly signed report: %d", st)
	}
	if st := status(e.env, rep.Key); st != http.StatusTooManyRequests {
		t.Fatalf("the key after refused reports: %d (want it still valid, limited)", st)
	}
	ev = after("key.leaked", nil, func() {
		st, resp := postLeak(t, e.leaks, "test-key", signLeak(leakKey, body), body)
		if st != http.StatusOK || !strings.Contains(resp, `"label":"true_positive"`) || strings.Contains(resp, rep.Key) {
			t.Fatalf("signed report: %d %s", st, resp)
		}
	})
	if data(ev)["action"] != "revoked" || keyOf(ev)["id"] != rep.ID {
		t.Fatalf("key.leaked: %v", data(ev))
	}
	rc.waitType("key.revoked", func(ev map[string]any) bool { return keyOf(ev)["id"] == rep.ID }, 5*time.Second)
	if st := status(e.env, rep.Key); st != http.StatusUnauthorized {
		t.Fatalf("leaked key: %d", st)
	}
	// key.expired: a key that expires in a second.
	var short struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+u.ID+"/keys", map[string]any{"name": "short",
		"expiresAt": time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)}, http.StatusCreated), &short)
	rc.waitType("key.expired", func(ev map[string]any) bool { return keyOf(ev)["id"] == short.ID }, 15*time.Second)
	after("key.revoked", func(ev map[string]any) bool { return keyOf(ev)["id"] == short.ID }, func() {
		e.api(http.MethodDelete, "/v1/users/"+u.ID+"/keys/"+short.ID, nil, http.StatusOK)
	})
	// Signing secrets.
	var app, sec struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{"name": "shop", "type": "APPLICATION", "primaryTenant": "acme"}, http.StatusCreated), &app)
	after("secret.created", nil, func() {
		json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+app.ID+"/secrets", nil, http.StatusCreated), &sec)
	})
	after("secret.deactivated", nil, func() {
		e.api(http.MethodPatch, "/v1/users/"+app.ID+"/secrets/"+sec.ID, map[string]any{"status": "INACTIVE"}, http.StatusOK)
	})
	after("secret.updated", nil, func() {
		e.api(http.MethodPatch, "/v1/users/"+app.ID+"/secrets/"+sec.ID, map[string]any{"name": "old"}, http.StatusOK)
	})
	after("secret.deleted", nil, func() {
		req, _ := http.NewRequest(http.MethodDelete, e.adminURL+"/v1/users/"+app.ID+"/secrets/"+sec.ID, nil)
		req.Header.Set("Authorization", "Bearer "+e.adminKey)
		req.Header.Set("If-Match", "*")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete secret: %v %v", resp, err)
		}
		resp.Body.Close()
	})
	ev = after("permission.changed", func(ev map[string]any) bool {
		p, _ := data(ev)["permission"].(map[string]any)
		return p["workspaceId"] == "other"
	}, func() {
		e.api(http.MethodPost, "/v1/permissions", map[string]any{"user": map[string]any{"id": u.ID},
			"workspace": map[string]any{"id": "other"}, "role": "VIEWER", "status": "INVITED"}, http.StatusCreated)
	})
	ev = after("user.state_changed", nil, func() {
		e.api(http.MethodPatch, "/v1/users/"+u.ID, map[string]any{"status": "INACTIVE"}, http.StatusOK)
	})
	if data(ev)["from"] != "ACTIVE" || data(ev)["to"] != "INACTIVE" {
		t.Fatalf("state change: %v", data(ev))
	}
	after("tenant.archived", nil, func() {
		e.api(http.MethodPatch, "/v1/tenants/other", map[string]any{"status": "ARCHIVED"}, http.StatusOK)
	})
	// Every type arrived, each event once, every delivery verified.
	seen := map[string]bool{}
	for _, typ := range rc.types() {
		seen[typ] = true
	}
	for _, typ := range []string{"key.created", "key.updated", "key.replaced", "key.revoked", "key.expiring", "key.expired", "key.leaked",
		"secret.created", "secret.updated", "secret.deactivated", "secret.deleted", "user.created", "user.updated", "user.state_changed",
		"permission.changed", "tenant.archived", "ratelimit.approaching", "ratelimit.exceeded", "auth.failures"} {
		if !seen[typ] {
			t.Errorf("no %s event", typ)
		}
	}
	rc.mu.Lock()
	for id, n := range rc.raw {
		if n != 1 {
			t.Errorf("event %s arrived %d times", id, n)
		}
	}
	if rc.bad != 0 {
		t.Errorf("%d deliveries failed verification", rc.bad)
	}
	rc.mu.Unlock()
	var worst time.Duration
	for _, l := range lat {
		worst = max(worst, l)
	}
	t.Logf("worst latency from an action to its event at the receiver: %v (%d actions)", worst, len(lat))
	// The deliveries are listed with their outcome.
	var ds []struct {
		Status       string `json:"status"`
		LastResponse int    `json:"lastResponse"`
		Kind         string `json:"kind"`
	}
	json.Unmarshal(e.api(http.MethodGet, "/v1/deliveries?kind=email", nil, http.StatusOK), &ds)
	if len(ds) == 0 || ds[0].Status != "DELIVERED" {
		t.Fatalf("e-mail deliveries: %+v", ds)
	}
}

// TestEventsRetryAndReplay: a receiver down for the first five attempts
// gets the event once after them; the delivery shows its attempts and the
// last answer.
func TestEventsRetryAndReplay(t *testing.T) {
	rc := newHookReceiver(t)
	rc.down.Store(5)
	e := startEventsEnv(t, "", "", testcaddy.Options{})
	e.bootstrap()
	var hook struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/webhooks", map[string]any{"url": rc.URL, "events": []string{"user.created"}}, http.StatusCreated), &hook)
	rc.secret.Store(hook.Secret)
	var u struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{"name": "x", "primaryTenant": "acme"}, http.StatusCreated), &u)
	ev, _ := rc.waitType("user.created", func(ev map[string]any) bool { return ev["subject"] == "users/"+u.ID }, 20*time.Second)
	type delivery struct {
		ID, Status, EventID string
		Attempts            int
		LastResponse        int
	}
	var d delivery
	for deadline := time.Now().Add(10 * time.Second); d.Status != "DELIVERED"; time.Sleep(20 * time.Millisecond) {
		var ds []delivery
		json.Unmarshal(e.api(http.MethodGet, "/v1/webhooks/"+hook.ID+"/deliveries", nil, http.StatusOK), &ds)
		if len(ds) != 1 || ds[0].EventID != ev["id"] {
			t.Fatalf("deliveries: %+v", ds)
		}
		d = ds[0]
		if time.Now().After(deadline) {
			t.Fatalf("delivery not recorded: %+v", d)
		}
	}
	if d.Attempts != 6 || d.LastResponse != 204 {
		t.Fatalf("delivery: %+v", d)
	}
	rc.mu.Lock()
	if n := rc.raw[d.EventID]; n != 1 {
		t.Fatalf("received %d times", n)
	}
	rc.mu.Unlock()
	// Replay: the same webhook-id again, which the receiver dedupes.
	e.api(http.MethodPost, "/v1/deliveries/"+d.ID+"/replay", nil, http.StatusOK)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		n := rc.raw[ev["id"].(string)]
		rc.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay not received: %d", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEventsSurviveKill: keygate is killed (SIGKILL) while an attempt
// hangs at the receiver; after the restart the lease passes and the event
// is delivered.
func TestEventsSurviveKill(t *testing.T) {
	rc := newHookReceiver(t)
	rc.hold = make(chan struct{})
	rc.holding.Store(true)
	store := "store file " + filepath.Join(t.TempDir(), "keygate.db")
	data := t.TempDir()
	e := startEventsEnv(t, store, "timeout 1s\n\t\t\tlease 2s", testcaddy.Options{DataHome: data})
	e.bootstrap()
	e.webhook(rc, "acme")
	var u struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{"name": "x", "primaryTenant": "acme"}, http.StatusCreated), &u)
	for deadline := time.Now().Add(10 * time.Second); rc.held.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no delivery attempt")
		}
	}
	e.srv.Kill()
	rc.holding.Store(false)
	close(rc.hold)
	killed := time.Now()
	startEventsEnv(t, store, "timeout 1s\n\t\t\tlease 2s", testcaddy.Options{DataHome: data})
	ev, at := rc.waitType("user.created", func(ev map[string]any) bool { return ev["subject"] == "users/"+u.ID }, 30*time.Second)
	t.Logf("delivered by the restarted node %v after the kill (the lease is 2s)", at.Sub(killed))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if n := rc.raw[ev["id"].(string)]; n != 1 {
		t.Fatalf("arrived %d times", n)
	}
}

// TestEventsTwoNodes: two keygate nodes on one Redis; each event is
// delivered by one of them, once.
func TestEventsTwoNodes(t *testing.T) {
	_, prefix := testredis.Client(t) // skips without Redis; keys under prefix removed at the end
	rc := newHookReceiver(t)
	store := fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t\tprefix %s\n\t\t}", testredis.Options(t).Addr, prefix)
	a := startEventsEnv(t, store, "", testcaddy.Options{})
	a.bootstrap()
	b := startEventsEnv(t, store, "", testcaddy.Options{})
	b.adminKey, b.adminID = a.adminKey, a.adminID
	a.webhook(rc, "acme")
	const n = 20
	ids := make([]string, 0, n)
	for i := range n {
		node := a
		if i%2 == 1 {
			node = b
		}
		var u struct {
			ID string `json:"id"`
		}
		json.Unmarshal(node.api(http.MethodPost, "/v1/users", map[string]any{"name": fmt.Sprintf("u%d", i), "primaryTenant": "acme"}, http.StatusCreated), &u)
		ids = append(ids, u.ID)
	}
	for _, id := range ids {
		rc.waitType("user.created", func(ev map[string]any) bool { return ev["subject"] == "users/"+id }, 20*time.Second)
	}
	time.Sleep(time.Second) // room for a duplicate to show up
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for id, c := range rc.raw {
		if c != 1 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
	if len(rc.raw) < n {
		t.Errorf("%d events delivered, want at least %d", len(rc.raw), n)
	}
}

// TestEventsAuthFailuresAcrossNodes: two nodes on one Redis each see half
// of a burst of wrong secrets for one key (two of four, the threshold):
// neither reaches it alone, their counts added in the store do, and the
// receiver gets one auth.failures with all four.
func TestEventsAuthFailuresAcrossNodes(t *testing.T) {
	_, prefix := testredis.Client(t)
	rc := newHookReceiver(t)
	store := fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t\tprefix %s\n\t\t}", testredis.Options(t).Addr, prefix)
	a := startEventsEnv(t, store, "auth_failures 4 1h", testcaddy.Options{})
	a.bootstrap()
	b := startEventsEnv(t, store, "auth_failures 4 1h", testcaddy.Options{})
	b.adminKey, b.adminID = a.adminKey, a.adminID
	a.webhook(rc, "acme")
	userID, keyID, key := a.newUserKey("acme", "burst", time.Now().Add(time.Hour))
	wrong := wrongSecret(key)
	start := time.Now()
	for _, node := range []*eventsEnv{a, b, a, b} {
		if st := status(node.env, wrong); st != http.StatusUnauthorized {
			t.Fatalf("wrong secret: %d", st)
		}
	}
	ev, at := rc.waitType("auth.failures", nil, 15*time.Second)
	t.Logf("auth.failures %v after the burst's last failure (each node adds its counts about once a second)", at.Sub(start).Round(time.Millisecond))
	if d := data(ev); d["failures"] != 4.0 || d["keyId"] != keyID || d["userId"] != userID || d["clientIPs"] != 1.0 {
		t.Fatalf("auth.failures: %v", d)
	}
	time.Sleep(2 * time.Second) // room for a second report
	if n := strings.Count(strings.Join(rc.types(), " "), "auth.failures"); n != 1 {
		t.Fatalf("%d auth.failures events", n)
	}
}

// TestEventsRedisPaused: Redis is paused while a delivery is being
// retried; once it answers again the event is delivered, once.
func TestEventsRedisPaused(t *testing.T) {
	rs := testredis.StartServer(t)
	rc := newHookReceiver(t)
	rc.down.Store(1 << 30)
	store := fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t}", rs.Addr)
	e := startEventsEnv(t, store, "", testcaddy.Options{})
	e.bootstrap()
	hook := e.webhook(rc, "acme")
	var u struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{"name": "x", "primaryTenant": "acme"}, http.StatusCreated), &u)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ds []struct{ Attempts int }
		json.Unmarshal(e.api(http.MethodGet, "/v1/webhooks/"+hook+"/deliveries", nil, http.StatusOK), &ds)
		if len(ds) > 0 && ds[0].Attempts >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no failed attempt")
		}
	}
	ctx := context.Background()
	paused := time.Now()
	if err := rs.Client().Do(ctx, "client", "pause", "3000", "all").Err(); err != nil {
		t.Fatal(err)
	}
	rc.down.Store(0)
	ev, at := rc.waitType("user.created", func(ev map[string]any) bool { return ev["subject"] == "users/"+u.ID }, 30*time.Second)
	t.Logf("delivered %v after Redis was paused for 3s", at.Sub(paused))
	time.Sleep(500 * time.Millisecond)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if n := rc.raw[ev["id"].(string)]; n != 1 {
		t.Fatalf("delivered %d times", n)
	}
}
