package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testport"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// procCPU returns the CPU time (user + system) the process has used so far.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields start after ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// redisCPU returns Redis's own CPU time (INFO cpu used_cpu_user + sys).
func redisCPU(ctx context.Context, c redis.UniversalClient) (time.Duration, error) {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, err
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second)), nil
}

// freePort returns a TCP port on 127.0.0.1 for a keygate process of this
// run, reserved until the harness exits (testport.ReservePort): nothing
// else on the machine can take it before the process binds it, which
// Caddy does with SO_REUSEPORT, as the reservation allows.
func freePort() (int, error) {
	port, _, err := testport.ReservePort()
	return port, err
}

// plainFreePort returns a TCP port on 127.0.0.1 that was free a moment
// ago, for a redis-server (which cannot share a reserved port; startRedis
// retries when the port was taken meanwhile).
func plainFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// moduleRoot is the directory of the go.mod the harness runs in.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the harness inside the keygate module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

// buildKeygate builds ./cmd/keygate into dir.
func buildKeygate(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "keygate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/keygate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keygate: %w\n%s", err, out)
	}
	return bin, nil
}

// process is a child process the harness started; stop ends it by PID.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGINT, then kills after 10s, and waits.
func (p *process) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startRedis runs a private redis-server on a free port, on the CPUs
// cpus (taskset's list syntax; empty: any), and waits until it answers as
// itself (INFO names its process id). A port taken before the server
// bound it is replaced by another, up to ten times.
func startRedis(dir, cpus string) (*process, string, error) {
	for range 10 {
		port, err := plainFreePort()
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		logPath := filepath.Join(dir, "redis.log")
		cmd := pinned(cpus, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir)
		p, err := start("redis-server", cmd, logPath)
		if err != nil {
			return nil, "", err
		}
		switch err := waitOwnRedis(p, addr, logPath); {
		case err == nil:
			return p, addr, nil
		case errors.Is(err, testport.ErrInUse):
			p.stop()
		default:
			p.stop()
			return nil, "", err
		}
	}
	return nil, "", errors.New("private redis-server: no free port after 10 tries")
}

// waitOwnRedis waits up to 10 s until the redis-server p answers on addr
// as itself; testport.ErrInUse when it could not bind (it exited saying so,
// or another process answers there).
func waitOwnRedis(p *process, addr, logPath string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	defer c.Close()
	want := "process_id:" + strconv.Itoa(p.pid()) + "\r\n"
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			log, _ := os.ReadFile(logPath)
			if testport.InUse(string(log)) {
				return fmt.Errorf("redis-server on %s: %w", addr, testport.ErrInUse)
			}
			return fmt.Errorf("redis-server on %s exited:\n%s", addr, log)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if strings.Contains(info, want) {
				return nil
			}
			return fmt.Errorf("another process answers on %s: %w", addr, testport.ErrInUse)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer within 10s", addr)
}

// waitHTTP waits until url answers (any status) or the process exits.
func waitHTTP(p *process, url string, bound time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited", p.name)
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within %v", url, bound)
}

// deletePrefix removes every key under prefix, in bounded batches.
func deletePrefix(c redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			c.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Del(ctx, batch...)
	}
}

// pinned is exec.Command(name, args...) run on the CPUs cpus (taskset's
// list syntax), or anywhere when cpus is empty.
func pinned(cpus, name string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpus, name}, args...)...)
}

// pinSelf moves every thread of the harness onto the CPUs cpus (threads
// the runtime starts later inherit it).
func pinSelf(cpus string) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// cpuSplit returns the CPU list for Caddy and for everything else under
// -pin: CPU 0, and 1 to n-1.
func cpuSplit() (gateway, rest string, err error) {
	n := numCPU()
	if n < 2 {
		return "", "", fmt.Errorf("-pin needs at least 2 CPUs, this machine has %d", n)
	}
	if n == 2 {
		return "0", "1", nil
	}
	return "0", fmt.Sprintf("1-%d", n-1), nil
}

// countingListener counts the connections it accepts: the upstream's view
// of how often the proxy opens a new connection.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}
