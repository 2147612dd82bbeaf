// Package testcaddy builds the keygate binary (cached across test runs) and
// starts real Caddy servers from Caddyfiles on ports reserved for the test
// (FreePort), each with its own admin address and data directory, stopped
// (by PID) when the test ends.
package testcaddy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testport"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/keygate (once per process) and returns its path.
//
// The binary (about 100 MB) is kept in the user cache directory
// (os.UserCacheDir()/keygate-test/<hash>/keygate), keyed by a hash of the Go
// version and every file that goes into the build, so later test runs of the
// same tree reuse it and no test run leaves a copy in the temp directory.
// Cached binaries of other trees not used for an hour are removed (the tree
// changes with every edit). KEYGATE_TEST_BIN names a
// prebuilt binary to use instead.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("KEYGATE_TEST_BIN"); p != "" {
			binPath = p
			return
		}
		binPath, buildErr = cachedBuild()
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cachedBuild returns the cached binary for the current source tree,
// building it first when there is none.
func cachedBuild() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	sum, err := sourceHash(root)
	if err != nil {
		return "", fmt.Errorf("hashing the source tree: %w", err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	cache := filepath.Join(base, "keygate-test")
	dir := filepath.Join(cache, sum)
	bin := filepath.Join(dir, "keygate")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if _, err := os.Stat(bin); err == nil {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // last use, for pruneCache
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the test binary cache: %w", err)
	}
	// Build next to the final name and rename: test processes of several
	// packages may build the same binary at once.
	tmp, err := os.CreateTemp(dir, "keygate-*.tmp")
	if err != nil {
		return "", fmt.Errorf("creating the test binary: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-o", tmp.Name(), "./cmd/keygate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keygate: %v\n%s", err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", fmt.Errorf("caching the test binary: %w", err)
	}
	pruneCache(cache, dir)
	return bin, nil
}

// sourceHash hashes the Go version and the files a build of ./cmd/keygate
// reads from the tree: go.mod, go.sum, and the non-test .go and embedded
// files outside testdata, hidden and node_modules directories.
func sourceHash(root string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case name == "go.mod", name == "go.sum", strings.HasSuffix(name, ".lua"),
			strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go"),
			strings.Contains(filepath.ToSlash(p), "/console/static/"): // the embedded web console
		default:
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// pruneCache removes cached binaries other than keep not used for an hour.
func pruneCache(cache, keep string) {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(cache, e.Name())
		if p == keep {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			_ = os.RemoveAll(p)
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 reserved for the rest of the
// test (testport.Reserve): no other process can take it between now and
// the moment a Caddy started later binds it (Caddy binds with SO_REUSEPORT,
// which the reservation lets through), however long the test takes to get
// there and whatever else runs on the machine.
func FreePort(t testing.TB) int {
	t.Helper()
	return testport.Reserve(t)
}

// Server is a running keygate (Caddy) process.
type Server struct {
	t         testing.TB
	cmd       *exec.Cmd
	Dir       string // working directory with the Caddyfile
	DataHome  string // XDG_DATA_HOME: Caddy's data dir is DataHome/caddy
	AdminAddr string
	// admin is what "{admin}" stands for in the Caddyfile.
	admin  string
	Config string
	Env    []string
	logs   *syncBuffer
	done   chan struct{}
}

// Options for Start.
type Options struct {
	// DataHome shares a data directory between servers (default: a new one).
	DataHome string
	// Env adds environment variables.
	Env []string
	// Wait lists URLs that must answer (any status) before Start returns.
	Wait []string
	// Admin, when set, is the address of Caddy's admin endpoint that
	// "{admin}" stands for: unix/<path>[|<mode>] for a Unix socket, or
	// host:port (a wildcard host is reached through 127.0.0.1). Default: a
	// reserved TCP port on 127.0.0.1.
	Admin string
}

// Start writes caddyfile (where "{admin}" is replaced with a free admin
// address) and runs `keygate run` on it.
func Start(t testing.TB, caddyfile string, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{t: t, Dir: t.TempDir(), DataHome: opts.DataHome, Env: opts.Env}
	if s.DataHome == "" {
		s.DataHome = t.TempDir()
	}
	admin := opts.Admin
	switch {
	case admin == "":
		admin = "127.0.0.1:" + strconv.Itoa(FreePort(t))
		s.AdminAddr = admin
	case strings.HasPrefix(admin, "unix/"):
		s.AdminAddr, _, _ = strings.Cut(admin, "|")
	default:
		host, port, err := net.SplitHostPort(admin)
		if err != nil {
			t.Fatalf("admin address %q: %v", admin, err)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		s.AdminAddr = net.JoinHostPort(host, port)
	}
	s.admin = admin
	s.Config = filepath.Join(s.Dir, "Caddyfile")
	if err := os.WriteFile(s.Config, []byte(strings.ReplaceAll(caddyfile, "{admin}", admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.logs = &syncBuffer{}
	s.cmd = exec.Command(bin, "run", "--config", s.Config, "--adapter", "caddyfile")
	s.cmd.Dir = s.Dir
	s.cmd.Env = append(os.Environ(), append([]string{"XDG_DATA_HOME=" + s.DataHome, "XDG_CONFIG_HOME=" + s.Dir, "HOME=" + s.Dir}, opts.Env...)...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting keygate: %v", err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	s.waitAdmin()
	for _, u := range opts.Wait {
		s.waitURL(u)
	}
	return s
}

// Logs returns what the server printed so far.
func (s *Server) Logs() string { return s.logs.String() }

// Stop ends the server (SIGINT, then kill) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.t.Failed() {
		s.t.Logf("keygate logs:\n%s", s.Logs())
	}
	s.cmd = nil
}

// Kill ends the server with SIGKILL (no cleanup, no flush) and waits.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *Server) waitAdmin() {
	if path, ok := strings.CutPrefix(s.AdminAddr, "unix/"); ok {
		s.waitClient(&http.Client{Timeout: time.Second, Transport: UnixTransport(path)}, "http://127.0.0.1/config/")
		return
	}
	s.waitURL("http://" + s.AdminAddr + "/config/")
}

// UnixTransport is an HTTP transport that dials the Unix socket at path,
// whatever the URL's host (Caddy's admin endpoint on a socket).
func UnixTransport(path string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
}

func (s *Server) waitURL(u string) {
	s.t.Helper()
	s.waitClient(&http.Client{Timeout: time.Second}, u)
}

func (s *Server) waitClient(client *http.Client, u string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.t.Fatalf("keygate exited early:\n%s", s.Logs())
		default:
		}
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("%s did not answer within 30s; logs:\n%s", u, s.Logs())
}

// CLI runs a keygate subcommand against this server (its config and admin
// address) and returns stdout; it fails the test on a non-zero exit.
func (s *Server) CLI(args ...string) string {
	s.t.Helper()
	out, err := s.TryCLI(args...)
	if err != nil {
		s.t.Fatalf("keygate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// CLIStderr runs a keygate subcommand like CLI and returns what it wrote
// to stderr (the -v lines, logs).
func (s *Server) CLIStderr(args ...string) string {
	s.t.Helper()
	_, stderr, err := s.runCLI(args...)
	if err != nil {
		s.t.Fatalf("keygate %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return stderr
}

// TryCLI is CLI without failing the test.
func (s *Server) TryCLI(args ...string) (string, error) {
	stdout, stderr, err := s.runCLI(args...)
	if err != nil {
		return stdout + stderr, err
	}
	return stdout, nil
}

func (s *Server) runCLI(args ...string) (string, string, error) {
	bin := Binary(s.t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append(args, "--config", s.Config, "--adapter", "caddyfile")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), append([]string{"XDG_DATA_HOME=" + s.DataHome, "XDG_CONFIG_HOME=" + s.Dir, "HOME=" + s.Dir}, s.Env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// Reload loads a new Caddyfile into the running server.
func (s *Server) Reload(caddyfile string) {
	s.t.Helper()
	if err := os.WriteFile(s.Config, []byte(strings.ReplaceAll(caddyfile, "{admin}", s.admin)), 0o600); err != nil {
		s.t.Fatal(err)
	}
	bin := Binary(s.t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "reload", "--config", s.Config, "--adapter", "caddyfile", "--address", s.AdminAddr)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+s.DataHome, "HOME="+s.Dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("reload: %v\n%s\nlogs:\n%s", err, out, s.Logs())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
