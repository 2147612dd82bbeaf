package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
)

// These tests break a private redis-server, never the shared one.

// faultMargin is what a failing call may take beyond its timeout (scheduling
// under -race on a busy machine).
const faultMargin = 300 * time.Millisecond

// privateBackend returns a Backend with the default timeout on a private
// server.
func privateBackend(t *testing.T) (*redisstore.Backend, *testredis.Server) {
	t.Helper()
	srv := testredis.StartServer(t)
	client := redisstore.NewClient(redisstore.Options{Addrs: []string{srv.Addr}})
	t.Cleanup(func() { client.Close() })
	b := redisstore.New(client, redisstore.Options{})
	t.Cleanup(func() { b.Close() })
	return b, srv
}

// ops are the calls a fault must bound, each with the time it may take.
func ops(b *redisstore.Backend) map[string]func() error {
	return map[string]func() error{
		"ping": func() error { return b.Ping(context.Background()) },
		"get": func() error {
			return b.View(context.Background(), func(tx keys.Tx) error {
				_, err := tx.Get("users", "1")
				return err
			})
		},
		"update": func() error {
			return b.Update(context.Background(), func(tx keys.Tx) error {
				if _, err := tx.Get("users", "1"); err != nil && !errors.Is(err, keys.ErrNotFound) {
					return err
				}
				return tx.Put("users", "1", []byte("x"))
			})
		},
	}
}

func expectUnavailable(t *testing.T, b *redisstore.Backend, what string) {
	t.Helper()
	for name, op := range ops(b) {
		start := time.Now()
		err := op()
		took := time.Since(start)
		if !errors.Is(err, keys.ErrUnavailable) {
			t.Errorf("%s: %s: err = %v, want ErrUnavailable", what, name, err)
		}
		if took > redisstore.DefaultTimeout+faultMargin {
			t.Errorf("%s: %s took %v, want at most %v + %v", what, name, took, redisstore.DefaultTimeout, faultMargin)
		}
	}
}

func expectWorking(t *testing.T, b *redisstore.Backend, what string) {
	t.Helper()
	// The first call after a restart may still meet a dead pooled
	// connection; the backend must recover within a few calls.
	deadline := time.Now().Add(3 * time.Second)
	for name, op := range ops(b) {
		for {
			err := op()
			if err == nil || errors.Is(err, keys.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s: %v", what, name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestRedisStopped(t *testing.T) {
	b, srv := privateBackend(t)
	expectWorking(t, b, "before stop")
	srv.Stop()
	expectUnavailable(t, b, "stopped")
	start := time.Now()
	err := b.Subscribe(context.Background(), keys.Listener{Change: func(keys.Invalidation) {}})
	if !errors.Is(err, keys.ErrUnavailable) || time.Since(start) > redisstore.DefaultTimeout+faultMargin {
		t.Errorf("Subscribe on a stopped server: err = %v after %v, want ErrUnavailable", err, time.Since(start))
	}
	srv.Start()
	expectWorking(t, b, "restarted")
}

func TestRedisPaused(t *testing.T) {
	b, srv := privateBackend(t)
	expectWorking(t, b, "before pause")
	admin := srv.Client()
	if err := admin.Do(context.Background(), "client", "pause", 2000).Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	expectUnavailable(t, b, "paused")
	if err := admin.Do(context.Background(), "client", "unpause").Err(); err != nil {
		t.Fatalf("CLIENT UNPAUSE: %v", err)
	}
	expectWorking(t, b, "unpaused")
}

// TestSubscriptionDrop kills the subscription's connection: lost must be
// called and delivery must resume on the new subscription.
func TestSubscriptionDrop(t *testing.T) {
	b, srv := privateBackend(t)
	raw := srv.Client()
	ctx := context.Background()
	r := newRecorder()
	subscribe(t, b, r, raw)

	notify := func(user string) error {
		return b.Update(ctx, func(tx keys.Tx) error {
			tx.Notify(keys.Invalidation{UserID: user})
			return nil
		})
	}
	if err := notify("before"); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); got.UserID != "before" {
		t.Fatalf("got %+v", got)
	}

	if err := raw.Do(ctx, "client", "kill", "type", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	// lost is called for the drop and again once the subscription is back.
	deadline := time.Now().Add(5 * time.Second)
	for r.lost.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("lost called %d times after the drop, want 2", r.lost.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitSubscribed(t, raw, b.Channel())
	if err := notify("after"); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); got.UserID != "after" {
		t.Fatalf("after the drop: got %+v", got)
	}
	// Confirmations resume on the new subscription, and only vouch for
	// times after it came back (checkConfirms, at cleanup).
	var back time.Time
	for _, e := range r.events() {
		if e.kind == "gap" {
			back = e.at
		}
	}
	r.waitConfirm(t, back)
}

// TestSubscriptionServerRestart stops the server under a subscription and
// starts it again: lost is called and delivery resumes.
func TestSubscriptionServerRestart(t *testing.T) {
	b, srv := privateBackend(t)
	ctx := context.Background()
	r := newRecorder()
	subscribe(t, b, r, srv.Client())

	srv.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for r.lost.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("lost not called while the server is down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Start()
	waitSubscribed(t, srv.Client(), b.Channel())
	for r.lost.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("lost not called after the subscription came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := b.Update(ctx, func(tx keys.Tx) error {
		tx.Notify(keys.Invalidation{KeyID: "k"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); got.KeyID != "k" {
		t.Fatalf("after restart: got %+v", got)
	}
}

// TestSubscriptionPaused: a server that stops answering is detected by the
// health PING, without a connection error.
func TestSubscriptionPaused(t *testing.T) {
	b, srv := privateBackend(t)
	admin := srv.Client()
	r := newRecorder()
	subscribe(t, b, r, admin)
	if err := admin.Do(context.Background(), "client", "pause", 4000).Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	deadline := time.Now().Add(3900 * time.Millisecond)
	for r.lost.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("lost not called while the server is paused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = admin.Do(context.Background(), "client", "unpause").Err()
}
