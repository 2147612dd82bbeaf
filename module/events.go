package module

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/keys"
)

func init() {
	caddy.RegisterModule(LeakHandler{})
}

// EventsConfig configures events: webhooks, e-mail notifications, expiry
// reminders, the request-path events and leak reports.
type EventsConfig struct {
	// Off turns event delivery off on this node (events are still written
	// to the outbox by every change; another node delivers them).
	// Default: false.
	Off bool `json:"off,omitempty"`

	// Source is the CloudEvents source attribute. Default: /keygate
	Source string `json:"source,omitempty"`

	// ExpiryReminders are how long before a key's expiry key.expiring is
	// sent, once each (the nearest one crossed). Default: 14d, 3d, 1d.
	ExpiryReminders []caddy.Duration `json:"expiry_reminders,omitempty"`

	// ScanInterval is how often keys are checked for reminders and
	// expiry. Default: 1m.
	ScanInterval caddy.Duration `json:"scan_interval,omitempty"`

	// RateLimitThresholds are the shares of a user's limit, in percent,
	// whose crossing sends ratelimit.approaching (once per threshold and
	// window). Default: 80, 95.
	RateLimitThresholds []int `json:"ratelimit_thresholds,omitempty"`

	// AuthFailures is the burst of failed authentications for one key or
	// user that sends auth.failures: Threshold failures within Window.
	// Default: 20 within 1m.
	AuthFailures *FailureBurstConfig `json:"auth_failures,omitempty"`

	// RetryInitial, RetryMax and GiveUp shape the retries of a failed
	// delivery: the delay doubles from RetryInitial up to RetryMax (each
	// drawn between half and all of it); after GiveUp since the first
	// attempt the delivery is FAILED. Defaults: 5s, 1h, 24h.
	RetryInitial caddy.Duration `json:"retry_initial,omitempty"`
	RetryMax     caddy.Duration `json:"retry_max,omitempty"`
	GiveUp       caddy.Duration `json:"give_up,omitempty"`

	// Timeout bounds one delivery attempt. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Lease is how long an attempt owns its delivery before another node
	// may take it over (at least twice Timeout). Default: 1m.
	Lease caddy.Duration `json:"lease,omitempty"`
	// Poll is how often each node looks for due deliveries when nothing
	// woke it. Default: 1s.
	Poll caddy.Duration `json:"poll,omitempty"`

	// Retention is how long delivered and failed deliveries stay listed.
	// Default: 7d.
	Retention caddy.Duration `json:"retention,omitempty"`

	// AllowPrivateAddresses lets webhooks reach loopback, private,
	// link-local (cloud metadata) and other non-public addresses. Off, a
	// tenant admin cannot point a webhook at your internal services: the
	// check is made on the address dialed, after DNS. Default: false.
	AllowPrivateAddresses bool `json:"allow_private_addresses,omitempty"`
	// AllowLoopback lets webhooks reach loopback only (a receiver on the
	// same host, tests). Default: false.
	AllowLoopback bool `json:"allow_loopback,omitempty"`

	// SMTP is the server e-mail notifications go through. Default: none
	// (e-mail deliveries fail at once).
	SMTP *SMTPConfig `json:"smtp,omitempty"`

	// LeakReportKeys are the public keys that sign leak reports
	// (GitHub secret scanning: https://api.github.com/meta/public_keys/secret_scanning).
	// Default: none (the keygate_leaks handler refuses every report).
	LeakReportKeys []LeakReportKey `json:"leak_report_keys,omitempty"`
}

// FailureBurstConfig is what counts as a burst of failed authentications.
type FailureBurstConfig struct {
	// Threshold is the number of failures. Default: 20.
	Threshold int `json:"threshold,omitempty"`
	// Window they must fall in. Default: 1m.
	Window caddy.Duration `json:"window,omitempty"`
}

// SMTPConfig is the SMTP server of e-mail notifications.
type SMTPConfig struct {
	// Address is host:port of the submission server (587 for STARTTLS,
	// 465 for tls). Required.
	Address string `json:"address,omitempty"`
	// Username and Password authenticate with SMTP AUTH; use a
	// placeholder such as {env.SMTP_PASSWORD}. Default: no AUTH.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// From is the sender, e.g. "keygate <noreply@example.com>". Required.
	From string `json:"from,omitempty"`
	// Security is starttls (the server must offer it), tls (from the first
	// byte) or none (a relay on the same host). Default: starttls.
	Security string `json:"security,omitempty"`
	// CA is a PEM file of the CA certificates that verify the server,
	// instead of the system roots. Default: system roots.
	CA string `json:"ca,omitempty"`
}

