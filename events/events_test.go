package events_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/internal/testsmtp"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/filestore"
)

// TestSignKnownAnswer: the Standard Webhooks example vector.
func TestSignKnownAnswer(t *testing.T) {
	sig, err := events.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; sig != want {
		t.Fatalf("signature %s, want %s", sig, want)
	}
}

func TestVerify(t *testing.T) {
	secret := events.NewSecret()
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"a":1}`)
	sig, _ := events.Sign(secret, "evt_1", now.Unix(), body)
	h := http.Header{}
	h.Set("webhook-id", "evt_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", "v1,AAAA "+sig)
	if err := events.Verify(secret, h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for name, check := range map[string]func() error{
		"stale":       func() error { return events.Verify(secret, h, body, now.Add(time.Hour), 5*time.Minute) },
		"tampered":    func() error { return events.Verify(secret, h, []byte(`{"a":2}`), now, 5*time.Minute) },
		"wrongsecret": func() error { return events.Verify(events.NewSecret(), h, body, now, 5*time.Minute) },
	} {
		if err := check(); !errors.Is(err, events.ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{"https://example.com/hook", "http://127.0.0.1:9000/x?y=1"} {
		if err := events.CheckURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ftp://x", "https://", "/relative", "https://u:p@x/", "https://x/#f", "javascript:alert(1)"} {
		if err := events.CheckURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAddressPolicy(t *testing.T) {
	def := events.AddressPolicy{}
	loop := events.AddressPolicy{AllowLoopback: true}
	for addr, want := range map[string][2]bool{
		"8.8.8.8": {true, true}, "2001:4860:4860::8888": {true, true},
		"127.0.0.1": {false, true}, "::1": {false, true}, "10.1.2.3": {false, false},
		"192.168.1.1": {false, false}, "169.254.169.254": {false, false}, "100.64.0.1": {false, false},
		"0.0.0.0": {false, false}, "fd00::1": {false, false}, "::ffff:10.0.0.1": {false, false},
	} {
		ip := netip.MustParseAddr(addr)
		if got := def.Allows(ip); got != want[0] {
			t.Errorf("default policy %s: %v", addr, got)
		}
		if got := loop.Allows(ip); got != want[1] {
			t.Errorf("loopback policy %s: %v", addr, got)
		}
	}
	// Enforced when dialing: a refused address is never connected to.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("connected") }))
	defer srv.Close()
	_, err := events.NewHTTPClient(def, time.Second).Get(srv.URL)
	if !errors.Is(err, events.ErrRefusedAddress) {
		t.Fatalf("dial to loopback: %v", err)
	}
}

// TestLeakVerifyGitHubVector: the test key, body and signature of GitHub's
// partner program documentation.
func TestLeakVerifyGitHubVector(t *testing.T) {
	pub, err := events.ParseLeakPublicKey([]byte("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsz9ugWDj5jK5ELBK42ynytbo38gP\nHzZFI03Exwz8Lh/tCfL3YxwMdLjB+bMznsanlhK0RwcGP3IDb34kQDIo3Q==\n-----END PUBLIC KEY-----\n"))
	if err != nil {
		t.Fatal(err)
	}
	id := "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d"
	keys := map[string]*ecdsa.PublicKey{id: pub}
	body := []byte(`[{"token":"some_token","type":"some_type","url":"some_url","source":"some_source"}]`)
	sig := "MEUCIFLZzeK++IhS+y276SRk2Pe5LfDrfvTXu6iwKKcFGCrvAiEAhHN2kDOhy2I6eGkOFmxNkOJ+L2y8oQ9A2T9GGJo6WJY="
	if err := events.VerifyLeakReport(keys, id, sig, body); err != nil {
		t.Fatalf("documented vector: %v", err)
	}
	for name, err := range map[string]error{
		"unsigned":    events.VerifyLeakReport(keys, id, "", body),
		"unknown key": events.VerifyLeakReport(keys, "other", sig, body),
		"tampered":    events.VerifyLeakReport(keys, id, sig, append([]byte(" "), body...)),
		"garbage":     events.VerifyLeakReport(keys, id, "!!", body),
	} {
		if !errors.Is(err, events.ErrLeakSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	rs, err := events.ParseLeakReports(body)
	if err != nil || len(rs) != 1 || rs[0].Token != "some_token" || rs[0].Source != "some_source" {
		t.Fatalf("parse: %v %v", rs, err)
	}
	for _, bad := range []string{`{}`, `[{"type":"x"}]`, `[] []`, `null`} {
		if _, err := events.ParseLeakReports([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// A key of our own, signed the same way.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256(body)
	s, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err := events.VerifyLeakReport(map[string]*ecdsa.PublicKey{"k": &k.PublicKey}, "k", base64.StdEncoding.EncodeToString(s), body); err != nil {
		t.Fatal(err)
	}
}

func newStore(t testing.TB) keys.Store {
	t.Helper()
	s, err := filestore.NewStore(filepath.Join(t.TempDir(), "k.db"), filestore.Options{}, keys.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// receiver is a webhook endpoint that verifies deliveries with its own
// implementation of the Standard Webhooks scheme and dedupes by webhook-id.
type receiver struct {
	secret string
	down   atomic.Int64 // answer 503 to this many more requests
	mu     sync.Mutex
	hits   map[string]int
	events []events.CloudEvent
	bad    int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if rc.down.Add(-1) >= 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(rc.secret, "whsec_"))
	m := hmac.New(sha256.New, key)
	io.WriteString(m, r.Header.Get("webhook-id")+"."+r.Header.Get("webhook-timestamp")+".")
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.Header.Get("webhook-signature") != want || r.Header.Get("Content-Type") != events.ContentType {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	id := r.Header.Get("webhook-id")
	rc.hits[id]++
	if rc.hits[id] == 1 {
		var ce events.CloudEvent
		_ = json.Unmarshal(body, &ce)
		rc.events = append(rc.events, ce)
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestDispatcherRetries: the receiver refuses the first five attempts; the
// event arrives once after them, signed, as a CloudEvent.
func TestDispatcherRetries(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	secret := events.NewSecret()
	rc := &receiver{secret: secret, hits: map[string]int{}}
	rc.down.Store(5)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateWebhook(ctx, keys.Webhook{ID: "wh1", Tenant: "acme", URL: srv.URL, Events: []string{"*"}, Enabled: true, SealedSecret: []byte("x")}, "t"); err != nil {
		t.Fatal(err)
	}
	var attempts sync.Map
	d := events.New(events.Options{
		Store: s, HTTP: events.NewHTTPClient(events.AddressPolicy{AllowLoopback: true}, time.Second),
		OpenSecret:   func(*keys.Webhook, []byte) (string, error) { return secret, nil },
		RetryInitial: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond, Poll: 10 * time.Millisecond,
		OnAttempt: func(kind, result string) {
			n, _ := attempts.LoadOrStore(result, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		},
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	u, err := s.CreateUser(ctx, keys.User{Name: "bot", PrimaryTenant: "acme"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	d.Wake()
	// Delivered: the receiver has the event and the dispatcher has
	// recorded it (the receiver answers before the dispatcher writes the
	// outcome, so waiting for the receiver alone and stopping the
	// dispatcher could leave the delivery PENDING: delivered again later).
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		n := len(rc.events)
		rc.mu.Unlock()
		p, err := s.ListDeliveries(ctx, keys.DeliveryQuery{WebhookID: "wh1"})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && p.Total == 1 && p.Items[0].Status == keys.DeliveryDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered; receiver down %d, deliveries %+v", rc.down.Load(), p.Items)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ce := rc.events[0]
	if ce.SpecVersion != "1.0" || ce.Type != keys.EventUserCreated || ce.Tenant != "acme" || ce.Actor != "admin" ||
		ce.Subject != "users/"+u.ID || ce.Source != events.DefaultSource || ce.DataContentType != "application/json" {
		t.Fatalf("cloud event: %+v", ce)
	}
	if rc.hits[ce.ID] != 1 || rc.bad != 0 {
		t.Fatalf("hits %v, badly signed %d", rc.hits, rc.bad)
	}
	p, err := s.ListDeliveries(ctx, keys.DeliveryQuery{WebhookID: "wh1"})
	if err != nil || p.Total != 1 {
		t.Fatalf("deliveries: %v %v", p, err)
	}
	got := p.Items[0]
	if got.Status != keys.DeliveryDelivered || got.Attempts != 6 || got.LastStatus != http.StatusNoContent {
		t.Fatalf("delivery: %+v", got)
	}
	if r, _ := attempts.Load("retry"); r.(*atomic.Int64).Load() != 5 {
		t.Fatalf("retries: %d", r.(*atomic.Int64).Load())
	}
}

// TestDispatcherGivesUp: past MaxAge the delivery is FAILED with the last
// answer, and a replay delivers it.
func TestDispatcherGivesUp(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	secret := events.NewSecret()
	rc := &receiver{secret: secret, hits: map[string]int{}}
	rc.down.Store(1 << 30)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	_, _ = s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "t")
	_, _ = s.CreateWebhook(ctx, keys.Webhook{ID: "wh1", Tenant: "acme", URL: srv.URL, Events: []string{"*"}, Enabled: true, SealedSecret: []byte("x")}, "t")
	d := events.New(events.Options{
		Store: s, HTTP: events.NewHTTPClient(events.AddressPolicy{AllowLoopback: true}, time.Second),
		OpenSecret:   func(*keys.Webhook, []byte) (string, error) { return secret, nil },
		RetryInitial: 10 * time.Millisecond, MaxAge: 200 * time.Millisecond, Poll: 10 * time.Millisecond,
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	_, _ = s.CreateUser(ctx, keys.User{Name: "bot", PrimaryTenant: "acme"}, "admin")
	var got keys.Delivery
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		p, _ := s.ListDeliveries(ctx, keys.DeliveryQuery{WebhookID: "wh1", Status: keys.DeliveryFailed})
		if p.Total == 1 {
			got = p.Items[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never gave up")
		}
	}
	if got.Attempts < 2 || got.LastStatus != 503 || !strings.Contains(got.LastError, "503") {
		t.Fatalf("failed delivery: %+v", got)
	}
	rc.down.Store(0)
	if _, err := s.ReplayDelivery(ctx, got.ID, time.Now(), "admin"); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		dl, _ := s.GetDelivery(ctx, got.ID)
		if dl.Status == keys.DeliveryDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replay not delivered")
		}
	}
}

// TestSMTPMailer: a key.expiring mail through a real SMTP server with
// STARTTLS and AUTH, read back from its mailbox.
func TestSMTPMailer(t *testing.T) {
	srv := testsmtp.Start(t)
	m, err := events.NewSMTP(events.SMTPConfig{
		Address: srv.Addr, Username: srv.Username, Password: srv.Password, From: "keygate <noreply@example.com>",
		TLSConfig: &tls.Config{RootCAs: srv.Pool, MinVersion: tls.VersionTLS12}, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(72 * time.Hour).UTC()
	data, _ := json.Marshal(map[string]any{"key": keys.KeyInfo{ID: "kid1", Name: "ci", UserID: "42", Tenant: "acme", Masked: "kg_kid1_…abcd", Status: keys.KeyActive, ExpiresAt: exp}, "days": 3})
	e := keys.Event{ID: "evt_x", Type: keys.EventKeyExpiring, Time: time.Now(), Tenant: "acme", Actor: "system", Subject: "users/42/keys/kid1", Data: data}
	if err := m.Send(context.Background(), events.Compose(e, "ops@example.com")); err != nil {
		t.Fatal(err)
	}
	msg := srv.Wait(t, 5*time.Second, func(testsmtp.Message) bool { return true })
	if !msg.TLS || msg.User != srv.Username || msg.To[0] != "ops@example.com" {
		t.Fatalf("session: tls %v user %q to %v", msg.TLS, msg.User, msg.To)
	}
	subj := msg.Header.Get("Subject")
	if !strings.Contains(subj, `"ci"`) || !strings.Contains(subj, "expires") {
		t.Fatalf("subject %q", subj)
	}
	for _, want := range []string{"kg_kid1_", exp.Format("2006-01-02"), "/v1/users/42/keys/kid1/replace", "What to do"} {
		if !strings.Contains(msg.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, msg.Body)
		}
	}
	// Without TLS on offer the mailer refuses to send (STARTTLS is mandatory).
	bad, _ := events.NewSMTP(events.SMTPConfig{Address: srv.Addr, From: "a@b.c", TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}, Timeout: 2 * time.Second})
	if err := bad.Send(context.Background(), events.Compose(e, "x@example.com")); err == nil {
		t.Fatal("sent to a server whose certificate is not trusted")
	}
}

func TestLimitWatcher(t *testing.T) {
	s := newStore(t)
	ctx0 := context.Background()
	_, _ = s.CreateTenant(ctx0, keys.Tenant{ID: "acme", Name: "Acme"}, "t")
	_, _ = s.DispatchEvents(ctx0, time.Now(), "n", time.Minute, 100)
	_, _ = s.CreateWebhook(ctx0, keys.Webhook{ID: "wh1", Tenant: "acme", URL: "https://example.com", Events: []string{"*"}, Enabled: true, SealedSecret: []byte("x")}, "t")
	q := events.NewQueue(s, 16)
	w := events.NewLimitWatcher(q, nil)
	now := time.Unix(1_700_000_040, 0)
	if w.Near(100, 21) || !w.Near(100, 20) {
		t.Fatal("Near threshold")
	}
	u := events.Usage{Tenant: "acme", User: "42", Policy: "user", Limit: 100, Window: 2 * time.Minute, Allowed: true}
	for rem := int64(30); rem >= 0; rem-- {
		u.Remaining = rem
		w.Observe(u, now)
	}
	u.Allowed = false
	w.Observe(u, now)
	w.Observe(u, now)
	if got := q.Dropped(); got != 0 {
		t.Fatalf("dropped %d", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx, func(err error) { t.Error(err) }); close(done) }()
	cancel()
	<-done
	// Another node noticing the same crossings adds nothing.
	w2 := events.NewLimitWatcher(q, nil)
	u.Allowed, u.Remaining = true, 3
	w2.Observe(u, now)
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { q.Run(ctx, nil); close(done) }()
	cancel()
	<-done
	ds, err := s.DispatchEvents(context.Background(), now, "n", time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		var data map[string]any
		_ = json.Unmarshal(d.Event.Data, &data)
		got = append(got, d.Event.Type+":"+strconv.Itoa(int(toFloat(data["threshold"]))))
	}
	want := []string{"ratelimit.approaching:80", "ratelimit.approaching:95", "ratelimit.exceeded:0"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func toFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}

// TestSignAllVerifiesWithEither: a delivery signed during a rotation's
// grace period verifies, with the published Standard Webhooks library and
// with Verify, under the old secret and under the new one, and under
// neither when tampered.
func TestSignAllVerifiesWithEither(t *testing.T) {
	old, cur := events.NewSecret(), events.NewSecret()
	now := time.Now()
	body := []byte(`{"specversion":"1.0"}`)
	sig, err := events.SignAll([]string{cur, old}, "evt_1", now.Unix(), body)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(sig, "v1,"); n != 2 || strings.Contains(sig, "  ") {
		t.Fatalf("signature header %q", sig)
	}
	h := http.Header{}
	h.Set("webhook-id", "evt_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", sig)
	for _, secret := range []string{old, cur} {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("standardwebhooks: %v", err)
		}
		if err := wh.Verify([]byte(`{}`), h); err == nil {
			t.Error("standardwebhooks verified a tampered body")
		}
		if err := events.Verify(secret, h, body, now, 5*time.Minute); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	wh, _ := standardwebhooks.NewWebhook(events.NewSecret())
	if err := wh.Verify(body, h); err == nil {
		t.Error("a third secret verifies")
	}
	if _, err := events.SignAll(nil, "evt_1", now.Unix(), body); err == nil {
		t.Error("signing with no secret")
	}
}

// TestDispatcherRotation: after a rotation with a grace period the
// dispatcher signs with the new and the old secret; once the grace period
// is over, with the new one only.
func TestDispatcherRotation(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	secrets := map[string]string{"s1": events.NewSecret(), "s2": events.NewSecret()}
	var mu sync.Mutex
	var got []http.Header
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r.Header.Clone()), append(bodies, b)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "t"); err != nil {
		t.Fatal(err)
	}
	w, err := s.CreateWebhook(ctx, keys.Webhook{ID: "wh1", Tenant: "acme", URL: srv.URL, Events: []string{"*"}, Enabled: true, SealedSecret: []byte("s1")}, "t")
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	d := events.New(events.Options{
		Store: s, HTTP: events.NewHTTPClient(events.AddressPolicy{AllowLoopback: true}, time.Second),
		OpenSecret: func(_ *keys.Webhook, sealed []byte) (string, error) { return secrets[string(sealed)], nil },
		Poll:       10 * time.Millisecond,
		Now:        func() time.Time { return time.Unix(0, clock.Load()) },
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	deliver := func() (http.Header, []byte) {
		t.Helper()
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if _, err := s.CreateUser(ctx, keys.User{Name: "u" + strconv.Itoa(n), PrimaryTenant: "acme"}, "admin"); err != nil {
			t.Fatal(err)
		}
		d.Wake()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			if len(got) > n {
				h, b := got[n], bodies[n]
				mu.Unlock()
				return h, b
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatal("not delivered")
			}
		}
	}
	verifies := func(secret string, h http.Header, body []byte) bool {
		wh, _ := standardwebhooks.NewWebhook(secret)
		return wh.VerifyIgnoringTimestamp(body, h) == nil
	}
	if h, b := deliver(); !verifies(secrets["s1"], h, b) || strings.Count(h.Get("webhook-signature"), "v1,") != 1 {
		t.Fatalf("before the rotation: %q", h.Get("webhook-signature"))
	}
	now := time.Unix(0, clock.Load())
	if _, err := s.UpdateWebhook(ctx, w.ID, 0, func(w *keys.Webhook) error { w.RotateSecret([]byte("s2"), now, time.Hour); return nil }, "admin"); err != nil {
		t.Fatal(err)
	}
	h, b := deliver()
	if !verifies(secrets["s1"], h, b) || !verifies(secrets["s2"], h, b) {
		t.Fatalf("during the grace period: %q", h.Get("webhook-signature"))
	}
	clock.Add(int64(time.Hour))
	h, b = deliver()
	if verifies(secrets["s1"], h, b) || !verifies(secrets["s2"], h, b) {
		t.Fatalf("after the grace period: %q", h.Get("webhook-signature"))
	}
}

// flakyStore fails AddFailureCounts while down is set.
type flakyStore struct {
	keys.Store
	down atomic.Bool
}

func (s *flakyStore) AddFailureCounts(ctx context.Context, c []keys.FailureCount) ([]keys.FailureCount, error) {
	if s.down.Load() {
		return nil, keys.ErrUnavailable
	}
	return s.Store.AddFailureCounts(ctx, c)
}

// authFailureEvents writes what the queues hold to the outbox and returns
// the auth.failures events there.
func authFailureEvents(t *testing.T, s keys.Store, qs ...*events.Queue) []keys.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, q := range qs {
		wg.Go(func() { q.Run(ctx, func(err error) { t.Error(err) }) })
	}
	cancel() // Run writes what is queued, then returns
	wg.Wait()
	var out []keys.Event
	for {
		ds, err := s.DispatchEvents(context.Background(), time.Now(), "n", time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Event.Type == keys.EventAuthFailures {
				out = append(out, d.Event)
			}
		}
		if more, _ := s.PendingEvents(context.Background()); !more {
			return out
		}
	}
}

// TestFailureWatcherAcrossNodes: two nodes each see half a burst (two
// failures, threshold four); neither reports alone, their flushes to the
// shared store report it once, with the distinct addresses of both; a node
// that flushes more of the same burst later gives no second event; counts
// a flush could not store are kept for the next.
func TestFailureWatcherAcrossNodes(t *testing.T) {
	base := newStore(t)
	ctx := context.Background()
	if _, err := base.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := base.CreateWebhook(ctx, keys.Webhook{ID: "wh1", Tenant: "acme", URL: "https://example.com/h", Events: []string{"*"}, Enabled: true, SealedSecret: []byte("x")}, "t"); err != nil {
		t.Fatal(err)
	}
	s := &flakyStore{Store: base}
	qa, qb := events.NewQueue(s, 0), events.NewQueue(s, 0)
	a := events.NewFailureWatcher(qa, 4, time.Hour)
	b := events.NewFailureWatcher(qb, 4, time.Hour)
	now := time.Now()
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	a.Fail("acme", "u1", "k1", ip("192.0.2.1"), now)
	a.Fail("acme", "u1", "k1", ip("192.0.2.2"), now.Add(time.Millisecond))
	b.Fail("acme", "u1", "k1", ip("192.0.2.2"), now.Add(2*time.Millisecond))
	b.Fail("acme", "u1", "k1", ip("::ffff:192.0.2.3"), now.Add(3*time.Millisecond))
	if evs := authFailureEvents(t, base, qa, qb); len(evs) != 0 {
		t.Fatalf("half a burst per node reported: %+v", evs)
	}
	// The store is away for node B's first flush: nothing is lost.
	s.down.Store(true)
	if err := b.Flush(ctx); err == nil {
		t.Fatal("flush to an unreachable store succeeded")
	}
	s.down.Store(false)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := authFailureEvents(t, base, qa); len(evs) != 0 {
		t.Fatalf("node A reported its half: %+v", evs)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs := authFailureEvents(t, base, qb)
	if len(evs) != 1 {
		t.Fatalf("the whole burst: %d events", len(evs))
	}
	var d struct {
		Failures  int    `json:"failures"`
		ClientIPs int    `json:"clientIPs"`
		KeyID     string `json:"keyId"`
		FirstAt   time.Time
	}
	json.Unmarshal(evs[0].Data, &d)
	if d.Failures != 4 || d.ClientIPs != 3 || d.KeyID != "k1" || evs[0].Subject != "users/u1/keys/k1" || evs[0].Tenant != "acme" {
		t.Fatalf("auth.failures: %+v %s", evs[0], evs[0].Data)
	}
	// Node A sees more of the same burst: its flush reaches the threshold
	// too, and the event's id makes it the same event.
	a.Fail("acme", "u1", "k1", ip("192.0.2.9"), now.Add(4*time.Millisecond))
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := authFailureEvents(t, base, qa); len(evs) != 0 {
		t.Fatalf("the burst was reported twice: %+v", evs)
	}
	// A node's own count reaching the threshold reports at once, unflushed.
	for i := range 4 {
		a.Fail("acme", "u2", "", ip("198.51.100.1"), now.Add(time.Duration(i)*time.Millisecond))
	}
	if evs := authFailureEvents(t, base, qa); len(evs) != 1 || evs[0].Subject != "users/u2" {
		t.Fatalf("a node's own burst: %+v", evs)
	}
}

// BenchmarkFailureWatcherFail: what a failed authentication of a known key
// costs the request path (one subject, a few client addresses).
func BenchmarkFailureWatcherFail(b *testing.B) {
	w := events.NewFailureWatcher(events.NewQueue(newStore(b), 0), 1<<30, time.Hour)
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Fail("acme", "u1", "k1", ips[i%len(ips)], now)
	}
}
