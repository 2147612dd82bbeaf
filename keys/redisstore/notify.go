package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
)

// Subscription tuning.
const (
	// healthInterval is how long the subscription may stay silent before it
	// is PINGed; when the PONG does not come within another interval, the
	// connection is treated as dropped.
	healthInterval = time.Second
	// resubscribe backoff after a drop.
	minResubscribe = 50 * time.Millisecond
	maxResubscribe = 2 * time.Second
)

// errNoPong reports a subscription connection that stopped answering.
var errNoPong = errors.New("subscription connection does not answer")

// Subscribe implements keys.Notifier. It subscribes to the invalidation
// channel and returns once Redis has confirmed the subscription (within the
// timeout), or with an error wrapping keys.ErrUnavailable when it could not;
// then fn is called for every invalidation published, from a goroutine that
// ends with ctx. fn and gap run on that goroutine, one at a time.
//
// When the connection drops (an error, or no answer to a health PING),
// gap(false) is called, since notifications may be missed from then on, and
// the goroutine subscribes again with a backoff; when the new subscription
// is confirmed, gap(true) is called, for what was published meanwhile.
// Messages that are not a JSON keys.Invalidation are ignored.
func (b *Backend) Subscribe(ctx context.Context, fn func(keys.Invalidation), gap func(live bool)) error {
	if fn == nil {
		return errors.New("redisstore: subscribe: nil callback")
	}
	if gap == nil {
		gap = func(bool) {}
	}
	if err := b.checkOpen("subscribe"); err != nil {
		return err
	}
	ps, err := b.subscribe(ctx)
	if err != nil {
		return unavailable("subscribe", err)
	}
	go b.deliver(ctx, ps, fn, gap)
	return nil
}

// subscribe opens a subscription to the channel and waits, within the
// timeout, for Redis to confirm it.
func (b *Backend) subscribe(ctx context.Context) (*redis.PubSub, error) {
	ps := b.client.Subscribe(ctx) // no channel yet: no I/O
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	if err := ps.Subscribe(cctx, b.channel); err != nil {
		_ = ps.Close()
		return nil, err
	}
	for {
		var wait time.Duration
		if d, ok := cctx.Deadline(); ok {
			wait = time.Until(d)
		}
		if wait <= 0 {
			_ = ps.Close()
			return nil, context.DeadlineExceeded
		}
		msg, err := ps.ReceiveTimeout(cctx, wait)
		if err != nil {
			_ = ps.Close()
			return nil, err
		}
		if s, ok := msg.(*redis.Subscription); ok && s.Kind == "subscribe" && s.Channel == b.channel {
			return ps, nil
		}
	}
}

// deliver runs the subscription until ctx ends, subscribing again after a
// drop.
func (b *Backend) deliver(ctx context.Context, ps *redis.PubSub, fn func(keys.Invalidation), gap func(live bool)) {
	for {
		_ = b.receive(ctx, ps, fn, gap)
		_ = ps.Close()
		if ctx.Err() != nil || b.closed.Load() {
			return
		}
		gap(false)
		for backoff := minResubscribe; ; backoff = min(2*backoff, maxResubscribe) {
			if sleep(ctx, backoff) != nil || b.closed.Load() {
				return
			}
			var err error
			if ps, err = b.subscribe(ctx); err == nil {
				break
			}
		}
		gap(true)
	}
}

// receive delivers the messages of ps until the connection fails or ctx
// ends.
func (b *Backend) receive(ctx context.Context, ps *redis.PubSub, fn func(keys.Invalidation), gap func(live bool)) error {
	// Closing the PubSub interrupts a blocked receive when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	awaitingPong := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("receiving: %w", err)
			}
			if awaitingPong || b.closed.Load() {
				return errNoPong
			}
			pctx, cancel := b.callCtx(ctx)
			err := ps.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("pinging: %w", err)
			}
			awaitingPong = true
			continue
		}
		awaitingPong = false // any message shows the connection is alive
		switch m := msg.(type) {
		case *redis.Subscription:
			// go-redis reconnected and subscribed again by itself:
			// messages of the gap are lost.
			if m.Kind == "subscribe" && m.Channel == b.channel {
				gap(true)
			}
		case *redis.Message:
			var inv keys.Invalidation
			if json.Unmarshal([]byte(m.Payload), &inv) == nil {
				fn(inv)
			}
		}
	}
}
