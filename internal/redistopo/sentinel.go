package redistopo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the sentinels monitor the master under.
const MasterName = "kgmaster"

// DownAfter is the sentinels' down-after-milliseconds: a master that does
// not answer for this long is failed over.
const DownAfter = time.Second

// Sentinel is a master, its replica and three sentinels (quorum 2).
type Sentinel struct {
	Master, Replica *Node
	Sentinels       []*Node
	t               testing.TB
}

// StartSentinel starts the group and waits until every sentinel knows the
// replica and the two other sentinels.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	need(t, "redis-server")
	s := &Sentinel{t: t}
	s.Master = startNode(t, false, func(n *Node) {
		n.args = append([]string{"--port", strconv.Itoa(n.Port)}, dataArgs(n)...)
	})
	s.Replica = startNode(t, false, func(n *Node) {
		n.args = append([]string{"--port", strconv.Itoa(n.Port)}, dataArgs(n)...)
		n.args = append(n.args, "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port))
	})
	for range 3 {
		n := startNode(t, false, func(n *Node) {
			// A sentinel rewrites its config file: it lives in the private
			// dir. A failover-timeout of 2 s lets a split election be
			// retried after 4 s (twice the timeout) instead of the default
			// 6 minutes.
			conf := filepath.Join(n.Dir, "sentinel.conf")
			body := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 2000
sentinel parallel-syncs %s 1
`, n.Port, n.Dir, MasterName, s.Master.Port, MasterName, DownAfter.Milliseconds(), MasterName, MasterName)
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				t.Fatalf("writing sentinel config: %v", err)
			}
			n.args = []string{conf, "--sentinel"}
		})
		s.Sentinels = append(s.Sentinels, n)
	}
	waitFor(t, startTimeout, "sentinels see the replica and each other", func() error {
		for _, n := range s.Sentinels {
			v, err := n.Do("sentinel", "replicas", MasterName)
			if err != nil {
				return err
			}
			if r, _ := v.([]any); len(r) != 1 {
				return fmt.Errorf("%s sees %d replicas", n.Addr, len(r))
			}
			v, err = n.Do("sentinel", "sentinels", MasterName)
			if err != nil {
				return err
			}
			if r, _ := v.([]any); len(r) != 2 {
				return fmt.Errorf("%s sees %d other sentinels", n.Addr, len(r))
			}
		}
		repl, err := s.Replica.Info("replication")
		if err != nil {
			return err
		}
		if repl["master_link_status"] != "up" {
			return fmt.Errorf("replica link %s", repl["master_link_status"])
		}
		return nil
	})
	return s
}

// Addrs are the sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr
	}
	return out
}

// Client returns a failover client for the group (the caller closes it).
func (s *Sentinel) Client() *redis.Client {
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    MasterName,
		SentinelAddrs: s.Addrs(),
		DialTimeout:   time.Second,
		ReadTimeout:   2 * time.Second,
		WriteTimeout:  2 * time.Second,
	})
}

// MasterAddr is the master address the first live sentinel reports.
func (s *Sentinel) MasterAddr() (string, error) {
	for _, n := range s.Sentinels {
		if !n.Alive() {
			continue
		}
		v, err := n.Do("sentinel", "get-master-addr-by-name", MasterName)
		if err != nil {
			continue
		}
		if r, _ := v.([]any); len(r) == 2 {
			return fmt.Sprintf("%v:%v", r[0], r[1]), nil
		}
	}
	return "", fmt.Errorf("no sentinel names the master of %s", MasterName)
}

// Failover runs SENTINEL FAILOVER (a coordinated failover: the replica
// catches up before it is promoted) and waits until the replica is the
// master and the old master its replica, in sync. It returns how long the
// promotion took.
func (s *Sentinel) Failover() time.Duration {
	s.t.Helper()
	start := time.Now()
	if _, err := s.Sentinels[0].Do("sentinel", "failover", MasterName); err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 30*time.Second, "sentinels promote the replica", func() error {
		addr, err := s.MasterAddr()
		if err != nil {
			return err
		}
		if addr != s.Replica.Addr {
			return fmt.Errorf("master still %s", addr)
		}
		repl, err := s.Replica.Info("replication")
		if err != nil {
			return err
		}
		if repl["role"] != "master" {
			return fmt.Errorf("replica role %s", repl["role"])
		}
		return nil
	})
	took := time.Since(start)
	s.Master, s.Replica = s.Replica, s.Master
	// The sentinels reconfigure the old master as a replica some seconds
	// later; doing it now (to the same master) saves the test that wait.
	if _, err := s.Replica.Do("replicaof", "127.0.0.1", s.Master.Port); err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 30*time.Second, "old master replicates the new one", func() error {
		repl, err := s.Replica.Info("replication")
		if err != nil {
			return err
		}
		if repl["role"] != "slave" || repl["master_link_status"] != "up" {
			return fmt.Errorf("old master: role %s, link %s", repl["role"], repl["master_link_status"])
		}
		return nil
	})
	return took
}

// KillMaster kills the master and waits until the sentinels have promoted
// the replica and it accepts writes. It returns how long that took.
func (s *Sentinel) KillMaster() time.Duration {
	s.t.Helper()
	start := time.Now()
	s.Master.Kill()
	waitFor(s.t, 30*time.Second, "sentinels promote the replica", func() error {
		addr, err := s.MasterAddr()
		if err != nil {
			return err
		}
		if addr != s.Replica.Addr {
			return fmt.Errorf("master still %s", addr)
		}
		repl, err := s.Replica.Info("replication")
		if err != nil {
			return err
		}
		if repl["role"] != "master" {
			return fmt.Errorf("replica role %s", repl["role"])
		}
		return nil
	})
	took := time.Since(start)
	s.Master, s.Replica = s.Replica, nil
	return took
}

// Ping checks that the failover client reaches a master within 2 s.
func (s *Sentinel) Ping(c *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}
