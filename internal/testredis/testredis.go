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
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	t    testing.TB
	args []string
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartServer starts a private redis-server (no persistence, debug
// commands enabled) on a free port; it is stopped when the test ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server binary not found: %v", err)
	}
	s := &Server{Port: FreePort(t), t: t}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.Port)
	s.args = []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--enable-debug-command", "yes", "--dir", t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its port and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not answer within 10s", s.Addr)
}

// Stop kills the server (by its own PID) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Client returns a client for the private server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { c.Close() })
	return c
}
