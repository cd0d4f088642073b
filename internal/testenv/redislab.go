package testenv

import (
	"context"
	"crypto/tls"
	"errors"
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
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gatehouse/gatehouse/internal/loopback"
)

// LabOptions shape a Redis lab (a Sentinel set-up or a Cluster of real
// redis-server processes started by the test).
type LabOptions struct {
	// AdminPassword protects the "default" user of the data nodes; the
	// lab's own plumbing (replication, sentinels, redis-cli) uses it.
	AdminPassword string
	// User and UserPassword create an ACL user on every data node, with
	// every command but the dangerous ones (FLUSHALL, KEYS, DEBUG, CONFIG...)
	// on every key: what Gatehouse is given in production.
	User, UserPassword string
	// SentinelPassword protects the sentinels (requirepass); with
	// SentinelUser also set, it is that ACL user's password instead.
	SentinelUser, SentinelPassword string
	// TLS, when set, makes every node and sentinel speak TLS only (no
	// plain port), replication and the cluster bus included.
	TLS *TLSFiles
	// ClientCerts makes the servers require a client certificate (mTLS).
	ClientCerts bool
}

// RedisLab is a set of redis-server and redis-sentinel processes owned by
// one test: started on loopback ports the lab reserves (loopback.Reserve)
// for its whole life, across Kill and Restart, and killed by t.Cleanup
// whatever happens.
type RedisLab struct {
	t         testing.TB
	opts      LabOptions
	Nodes     []*LabNode // data nodes; Sentinel lab: [0] the first primary, [1] its replica
	Sentinels []*LabNode
	Master    string // the name the sentinels monitor the primary under
}

// LabNode is one process of a lab.
type LabNode struct {
	lab      *RedisLab
	Port     int
	sentinel bool
	dir      string
	args     []string // redis-server: the command line; sentinel: the config file
	// held reserves Port and bus a cluster node's bus port (--cluster-port;
	// nil for other nodes), from newNode until the test's cleanup, after
	// the node's Kill: no other process can take them meanwhile, also not
	// while the node is killed and before its Restart.
	held, bus *loopback.Port

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is the node's host:port.
func (n *LabNode) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

// ClientTLS is the TLS configuration clients of the lab use (with the
// client certificate), or nil without TLS.
func (l *RedisLab) ClientTLS() *tls.Config {
	if l.opts.TLS == nil {
		return nil
	}
	return l.opts.TLS.ClientConfig(true)
}

// SentinelAddrs lists the sentinels.
func (l *RedisLab) SentinelAddrs() []string { return addrsOf(l.Sentinels) }

// NodeAddrs lists the data nodes.
func (l *RedisLab) NodeAddrs() []string { return addrsOf(l.Nodes) }

func addrsOf(nodes []*LabNode) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Addr()
	}
	return out
}

// labAttempts bounds the restarts of a whole lab on port clashes. The
// lab's ports are reserved, so only a process outside that scheme that
// binds one by its number can take it: a defence, not the usual path.
const labAttempts = 5

// StartLabs starts a standalone Redis, a Sentinel set-up and a Cluster side
// by side, for benchmarks that compare the modes in one run on the same
// machine.
func StartLabs(t testing.TB, opts LabOptions) (standalone, sentinel, cluster *RedisLab) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { standalone = StartStandaloneLab(t, opts) })
	wg.Go(func() { sentinel = StartSentinelLab(t, opts) })
	wg.Go(func() { cluster = StartClusterLab(t, opts) })
	wg.Wait()
	if standalone == nil || sentinel == nil || cluster == nil {
		t.FailNow() // a start failed in its goroutine (t.Fatal there ends only that one)
	}
	return standalone, sentinel, cluster
}

