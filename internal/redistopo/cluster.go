package redistopo

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// NodeTimeout is the cluster-node-timeout of the clusters started here: a
// master that does not answer for this long is failed over by its replica.
const NodeTimeout = time.Second

// Cluster is a Redis Cluster of three masters, each with one replica.
type Cluster struct {
	Nodes []*Node
	t     testing.TB
}

// StartCluster starts six cluster-enabled redis-servers, joins them with
// redis-cli --cluster create … --cluster-replicas 1, and waits until every
// node reports cluster_state:ok and every replica is in sync.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	need(t, "redis-server", "redis-cli")
	c := &Cluster{t: t}
	addrs := make([]string, 0, 6)
	for range 6 {
		n := startNode(t, true, func(n *Node) {
			n.args = append([]string{"--port", strconv.Itoa(n.Port)}, dataArgs(n)...)
			n.args = append(n.args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout/time.Millisecond)),
				// A replica takes over whatever its replication offset.
				"--cluster-replica-validity-factor", "0")
		})
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(startTimeout)
	return c
}

// Addrs are the addresses of every node (the seeds a client is given).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Client returns a cluster client over every node (the caller closes it).
func (c *Cluster) Client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        c.Addrs(),
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	})
}

// WaitHealthy waits until every live node reports cluster_state:ok with all
// 16384 slots served, and every live master has a live replica in sync.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, "cluster healthy", func() error {
		for _, n := range c.Nodes {
			if !n.Alive() {
				continue
			}
			v, err := n.Do("cluster", "info")
			if err != nil {
				return err
			}
			s, _ := v.(string)
			if !strings.Contains(s, "cluster_state:ok") || !strings.Contains(s, "cluster_slots_ok:16384") {
				return fmt.Errorf("%s: %q", n.Addr, strings.Fields(s))
			}
			repl, err := n.Info("replication")
			if err != nil {
				return err
			}
			switch repl["role"] {
			case "slave":
				if repl["master_link_status"] != "up" {
					return fmt.Errorf("%s: replica link %s", n.Addr, repl["master_link_status"])
				}
			case "master":
				if repl["connected_slaves"] == "0" {
					return fmt.Errorf("%s: master without replica", n.Addr)
				}
			}
		}
		return nil
	})
}

// Owner returns the master serving key's slot and its replica, as the
// live nodes see it (the master itself reports role master).
func (c *Cluster) Owner(key string) (master, replica *Node) {
	c.t.Helper()
	byAddr := map[string]*Node{}
	for _, n := range c.Nodes {
		byAddr[n.Addr] = n
	}
	waitFor(c.t, 10*time.Second, "owner of "+key, func() error {
		master, replica = nil, nil
		n := c.live()
		if n == nil {
			return errors.New("no live node")
		}
		cl := n.Client()
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return err
		}
		slots, err := cl.ClusterSlots(ctx).Result()
		if err != nil {
			return err
		}
		for _, r := range slots {
			if int64(r.Start) > slot || int64(r.End) < slot || len(r.Nodes) == 0 {
				continue
			}
			master = byAddr[r.Nodes[0].Addr]
			for _, rn := range r.Nodes[1:] {
				if x := byAddr[rn.Addr]; x != nil && x.Alive() {
					replica = x
				}
			}
		}
		if master == nil || !master.Alive() {
			return fmt.Errorf("no live master serves slot %d", slot)
		}
		for _, n := range c.Nodes {
			if replica != nil || !n.Alive() || n == master {
				continue
			}
			if repl, err := n.Info("replication"); err == nil && repl["role"] == "slave" && repl["master_port"] == strconv.Itoa(master.Port) {
				replica = n
			}
		}
		repl, err := master.Info("replication")
		if err != nil {
			return err
		}
		if repl["role"] != "master" {
			return fmt.Errorf("%s serves slot %d but is %s", master.Addr, slot, repl["role"])
		}
		return nil
	})
	return master, replica
}

// live returns a node that runs.
func (c *Cluster) live() *Node {
	for _, n := range c.Nodes {
		if n.Alive() {
			return n
		}
	}
	return nil
}

// Failover runs CLUSTER FAILOVER on replica (a coordinated, manual
// failover without data loss) and waits until it is a master.
func (c *Cluster) Failover(replica *Node) {
	c.t.Helper()
	if _, err := replica.Do("cluster", "failover"); err != nil {
		c.t.Fatal(err)
	}
	c.waitRole(replica, "master", 10*time.Second)
}

// waitRole waits until n reports role.
func (c *Cluster) waitRole(n *Node, role string, timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, n.Addr+" becomes "+role, func() error {
		repl, err := n.Info("replication")
		if err != nil {
			return err
		}
		if repl["role"] != role {
			return fmt.Errorf("role %s", repl["role"])
		}
		return nil
	})
}

// KillMaster kills master and waits until replica has taken over (after
// the cluster-node-timeout) and the cluster is ok again.
func (c *Cluster) KillMaster(master, replica *Node) {
	c.t.Helper()
	master.Kill()
	c.waitRole(replica, "master", 10*NodeTimeout+5*time.Second)
	waitFor(c.t, 15*time.Second, "cluster ok after the failover", func() error {
		for _, n := range c.Nodes {
			if !n.Alive() {
				continue
			}
			v, err := n.Do("cluster", "info")
			if err != nil {
				return err
			}
			if s, _ := v.(string); !strings.Contains(s, "cluster_state:ok") {
				return fmt.Errorf("%s: not ok", n.Addr)
			}
		}
		return nil
	})
}
