// Package redistopo starts the Redis topologies keygate supports, for tests:
// a Redis Cluster of three masters and three replicas, a Sentinel group (one
// master, one replica, three sentinels) and a single server with TLS and an
// ACL user restricted to what keygate needs. Every process is a Debian
// redis-server (sentinels run as redis-server --sentinel) on a free loopback
// port with a private data directory, and is killed by its PID when the test
// ends.
//
// Without the binaries a test is skipped, except under CI=true, where it
// fails: CI must never pass by skipping.
package redistopo

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testport"
)

// startTimeout bounds how long a topology may take to come up.
const startTimeout = 30 * time.Second

// Node is one redis-server process (a data node or a sentinel).
type Node struct {
	Addr string
	Port int
	Dir  string

	t    testing.TB
	args []string
	tls  *tls.Config // client TLS config when the node only listens with TLS
	auth [2]string   // username, password for the test's own client

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when cmd has exited.
	exited chan struct{}
}

// need skips the test (or fails it under CI=true) when a binary is missing.
func need(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			msg := fmt.Sprintf("%s not found (Debian packages redis-server and redis-tools): %v", b, err)
			if os.Getenv("CI") == "true" {
				t.Fatalf("redis topology required under CI=true: %s", msg)
			}
			t.Skip(msg)
		}
	}
}

// freePort returns a loopback port that was free a moment ago; with bus
// set, port+10000 (the cluster bus) was free too. A node started on it may
// still find it taken: startNode retries.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		lb, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		l.Close()
		if err != nil {
			continue
		}
		lb.Close()
		return port
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// newNode prepares a node on port with a private directory; args follow the
// config file (if any) on the command line.
func newNode(t testing.TB, port int, args ...string) *Node {
	dir := t.TempDir()
	return &Node{
		Addr: "127.0.0.1:" + strconv.Itoa(port),
		Port: port,
		Dir:  dir,
		t:    t,
		args: args,
	}
}

// startNode starts a node on a free port (with bus, port+10000 free too):
// configure sets its arguments and writes its config for n.Port. A port
// that someone else took before the node bound it is replaced by another,
// configured afresh (testport.Start).
func startNode(t testing.TB, bus bool, configure func(n *Node)) *Node {
	t.Helper()
	var n *Node
	testport.Start(t, func(t testing.TB) int { return freePort(t, bus) }, func(port int) error {
		n = newNode(t, port)
		configure(n)
		return n.start()
	})
	return n
}

// start runs the process and waits until it answers PING as itself: when
// it exits because its port is taken, or another process answers there (its
// INFO names another process id), the error wraps testport.ErrInUse.
func (n *Node) start() error {
	n.mu.Lock()
	n.cmd = exec.Command("redis-server", n.args...)
	n.cmd.Dir = n.Dir
	logf, err := os.Create(filepath.Join(n.Dir, "stdout.log"))
	if err == nil {
		n.cmd.Stdout, n.cmd.Stderr = logf, logf
		defer logf.Close()
	}
	if err := n.cmd.Start(); err != nil {
		n.mu.Unlock()
		return fmt.Errorf("starting redis-server %v: %w", n.args, err)
	}
	cmd := n.cmd
	n.exited = make(chan struct{})
	exited := n.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	n.mu.Unlock()
	n.t.Cleanup(n.Kill)
	// Short timeouts: a listener that is not Redis must not hold a probe.
	opts := n.options()
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	defer c.Close()
	want := "process_id:" + strconv.Itoa(cmd.Process.Pid) + "\r\n"
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			n.Kill()
			if testport.InUse(n.Log()) {
				return fmt.Errorf("redis-server on %s: %w", n.Addr, testport.ErrInUse)
			}
			return fmt.Errorf("redis-server on %s exited:\n%s", n.Addr, n.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if strings.Contains(info, want) {
				return nil
			}
			n.Kill()
			return fmt.Errorf("another process answers on %s: %w", n.Addr, testport.ErrInUse)
		}
		if time.Now().After(deadline) {
			n.Kill()
			return fmt.Errorf("redis-server on %s does not answer: %v\n%s", n.Addr, err, n.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns what the process printed (its log goes to stdout).
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "stdout.log"))
	return string(b)
}

// Kill stops the process with SIGKILL (by its own PID) and waits for it.
// It is idempotent, and safe after the process died.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// Alive reports whether the process runs.
func (n *Node) Alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Client returns a plain client for this one node (the caller closes it),
// authenticated as the topology's administrator.
func (n *Node) Client() *redis.Client { return redis.NewClient(n.options()) }

// options are the options of Client.
func (n *Node) options() *redis.Options {
	return &redis.Options{
		Addr:         n.Addr,
		Username:     n.auth[0],
		Password:     n.auth[1],
		TLSConfig:    n.tls,
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		MaxRetries:   -1,
	}
}

// Do runs one command on this node within 2 s.
func (n *Node) Do(args ...any) (any, error) {
	c := n.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", strings.Join(strArgs(args), " "), n.Addr, err)
	}
	return v, nil
}

// Info returns the fields of INFO section on this node.
func (n *Node) Info(section string) (map[string]string, error) {
	v, err := n.Do("info", section)
	if err != nil {
		return nil, err
	}
	s, _ := v.(string)
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, val, ok := strings.Cut(line, ":"); ok {
			out[k] = val
		}
	}
	return out, nil
}

func strArgs(args []any) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = fmt.Sprint(a)
	}
	return out
}

// waitFor polls cond every 50 ms until it holds, failing t after timeout
// with the last error.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dataArgs are the arguments every data node shares: loopback only, no
// persistence to disk, in its private directory.
func dataArgs(n *Node) []string {
	return []string{"--bind", "127.0.0.1", "--dir", n.Dir, "--save", "", "--appendonly", "no",
		"--enable-debug-command", "local",
		// A replica syncs at once, not after the default 5 s delay.
		"--repl-diskless-sync-delay", "0"}
}
