package events

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/keygate/keygate/keys"
)

// Defaults of Options.
const (
	DefaultLease        = time.Minute
	DefaultRetryInitial = 5 * time.Second
	DefaultRetryMax     = time.Hour
	DefaultMaxAge       = 24 * time.Hour
	DefaultPoll         = time.Second
	DefaultConcurrency  = 8
	DefaultTimeout      = 10 * time.Second
)

// Options configure a Dispatcher.
type Options struct {
	// Store is the outbox. Required.
	Store keys.EventStore
	// Node names this process in leases; unique per process. Default:
	// host name and a random suffix.
	Node string
	// Source is the CloudEvents source. Default: DefaultSource.
	Source string
	// HTTP sends webhooks. Default: NewHTTPClient(AddressPolicy{}, Timeout).
	HTTP *http.Client
	// Timeout bounds one attempt. Default: 10s.
	Timeout time.Duration
	// Mailer sends e-mail; nil: e-mail deliveries fail at once (no SMTP
	// server configured).
	Mailer Mailer
	// OpenSecret unseals one of webhook w's signing secrets (its current
	// one, or the one a rotation replaced, during the grace period).
	// Required for webhooks.
	OpenSecret func(w *keys.Webhook, sealed []byte) (string, error)
	// Lease is how long an attempt owns its delivery; another node takes
	// it over after that. Default: 1m (more than Timeout).
	Lease time.Duration
	// RetryInitial and RetryMax bound the backoff between attempts (it
	// doubles from RetryInitial up to RetryMax, each delay drawn between
	// half and all of it). MaxAge is how long after the first attempt
	// deliveries are retried. Defaults: 5s, 1h, 24h.
	RetryInitial, RetryMax, MaxAge time.Duration
	// Poll is how often the outbox and due deliveries are checked when
	// nothing wakes the dispatcher. Default: 1s.
	Poll time.Duration
	// Concurrency bounds the attempts in flight. Default: 8.
	Concurrency int
	// Logger gets delivery problems (never secrets or bodies). Default: discard.
	Logger Logger
	// OnAttempt is told each attempt's kind and result (delivered, retry,
	// failed), for metrics. Optional.
	OnAttempt func(kind, result string)
	// Now returns the time. Default: time.Now.
	Now func() time.Time
}

// Logger is what the dispatcher logs to; *slog.Logger is one.
type Logger interface {
	Warn(msg string, args ...any)
}

// Dispatcher moves events from the outbox to their receivers. Run it on
// every node: the store's leases make each delivery one node's.
type Dispatcher struct {
	o    Options
	wake chan struct{}
	sem  chan struct{}
	wg   sync.WaitGroup
}

// NewNodeID returns a node name: the host name and a random suffix.
func NewNodeID() string {
	h, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	return h + "-" + hex.EncodeToString(b)
}

// New returns a Dispatcher.
func New(o Options) *Dispatcher {
	if o.Node == "" {
		o.Node = NewNodeID()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.HTTP == nil {
		o.HTTP = NewHTTPClient(AddressPolicy{}, o.Timeout)
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Lease < 2*o.Timeout {
		o.Lease = 2 * o.Timeout
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = DefaultRetryInitial
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Dispatcher{o: o, wake: make(chan struct{}, 1), sem: make(chan struct{}, o.Concurrency)}
}

// Node returns the dispatcher's node name.
func (d *Dispatcher) Node() string { return d.o.Node }

// Wake makes the dispatcher look at the outbox now (after a change on
// this node). It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches and attempts until ctx ends, then waits for the attempts
// in flight.
func (d *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.o.Poll)
	defer t.Stop()
	defer d.wg.Wait()
	for {
		d.cycle(ctx)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}

// cycle dispatches the outbox and claims what is due, as far as there are
// free attempt slots.
func (d *Dispatcher) cycle(ctx context.Context) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ds, err := d.o.Store.DispatchEvents(sctx, d.o.Now(), d.o.Node, d.o.Lease, 100)
		cancel()
		if err != nil {
			d.o.Logger.Warn("events: dispatching the outbox", "error", err)
			break
		}
		for _, dl := range ds {
			d.start(ctx, dl)
		}
		if len(ds) == 0 {
			// Events nobody subscribes to make no deliveries: go on
			// while the outbox holds more.
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			more, err := d.o.Store.PendingEvents(sctx)
			cancel()
			if err != nil || !more {
				break
			}
		}
	}
	for ctx.Err() == nil {
		free := cap(d.sem) - len(d.sem)
		if free <= 0 {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ds, err := d.o.Store.ClaimDeliveries(sctx, d.o.Now(), d.o.Node, d.o.Lease, free)
		cancel()
		if err != nil {
			d.o.Logger.Warn("events: claiming due deliveries", "error", err)
			return
		}
		for _, dl := range ds {
			d.start(ctx, dl)
		}
		if len(ds) < free {
			return
		}
	}
}

// start attempts dl in a goroutine once a slot is free.
func (d *Dispatcher) start(ctx context.Context, dl keys.Delivery) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
			return // the lease passes; this or another node tries again
		}
		defer func() { <-d.sem }()
		d.attempt(ctx, dl)
	}()
}

