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

// Subscribe implements keys.Notifier: it calls fn for every invalidation
// published on the channel, and blocks until ctx ends, then returns nil. It
// returns an error at once only when it cannot run (nil fn, closed Backend).
//
// When the connection drops (an error, or no answer to a health PING), it
// calls lost once, since notifications may be missed from then on, and
// subscribes again with a backoff; when the new subscription is confirmed it
// calls lost again, for what was published during the gap. Messages that are
// not a JSON keys.Invalidation are ignored. fn and lost run on Subscribe's
// goroutine, one at a time.
func (b *Backend) Subscribe(ctx context.Context, fn func(keys.Invalidation), lost func()) error {
	if fn == nil {
		return errors.New("redisstore: subscribe: nil callback")
	}
	if lost == nil {
		lost = func() {}
	}
	if err := b.checkOpen("subscribe"); err != nil {
		return err
	}
	missed := false // notifications may have been missed since the last confirmation
	backoff := minResubscribe
	for ctx.Err() == nil {
		_ = b.listen(ctx, fn, func() {
			backoff = minResubscribe
			if missed {
				missed = false
				lost()
			}
		})
		if ctx.Err() != nil || b.closed.Load() {
			return nil
		}
		if !missed {
			missed = true
			lost()
		}
		if sleep(ctx, backoff) != nil {
			return nil
		}
		backoff = min(2*backoff, maxResubscribe)
	}
	return nil
}

// listen runs one subscription until it fails or ctx ends. confirmed is
// called when Redis confirms the subscription.
func (b *Backend) listen(ctx context.Context, fn func(keys.Invalidation), confirmed func()) error {
	ps := b.client.Subscribe(ctx) // no channel yet: no I/O
	defer ps.Close()
	// Closing the PubSub interrupts a blocked receive when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	cctx, cancel := b.callCtx(ctx)
	err := ps.Subscribe(cctx, b.channel)
	cancel()
	if err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
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
			if m.Kind == "subscribe" && m.Channel == b.channel {
				confirmed()
			}
		case *redis.Message:
			var inv keys.Invalidation
			if json.Unmarshal([]byte(m.Payload), &inv) == nil {
				fn(inv)
			}
		}
	}
}
