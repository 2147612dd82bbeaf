// Package testredis gives tests a real Redis: the shared server at REDIS_URL
// (default redis://127.0.0.1:6379) under a key prefix of their own, or a
// private redis-server on a free port that a fault test may stop or pause.
//
// Without a reachable Redis a test is skipped, except when CI=true, where it
// fails: CI must never pass by skipping.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testport"
)

// DefaultURL is used when REDIS_URL is not set.
const DefaultURL = "redis://127.0.0.1:6379"

// URL returns REDIS_URL or DefaultURL.
func URL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Options parses URL() with go-redis ParseURL.
func Options(t testing.TB) *redis.Options {
	t.Helper()
	opt, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", URL(), err)
	}
	return opt
}

// unavailable skips the test, or fails it under CI=true.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("redis required under CI=true: %s", msg)
	}
	t.Skipf("redis not available (set REDIS_URL or start redis-server): %s", msg)
}

// Client connects to the shared Redis and returns a client and a key prefix
// unique to this test. Keys under the prefix are deleted when the test ends.
func Client(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	opt := Options(t)
	client := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		unavailable(t, "ping %s: %v", opt.Addr, err)
	}
	prefix := Prefix(t)
	t.Cleanup(func() {
		DeletePrefix(client, prefix)
		client.Close()
	})
	return client, prefix
}

// Prefix returns a fresh key prefix for t, ending in ':'.
func Prefix(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return "kgtest:" + name + ":" + hex.EncodeToString(b) + ":"
}

// DeletePrefix removes every key under prefix (tests only: it SCANs).
func DeletePrefix(client redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			client.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		client.Del(ctx, batch...)
	}
}

// Server is a private redis-server started by a test.
type Server struct {
	Addr string
	Port int
	cmd  *exec.Cmd
	// exited is closed when cmd has exited.
	exited chan struct{}
	out    *syncBuffer
	t      testing.TB
	args   []string
	// release lets go of the port held while the server is stopped.
	release func()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (see
// testport.Free: a redis-server started on it may still find it taken;
// StartServer retries on another one).
func FreePort(t testing.TB) int {
	t.Helper()
	return testport.Free(t)
}

// StartServer starts a private redis-server (no persistence, debug
// commands enabled) on a free port; it is stopped when the test ends. A
// port taken by someone else before the server bound it is replaced by
// another (testport.Start).
func StartServer(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server binary not found: %v", err)
	}
	s := &Server{t: t}
	dir := t.TempDir()
	t.Cleanup(s.cleanup)
	testport.Start(t, nil, func(port int) error {
		s.Port = port
		s.Addr = "127.0.0.1:" + strconv.Itoa(port)
		s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--enable-debug-command", "yes", "--dir", dir}
		return s.start()
	})
	return s
}

// Start restarts the server (after Stop) on its port and waits until it
// answers.
func (s *Server) Start() {
	s.t.Helper()
	if s.release != nil {
		s.release()
		s.release = nil
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("restarting redis-server on %s: %v", s.Addr, err)
	}
}

// start runs redis-server and waits until it answers as itself: a reply
// from another process that holds the port (its INFO names another
// process id) or the server exiting because the port is taken is ErrInUse.
func (s *Server) start() error {
	s.out = &syncBuffer{}
	s.cmd = exec.Command("redis-server", s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	s.exited = exited
	// Short timeouts: a listener that is not Redis must not hold a probe.
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, ContextTimeoutEnabled: true,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	defer c.Close()
	want := "process_id:" + strconv.Itoa(cmd.Process.Pid) + "\r\n"
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.cmd = nil
			if testport.InUse(s.out.String()) {
				return fmt.Errorf("redis-server on %s: %w", s.Addr, testport.ErrInUse)
			}
			return fmt.Errorf("redis-server on %s exited:\n%s", s.Addr, s.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if strings.Contains(info, want) {
				return nil
			}
			// Someone else answers on the port: ours cannot bind it.
			s.kill()
			return fmt.Errorf("another process answers on %s: %w", s.Addr, testport.ErrInUse)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("redis-server on %s did not answer within 10s:\n%s", s.Addr, s.out.String())
}

// Stop kills the server (by its own PID) and waits for it to exit. Until
// Start, the port is held (testport.Hold) so that nothing else takes it.
func (s *Server) Stop() {
	if s.kill() && s.release == nil {
		s.release = testport.Hold(s.Port)
	}
}

// kill kills the server, if it runs, and waits for it; it reports whether
// it did.
func (s *Server) kill() bool {
	if s.cmd == nil || s.cmd.Process == nil {
		return false
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	return true
}

// cleanup ends the server for good when the test ends.
func (s *Server) cleanup() {
	s.kill()
	if s.release != nil {
		s.release()
		s.release = nil
	}
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Client returns a client for the private server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { c.Close() })
	return c
}