// errPermanent marks a failure that no retry can fix.
var errPermanent = errors.New("permanent")

// attempt delivers dl once and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, dl keys.Delivery) {
	now := d.o.Now()
	actx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	status, err := d.send(actx, &dl, now)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the lease passes and the attempt is made again
	}
	a := keys.Attempt{At: now, OK: err == nil, Status: status}
	result := "delivered"
	if err != nil {
		a.Error = err.Error()
		if !errors.Is(err, errPermanent) {
			a.Next = d.next(&dl, now)
		}
		result = "retry"
		if a.Next.IsZero() {
			result = "failed"
			d.o.Logger.Warn("events: giving up a delivery", "delivery", dl.ID, "kind", dl.Kind, "attempts", dl.Attempts+1, "error", a.Error)
		}
	}
	if d.o.OnAttempt != nil {
		d.o.OnAttempt(dl.Kind, result)
	}
	// Record it, retrying while the store is unreachable (for up to half
	// the lease); if that fails, the lease passes and the delivery is
	// attempted again: at least once.
	deadline := time.Now().Add(d.o.Lease / 2)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := d.o.Store.FinishDelivery(sctx, dl.ID, d.o.Node, a)
		cancel()
		if err == nil || errors.Is(err, keys.ErrNotFound) {
			return
		}
		if time.Now().Add(wait).After(deadline) {
			d.o.Logger.Warn("events: recording a delivery attempt", "delivery", dl.ID, "error", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// next is when to try again, or zero to give up: exponential backoff with
// jitter, never past MaxAge after the series started.
func (d *Dispatcher) next(dl *keys.Delivery, now time.Time) time.Time {
	end := dl.Since.Add(d.o.MaxAge)
	if !now.Before(end) {
		return time.Time{}
	}
	delay := d.o.RetryInitial
	for i := 0; i < dl.Attempts && delay < d.o.RetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, d.o.RetryMax)
	delay = delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
	at := now.Add(delay)
	if at.After(end) {
		at = end
	}
	return at
}

// send makes one attempt.
func (d *Dispatcher) send(ctx context.Context, dl *keys.Delivery, now time.Time) (int, error) {
	switch dl.Kind {
	case keys.DeliveryWebhook:
		w, err := d.o.Store.GetWebhook(ctx, dl.WebhookID)
		if errors.Is(err, keys.ErrNotFound) {
			return 0, fmt.Errorf("%w: the webhook was deleted", errPermanent)
		}
		if err != nil {
			return 0, fmt.Errorf("loading the webhook: %w", err)
		}
		if !w.Enabled {
			return 0, fmt.Errorf("%w: the webhook is disabled", errPermanent)
		}
		if d.o.OpenSecret == nil {
			return 0, fmt.Errorf("%w: no master key to open webhook secrets", errPermanent)
		}
		secret, err := d.o.OpenSecret(&w, w.SealedSecret)
		if err != nil {
			return 0, fmt.Errorf("%w: opening the signing secret: %w", errPermanent, err)
		}
		secrets := []string{secret}
		if prev := w.PreviousSecret(now); prev != nil {
			old, err := d.o.OpenSecret(&w, prev)
			if err != nil {
				return 0, fmt.Errorf("%w: opening the previous signing secret: %w", errPermanent, err)
			}
			secrets = append(secrets, old)
		}
		body, err := Render(dl.Event, d.o.Source)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errPermanent, err)
		}
		return post(ctx, d.o.HTTP, w.URL, secrets, dl.Event.ID, now, body)
	case keys.DeliveryEmail:
		if d.o.Mailer == nil {
			return 0, fmt.Errorf("%w: no SMTP server configured", errPermanent)
		}
		if err := d.o.Mailer.Send(ctx, Compose(dl.Event, dl.Address)); err != nil {
			return 0, err
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%w: unknown delivery kind %q", errPermanent, dl.Kind)
}