// LeakReportKey is one public key of a leak reporter.
type LeakReportKey struct {
	// ID is the key identifier the reporter names
	// (Github-Public-Key-Identifier).
	ID string `json:"id,omitempty"`
	// PEM is the ECDSA P-256 public key (PEM); or File names a file with it.
	PEM  string `json:"pem,omitempty"`
	File string `json:"file,omitempty"`
}

// eventsRuntime is what an App runs for events.
type eventsRuntime struct {
	cfg        EventsConfig
	dispatcher *events.Dispatcher
	queue      *events.Queue
	limits     *events.LimitWatcher
	failures   *events.FailureWatcher
	reminders  []time.Duration
	leakKeys   map[string]*ecdsa.PublicKey
}

var (
	eventDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "event_deliveries_total",
		Help: "Event delivery attempts, by kind (webhook, email) and result (delivered, retry, failed).",
	}, []string{"kind", "result"})
	eventsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "events_dropped_total",
		Help: "Request-path events (limits, failure bursts) dropped because the node's event queue was full.",
	})
	leakReports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "leak_reports_total",
		Help: "Tokens in leak reports, by result (true_positive, false_positive), and refused reports (refused).",
	}, []string{"result"})
)

func init() {
	collectors = append(collectors, eventDeliveries, eventsDropped, leakReports)
}

// limitWatcher and failureWatcher are nil-safe accessors (an App built
// without setup, as some tests do, has no events).
func (rt *eventsRuntime) limitWatcher() *events.LimitWatcher {
	if rt == nil {
		return nil
	}
	return rt.limits
}

func (rt *eventsRuntime) failureWatcher() *events.FailureWatcher {
	if rt == nil {
		return nil
	}
	return rt.failures
}

// setupEvents builds the dispatcher, queue and watchers (no I/O).
func (a *App) setupEvents(repl *caddy.Replacer, logger *zap.Logger) error {
	cfg := EventsConfig{}
	if a.Events != nil {
		cfg = *a.Events
	}
	day := 24 * time.Hour
	rt := &eventsRuntime{cfg: cfg, reminders: []time.Duration{14 * day, 3 * day, day}}
	if len(cfg.ExpiryReminders) > 0 {
		rt.reminders = rt.reminders[:0]
		for _, d := range cfg.ExpiryReminders {
			if d <= 0 {
				return errors.New("events expiry_reminders: must be positive durations")
			}
			rt.reminders = append(rt.reminders, time.Duration(d))
		}
	}
	for _, t := range cfg.RateLimitThresholds {
		if t <= 0 || t > 100 {
			return fmt.Errorf("events ratelimit_thresholds %d: must be between 1 and 100", t)
		}
	}
	var mailer events.Mailer
	if sc := cfg.SMTP; sc != nil {
		var tc *tls.Config
		if ca := repl.ReplaceAll(sc.CA, ""); ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return fmt.Errorf("events smtp ca: %w", err)
			}
			tc = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("events smtp ca %s: no PEM certificate", ca)
			}
		}
		m, err := events.NewSMTP(events.SMTPConfig{
			Address: repl.ReplaceAll(sc.Address, ""), Username: repl.ReplaceAll(sc.Username, ""),
			Password: repl.ReplaceAll(sc.Password, ""), From: repl.ReplaceAll(sc.From, ""),
			Security: sc.Security, TLSConfig: tc,
		})
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		mailer = m
	}
	rt.leakKeys = map[string]*ecdsa.PublicKey{}
	for _, k := range cfg.LeakReportKeys {
		data := []byte(repl.ReplaceAll(k.PEM, ""))
		if k.File != "" {
			var err error
			if data, err = os.ReadFile(repl.ReplaceAll(k.File, "")); err != nil {
				return fmt.Errorf("events leak report key %s: %w", k.ID, err)
			}
		}
		pub, err := events.ParseLeakPublicKey(data)
		if err != nil || k.ID == "" {
			return fmt.Errorf("events leak report key %q: %v", k.ID, err)
		}
		rt.leakKeys[k.ID] = pub
	}
	store := a.shared.store
	rt.queue = events.NewQueue(store, 0)
	rt.limits = events.NewLimitWatcher(rt.queue, cfg.RateLimitThresholds)
	fb := FailureBurstConfig{}
	if cfg.AuthFailures != nil {
		fb = *cfg.AuthFailures
	}
	rt.failures = events.NewFailureWatcher(rt.queue, fb.Threshold, time.Duration(fb.Window))
	sealer := a.sealer
	var open func(w *keys.Webhook, sealed []byte) (string, error)
	if sealer != nil {
		open = func(w *keys.Webhook, sealed []byte) (string, error) {
			pt, err := sealer.Open(sealed, keys.WebhookAAD(w.ID))
			return string(pt), err
		}
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout <= 0 {
		timeout = events.DefaultTimeout
	}
	rt.dispatcher = events.New(events.Options{
		Store: store, Source: cfg.Source, Mailer: mailer, OpenSecret: open, Timeout: timeout,
		HTTP:         events.NewHTTPClient(events.AddressPolicy{AllowPrivate: cfg.AllowPrivateAddresses, AllowLoopback: cfg.AllowLoopback}, timeout),
		Lease:        time.Duration(cfg.Lease),
		RetryInitial: time.Duration(cfg.RetryInitial), RetryMax: time.Duration(cfg.RetryMax), MaxAge: time.Duration(cfg.GiveUp),
		Poll:      time.Duration(cfg.Poll),
		Logger:    zapWarn{logger.Named("events").Sugar()},
		OnAttempt: func(kind, result string) { eventDeliveries.WithLabelValues(kind, result).Inc() },
	})
	rt.queue.OnWrite = rt.dispatcher.Wake
	a.events = rt
	return nil
}