// StartStandaloneLab starts one redis-server with the lab's options (TLS,
// ACL user).
func StartStandaloneLab(t testing.TB, opts LabOptions) *RedisLab {
	t.Helper()
	var lastErr error
	for range labAttempts {
		l := &RedisLab{t: t, opts: opts}
		n, err := l.newNode(false, false)
		if err != nil {
			t.Fatal(err)
		}
		n.args = l.serverArgs(n)
		l.Nodes = append(l.Nodes, n)
		if lastErr = n.start(); lastErr == nil {
			return l
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	t.Fatalf("standalone lab: %v", lastErr)
	return nil
}

// StartSentinelLab starts a primary, one replica and three sentinels
// (quorum 2) that declare the primary down after 1 s.
func StartSentinelLab(t testing.TB, opts LabOptions) *RedisLab {
	t.Helper()
	var lastErr error
	for range labAttempts {
		l := &RedisLab{t: t, opts: opts, Master: "gatehouse"}
		if lastErr = l.startSentinel(); lastErr == nil {
			return l
		}
		l.stopAll()
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
		t.Logf("sentinel lab: a port was taken (%v); again on other ports", lastErr)
	}
	t.Fatalf("sentinel lab: %v", lastErr)
	return nil
}

// StartClusterLab starts six cluster nodes and joins them as three
// primaries with one replica each (redis-cli --cluster create).
func StartClusterLab(t testing.TB, opts LabOptions) *RedisLab {
	t.Helper()
	var lastErr error
	for range labAttempts {
		l := &RedisLab{t: t, opts: opts}
		if lastErr = l.startCluster(); lastErr == nil {
			return l
		}
		l.stopAll()
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
		t.Logf("cluster lab: a port was taken (%v); again on other ports", lastErr)
	}
	t.Fatalf("cluster lab: %v", lastErr)
	return nil
}

func (l *RedisLab) serverArgs(n *LabNode) []string {
	o := l.opts
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", n.dir,
		"--logfile", filepath.Join(n.dir, "redis.log"), "--loglevel", "notice",
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", "--protected-mode", "no"}
	args = append(args, l.listenArgs(n.Port)...)
	if o.AdminPassword != "" {
		args = append(args, "--requirepass", o.AdminPassword, "--masterauth", o.AdminPassword)
	}
	if o.User != "" {
		args = append(args, "--user", o.User, "on", ">"+o.UserPassword, "~*", "&*", "+@all", "-@dangerous", "+info", "+role")
	}
	if o.TLS != nil {
		args = append(args, "--tls-replication", "yes")
	}
	return args
}

func (l *RedisLab) listenArgs(port int) []string {
	o := l.opts
	if o.TLS == nil {
		return []string{"--port", strconv.Itoa(port)}
	}
	auth := "no"
	if o.ClientCerts {
		auth = "yes"
	}
	return []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", o.TLS.ServerCert,
		"--tls-key-file", o.TLS.ServerKey, "--tls-ca-cert-file", o.TLS.CA, "--tls-auth-clients", auth}
}

// newNode prepares a node on a port of its own, and for a cluster node a
// bus port too. Redis cannot listen on :0 and report its port, so the
// ports are reserved (loopback.Reserve) until the test's cleanup: the
// node binds them, a killed node's ports wait for its Restart, and no
// other process (another lab's node, an outgoing connection) gets them.
func (l *RedisLab) newNode(sentinel, cluster bool) (*LabNode, error) {
	// Cleanups run last first: the node's Kill (registered by start) runs
	// before its ports are released, and the TempDir is removed last.
	n := &LabNode{lab: l, sentinel: sentinel, dir: l.t.TempDir()}
	reserve := func() (*loopback.Port, error) {
		p, err := loopback.Reserve()
		if err != nil {
			return nil, err
		}
		l.t.Cleanup(func() { _ = p.Close() })
		return p, nil
	}
	var err error
	if n.held, err = reserve(); err != nil {
		return nil, err
	}
	n.Port = n.held.Port
	if cluster {
		if n.bus, err = reserve(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (l *RedisLab) startSentinel() error {
	for i := range 2 {
		n, err := l.newNode(false, false)
		if err != nil {
			return err
		}
		n.args = l.serverArgs(n)
		if i == 1 {
			n.args = append(n.args, "--replicaof", "127.0.0.1", strconv.Itoa(l.Nodes[0].Port))
		}
		l.Nodes = append(l.Nodes, n)
		if err := n.start(); err != nil {
			return err
		}
	}
	if err := l.waitReplicaLinked(l.Nodes[1], 15*time.Second); err != nil {
		return err
	}
	for range 3 {
		n, err := l.newNode(true, false)
		if err != nil {
			return err
		}
		conf := filepath.Join(n.dir, "sentinel.conf") // sentinel rewrites it: one writable copy each
		if err := os.WriteFile(conf, []byte(l.sentinelConf(n, l.Nodes[0].Port)), 0o600); err != nil {
			return err
		}
		n.args = []string{conf}
		l.Sentinels = append(l.Sentinels, n)
		if err := n.start(); err != nil {
			return err
		}
	}
	// Bounded: each sentinel must know the replica and both other
	// sentinels (hello messages every 2 s) before a failover can work.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, s := range l.Sentinels {
		c := l.SentinelClient(s)
		err := waitUntil(ctx, func() (bool, error) {
			reps, err := c.Replicas(ctx, l.Master).Result()
			if err != nil {
				return false, err
			}
			peers, err := c.Sentinels(ctx, l.Master).Result()
			return len(reps) == 1 && len(peers) == 2, err
		})
		c.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s never saw the replica and its 2 peers: %w", s.Addr(), err)
		}
	}
	return nil
}

func (l *RedisLab) sentinelConf(n *LabNode, primary int) string {
	o := l.opts
	var b strings.Builder
	if o.TLS == nil {
		fmt.Fprintf(&b, "port %d\n", n.Port)
	} else {
		auth := "no"
		if o.ClientCerts {
			auth = "yes"
		}
		fmt.Fprintf(&b, "port 0\ntls-port %d\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients %s\ntls-replication yes\n",
			n.Port, o.TLS.ServerCert, o.TLS.ServerKey, o.TLS.CA, auth)
	}
	fmt.Fprintf(&b, "bind 127.0.0.1\nprotected-mode no\ndir %s\nlogfile %s\n", n.dir, filepath.Join(n.dir, "redis.log"))
	fmt.Fprintf(&b, "sentinel monitor %s 127.0.0.1 %d 2\n", l.Master, primary)
	fmt.Fprintf(&b, "sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n", l.Master, l.Master, l.Master)
	if o.AdminPassword != "" {
		fmt.Fprintf(&b, "sentinel auth-pass %s %s\n", l.Master, o.AdminPassword)
	}
	switch {
	case o.SentinelUser != "":
		fmt.Fprintf(&b, "user %s on >%s ~* &* +@all\n", o.SentinelUser, o.SentinelPassword)
		fmt.Fprintf(&b, "sentinel sentinel-user %s\nsentinel sentinel-pass %s\n", o.SentinelUser, o.SentinelPassword)
		b.WriteString("user default off\n")
	case o.SentinelPassword != "":
		fmt.Fprintf(&b, "requirepass %s\nsentinel sentinel-pass %s\n", o.SentinelPassword, o.SentinelPassword)
	}
	return b.String()
}

func (l *RedisLab) startCluster() error {
	for range 6 {
		n, err := l.newNode(false, true)
		if err != nil {
			return err
		}
		// The bus on a reserved port of its own (Redis 7.0+), not on the
		// default port+10000, which nobody holds (and which is past 65535
		// for a port the kernel handed out).
		n.args = append(l.serverArgs(n), "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
			"--cluster-port", n.bus.String(),
			"--cluster-node-timeout", "1500", "--cluster-replica-validity-factor", "0")
		if l.opts.TLS != nil {
			n.args = append(n.args, "--tls-cluster", "yes")
		}
		l.Nodes = append(l.Nodes, n)
		if err := n.start(); err != nil {
			return err
		}
	}
	args := append([]string{"--cluster", "create"}, l.NodeAddrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := l.cli(ctx, args...); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	// Bounded: every node sees the cluster as ok, and each of the three
	// primaries has a replica that has synchronised with it (a failover
	// needs one).
	for _, n := range l.Nodes {
		c := n.Client()
		err := waitUntil(ctx, func() (bool, error) {
			info, err := c.ClusterInfo(ctx).Result()
			return strings.Contains(info, "cluster_state:ok"), err
		})
		c.Close()
		if err != nil {
			return fmt.Errorf("cluster node %s not ready: %w", n.Addr(), err)
		}
	}
	if err := waitUntil(ctx, func() (bool, error) {
		p, err := l.Primaries(ctx)
		if err != nil || len(p) != 3 {
			return false, err
		}
		for _, replica := range p {
			if replica == "" {
				return false, nil
			}
			if ok, err := l.Node(replica).ReplicaInSync(ctx); !ok {
				return false, err
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("cluster replicas never synchronised: %w", err)
	}
	return nil
}

// cli runs redis-cli with the lab's credentials and TLS.
func (l *RedisLab) cli(ctx context.Context, args ...string) (string, error) {
	var pre []string
	if l.opts.AdminPassword != "" {
		pre = append(pre, "--no-auth-warning", "-a", l.opts.AdminPassword)
	}
	if f := l.opts.TLS; f != nil {
		pre = append(pre, "--tls", "--cacert", f.CA, "--cert", f.ClientCert, "--key", f.ClientKey)
	}
	out, err := exec.CommandContext(ctx, "redis-cli", append(pre, args...)...).CombinedOutput()
	return string(out), err
}

// Client is an administrator's client of node n (the default user).
func (n *LabNode) Client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: n.Addr(), Password: n.lab.opts.AdminPassword, TLSConfig: n.lab.ClientTLS(),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1, DialerRetries: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// SentinelClient talks to sentinel s.
func (l *RedisLab) SentinelClient(s *LabNode) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr: s.Addr(), Username: l.opts.SentinelUser, Password: l.opts.SentinelPassword, TLSConfig: l.ClientTLS(),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1, DialerRetries: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// PrimaryAddr is the primary the sentinels name now (Sentinel lab).
func (l *RedisLab) PrimaryAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range l.Sentinels {
		c := l.SentinelClient(s)
		addr, err := c.GetMasterAddrByName(ctx, l.Master).Result()
		c.Close()
		if err == nil && len(addr) == 2 {
			return addr[0] + ":" + addr[1], nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// Node returns the lab's data node at addr.
func (l *RedisLab) Node(addr string) *LabNode {
	for _, n := range l.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	l.t.Fatalf("no lab node at %s", addr)
	return nil
}

// Role is the node's replication role: "master" or "slave".
func (n *LabNode) Role(ctx context.Context) (string, error) {
	c := n.Client()
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "role:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no role in INFO replication")
}

// ReplicaInSync reports whether n is a replica whose link to its primary
// is up.
func (n *LabNode) ReplicaInSync(ctx context.Context) (bool, error) {
	c := n.Client()
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	return strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") &&
		!strings.Contains(info, "master_sync_in_progress:1"), err
}

func (l *RedisLab) waitReplicaLinked(n *LabNode, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return waitUntil(ctx, func() (bool, error) { return n.ReplicaInSync(ctx) })
}

// WaitUntil polls cond every 20 ms until it is true or ctx ends; the
// error then says what cond last reported.
func WaitUntil(ctx context.Context, cond func() (bool, error)) error { return waitUntil(ctx, cond) }

func waitUntil(ctx context.Context, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if errors.Is(err, errGaveUp) {
			return err
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *LabNode) start() error {
	bin := "redis-server"
	if n.sentinel {
		bin = "redis-sentinel"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("%s not found (scripts/test.sh installs it): %w", bin, err)
	}
	cmd := exec.Command(path, n.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	n.lab.t.Cleanup(n.Kill) // registered at once: killed even if the test fails here
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = waitUntil(ctx, func() (bool, error) {
		select {
		case <-done:
			return false, fmt.Errorf("%w: the process exited", errGaveUp)
		default:
		}
		// A plain dial first: go-redis logs every refused dial.
		if conn, err := net.DialTimeout("tcp", n.Addr(), time.Second); err != nil {
			return false, err
		} else {
			conn.Close()
		}
		var c interface {
			Process(context.Context, redis.Cmder) error
			Close() error
		}
		if n.sentinel {
			c = n.lab.SentinelClient(n)
		} else {
			c = n.Client()
		}
		defer c.Close()
		// The answer must come from this very process: a PONG alone may
		// come from another server on the port (another lab's node with
		// the same password), for which this one then waits in vain.
		pid, err := serverPID(ctx, c)
		if err != nil {
			return false, err
		}
		if pid != cmd.Process.Pid {
			return false, fmt.Errorf("%s is answered by process %d, not by the %s just started (%d)", n.Addr(), pid, bin, cmd.Process.Pid)
		}
		return true, nil
	})
	if err != nil {
		n.Kill()
		log := n.logTail()
		if strings.Contains(log, "Address already in use") {
			err = errPortTaken
		}
		return fmt.Errorf("%s on port %d did not answer: %w; log: %s", bin, n.Port, err, log)
	}
	return nil
}

// serverPID is the process_id that INFO server reports.
func serverPID(ctx context.Context, c interface {
	Process(context.Context, redis.Cmder) error
}) (int, error) {
	cmd := redis.NewStringCmd(ctx, "info", "server")
	if err := c.Process(ctx, cmd); err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(cmd.Val(), "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no process_id in INFO server")
}

var (
	// errGaveUp ends a wait early: what it waits for can no longer happen.
	errGaveUp = errors.New("gave up")
	// errPortTaken: a lab start that meets it is retried on other ports.
	errPortTaken = errors.New("address already in use")
)

// Kill sends SIGKILL (a crashed pod, no goodbye to anyone) and waits until
// the process is gone.
func (n *LabNode) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// Restart starts a killed node again on its port with its command line
// (a cluster node keeps its nodes.conf, so it rejoins as itself). The
// ports stayed reserved while the node was down: nobody else can have
// taken them, so one start must do.
func (n *LabNode) Restart() {
	n.lab.t.Helper()
	if err := n.start(); err != nil {
		n.lab.t.Fatalf("restart %s: %v", n.Addr(), err)
	}
}

func (n *LabNode) logTail() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "redis.log"))
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}

func (l *RedisLab) stopAll() {
	for _, n := range append(append([]*LabNode{}, l.Nodes...), l.Sentinels...) {
		n.Kill()
	}
}

// WaitCaughtUp waits until replica has applied everything primary had
// written when it was called.
func (l *RedisLab) WaitCaughtUp(ctx context.Context, primary, replica *LabNode) error {
	offset := func(n *LabNode, field string) (int64, error) {
		c := n.Client()
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				return strconv.ParseInt(v, 10, 64)
			}
		}
		return 0, fmt.Errorf("%s: no %s in INFO replication", n.Addr(), field)
	}
	want, err := offset(primary, "master_repl_offset")
	if err != nil {
		return err
	}
	return waitUntil(ctx, func() (bool, error) {
		got, err := offset(replica, "slave_repl_offset")
		return got >= want, err
	})
}

// CutReplicas drops the primary's replication links and keeps its
// replicas from coming back (the password they authenticate with is
// changed on this primary only): from now on its writes reach no replica,
// as with a replica that lags or a network that drops the link just
// before a crash.
func (n *LabNode) CutReplicas(ctx context.Context) error {
	c := n.Client()
	defer c.Close()
	conn := c.Conn() // stays authenticated after the password change
	defer conn.Close()
	if err := conn.Ping(ctx).Err(); err != nil {
		return err
	}
	if err := conn.Do(ctx, "ACL", "SETUSER", "default", "resetpass", ">replicas-locked-out-"+randomHex(4)).Err(); err != nil {
		return fmt.Errorf("lock the replicas out: %w", err)
	}
	if err := conn.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		return fmt.Errorf("drop the replica links: %w", err)
	}
	return waitUntil(ctx, func() (bool, error) {
		info, err := conn.Info(ctx, "replication").Result()
		return strings.Contains(info, "connected_slaves:0"), err
	})
}

// Shards is the cluster's current map, as a live node sees it.
func (l *RedisLab) Shards(ctx context.Context) ([]redis.ClusterShard, error) {
	var errs []error
	for _, n := range l.Nodes {
		c := n.Client()
		shards, err := c.ClusterShards(ctx).Result()
		c.Close()
		if err == nil {
			return shards, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// Primaries lists the cluster's primaries that are not failed, by
// address, with the address of one replica each ("" if none).
func (l *RedisLab) Primaries(ctx context.Context) (map[string]string, error) {
	shards, err := l.Shards(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range shards {
		var primary, replica string
		for _, n := range s.Nodes {
			// "loading" only means that this node has not yet heard a
			// replication offset other than 0 (no write yet): not a failure.
			if n.Health == "fail" {
				continue
			}
			addr := n.IP + ":" + strconv.FormatInt(n.Port, 10)
			if n.Port == 0 {
				addr = n.IP + ":" + strconv.FormatInt(n.TLSPort, 10)
			}
			switch n.Role {
			case "master":
				primary = addr
			case "replica":
				replica = addr
			}
		}
		if primary != "" && len(s.Slots) > 0 {
			out[primary] = replica
		}
	}
	return out, nil
}