// startEvents runs the dispatcher, the queue and the expiry scan until ctx ends.
func (a *App) startEvents(ctx context.Context) {
	rt := a.events
	if rt == nil {
		return
	}
	go rt.queue.Run(ctx, func(err error) {
		a.logger.Warn("writing request-path events to the outbox", zap.Error(err))
	})
	go rt.failures.Run(ctx, func(err error) {
		a.logger.Warn("adding failed authentications to the store's counts", zap.Error(err))
	})
	if rt.cfg.Off {
		return
	}
	a.shared.addWaker(rt.dispatcher)
	go func() {
		<-ctx.Done()
		a.shared.removeWaker(rt.dispatcher)
	}()
	go rt.dispatcher.Run(ctx)
	go a.scanExpiry(ctx)
	go func() { // the dropped-event counter, from the queue's own count
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		var seen int64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if n := rt.queue.Dropped(); n > seen {
					eventsDropped.Add(float64(n - seen))
					seen = n
				}
			}
		}
	}()
}

// scanExpiry emits key.expiring and key.expired as they come due.
func (a *App) scanExpiry(ctx context.Context) {
	rt := a.events
	every := time.Duration(rt.cfg.ScanInterval)
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := a.shared.store.ScanKeyExpiry(sctx, time.Now(), rt.reminders, 500)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("checking keys for expiry reminders", zap.Error(err))
		}
		if n > 0 {
			rt.dispatcher.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purgeDeliveries removes finished deliveries past retention.
func (a *App) purgeDeliveries(ctx context.Context) {
	keep := 7 * 24 * time.Hour
	if a.events != nil && a.events.cfg.Retention > 0 {
		keep = time.Duration(a.events.cfg.Retention)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := a.shared.store.PurgeDeliveries(sctx, time.Now().Add(-keep)); err != nil {
		a.logger.Warn("purging old deliveries", zap.Error(err))
	}
}

// addWaker and removeWaker register a dispatcher to wake after changes
// made through this process.
func (s *sharedStore) addWaker(d *events.Dispatcher) {
	s.mu.Lock()
	if s.wakers == nil {
		s.wakers = map[*events.Dispatcher]struct{}{}
	}
	s.wakers[d] = struct{}{}
	s.mu.Unlock()
}

func (s *sharedStore) removeWaker(d *events.Dispatcher) {
	s.mu.Lock()
	delete(s.wakers, d)
	s.mu.Unlock()
}

// LeakHandler is the `keygate_leaks` handler: the endpoint of GitHub's
// secret scanning partner program. It takes a signed POST of
// [{token, type, url, source}], verifies the signature against the
// configured public keys (events { leak_report_keys }), and for each token
// that is a live keygate key revokes or flags it by its tenant's policy
// and emits key.leaked. It answers with GitHub's feedback format (hashed
// tokens, true_positive or false_positive); an unsigned or badly signed
// report is 401 and changes nothing.
type LeakHandler struct {
	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (LeakHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.keygate_leaks",
		New: func() caddy.Module { return new(LeakHandler) },
	}
}

// Provision takes the keygate app.
func (h *LeakHandler) Provision(ctx caddy.Context) error {
	app, err := keygateApp(ctx)
	if err != nil {
		return err
	}
	h.app, h.logger = app, ctx.Logger()
	return nil
}

// maxLeakBody bounds a report body.
const maxLeakBody = 1 << 20

// ServeHTTP implements caddyhttp.MiddlewareHandler; it never calls next.
func (h *LeakHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeProblemStatus(w, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "POST a leak report")
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLeakBody))
	if err != nil {
		writeProblemStatus(w, http.StatusRequestEntityTooLarge, "payload-too-large", "Payload too large", "leak reports are limited to 1 MiB")
		return nil
	}
	var keys map[string]*ecdsa.PublicKey
	if h.app.events != nil {
		keys = h.app.events.leakKeys
	}
	if err := events.VerifyLeakReport(keys, r.Header.Get(events.LeakKeyIDHeader), r.Header.Get(events.LeakSignatureHeader), body); err != nil {
		leakReports.WithLabelValues("refused").Inc()
		h.logger.Warn("leak report refused", zap.Error(err))
		writeProblemStatus(w, http.StatusUnauthorized, "unauthorized", "Unauthorized", "the report's signature does not verify")
		return nil
	}
	reports, err := events.ParseLeakReports(body)
	if err != nil {
		writeProblemStatus(w, http.StatusBadRequest, "bad-request", "Bad request", err.Error())
		return nil
	}
	out := make([]events.LeakFeedback, 0, len(reports))
	for _, rep := range reports {
		ok, err := h.handle(r.Context(), rep)
		if err != nil {
			h.logger.Warn("handling a leak report", zap.Error(err))
			w.Header().Set("Retry-After", "5")
			writeProblemStatus(w, http.StatusServiceUnavailable, "store-unavailable", "Service unavailable", "retry later")
			return nil
		}
		label := "false_positive"
		if ok {
			label = "true_positive"
		}
		leakReports.WithLabelValues(label).Inc()
		out = append(out, events.NewLeakFeedback(rep, ok))
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
	return nil
}

// handle acts on one reported token: true when it is a keygate key (the
// checksum, the stored record and its hash all agree).
func (h *LeakHandler) handle(ctx context.Context, rep events.LeakReport) (bool, error) {
	id, ok := keys.ParseAccessKey(rep.Token)
	if !ok {
		return false, nil
	}
	store := h.app.shared.store
	k, err := store.GetKey(ctx, id)
	if errors.Is(err, keys.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !h.app.hasher.Verify(rep.Token, k.Hash) {
		return false, nil
	}
	after, err := store.ReportLeak(ctx, id, keys.Leak{URL: rep.URL, Source: rep.Source, Reporter: "github"}, "leak-report:github")
	if err != nil {
		return false, err
	}
	h.logger.Warn("leaked key reported", zap.String("key_id", k.ID), zap.String("user_id", k.UserID),
		zap.String("status", string(after.Status)), zap.String("url", rep.URL))
	return true, nil
}

// zapWarn is the events.Logger on zap.
type zapWarn struct{ s *zap.SugaredLogger }

func (z zapWarn) Warn(msg string, kv ...any) { z.s.Warnw(msg, kv...) }

// writeProblemStatus answers an RFC 9457 problem.
func writeProblemStatus(w http.ResponseWriter, status int, slug, title, detail string) {
	b, _ := json.Marshal(map[string]any{"type": ProblemTypeBase + slug, "title": title, "status": status, "detail": detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

var (
	_ caddy.Provisioner           = (*LeakHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*LeakHandler)(nil)
)
