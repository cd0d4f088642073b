package session_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/session/sessiontest"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The labs of this file speak TLS only and require client certificates
// (mTLS); Gatehouse authenticates as an ACL user of its own, with the
// "default" user protected by another password, and (Sentinel) the
// sentinels require an ACL user as well.
const (
	haAdminPW    = "lab-admin-password"
	haUser       = "gatehouse"
	haUserPW     = "gatehouse-acl-password"
	haSentUser   = "gatehouse-sentinel"
	haSentUserPW = "sentinel-acl-password"
)

func haLabOptions(t *testing.T) testenv.LabOptions {
	return testenv.LabOptions{
		AdminPassword: haAdminPW, User: haUser, UserPassword: haUserPW,
		TLS: testenv.NewTLSFiles(t), ClientCerts: true,
	}
}

// haOptions are Gatehouse's client options for lab l in mode.
func haOptions(l *testenv.RedisLab, mode string) session.RedisOptions {
	o := session.RedisOptions{Mode: mode, Username: haUser, Password: haUserPW, TLS: l.ClientTLS()}
	switch mode {
	case session.RedisStandalone:
		o.URL = "rediss://" + l.Nodes[0].Addr() + "/0"
	case session.RedisSentinel:
		o.SentinelMaster, o.SentinelAddrs = l.Master, l.SentinelAddrs()
		o.SentinelUsername, o.SentinelPassword = haSentUser, haSentUserPW
	case session.RedisCluster:
		o.ClusterAddrs = l.NodeAddrs()[:1] // one seed: the rest is discovered
	}
	return o
}

type haLab struct {
	mode string
	lab  *testenv.RedisLab
}

// startHALabs starts a standalone node, a Sentinel set-up and a Cluster,
// all with TLS, mTLS and ACL users, in parallel.
func startHALabs(t *testing.T) []haLab {
	t.Helper()
	opts := haLabOptions(t)
	sentOpts := opts
	sentOpts.SentinelUser, sentOpts.SentinelPassword = haSentUser, haSentUserPW
	labs := []haLab{{mode: session.RedisStandalone}, {mode: session.RedisSentinel}, {mode: session.RedisCluster}}
	done := make(chan struct{}, len(labs))
	for i := range labs {
		go func() {
			defer func() { done <- struct{}{} }()
			switch labs[i].mode {
			case session.RedisStandalone:
				labs[i].lab = testenv.StartStandaloneLab(t, opts)
			case session.RedisSentinel:
				labs[i].lab = testenv.StartSentinelLab(t, sentOpts)
			case session.RedisCluster:
				labs[i].lab = testenv.StartClusterLab(t, opts)
			}
		}()
	}
	for range labs {
		<-done
	}
	for _, l := range labs {
		if l.lab == nil {
			t.FailNow() // its start reported why
		}
	}
	return labs
}

func newClient(t testing.TB, o session.RedisOptions) redis.UniversalClient {
	t.Helper()
	c, err := session.NewRedisUniversalClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisStore_EveryModeWithTLSAndACLUser runs the conformance suite,
// unchanged, on a standalone Redis, a Sentinel set-up and a Cluster (with
// and without waiting for a replica), and checks that the ACL user name,
// the client certificate and the CA are really used in every mode: a
// client that leaves out any of them is refused.
func TestRedisStore_EveryModeWithTLSAndACLUser(t *testing.T) {
	t.Parallel()
	start := time.Now()
	labs := startHALabs(t)
	t.Logf("three TLS labs up in %v", time.Since(start).Round(time.Millisecond))
	for _, l := range labs {
		t.Run(l.mode, func(t *testing.T) {
			t.Parallel()
			opts := haOptions(l.lab, l.mode)
			ctx := context.Background()
			client := newClient(t, opts)
			if who, err := client.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != haUser {
				t.Fatalf("ACL WHOAMI = %q, %v; want %q (REDIS_USERNAME must be used in %s mode)", who, err, haUser, l.mode)
			}
			type refusal struct {
				change func(*session.RedisOptions)
				want   string // in the error: refused for this reason, not another
			}
			st := session.NewRedisStore(client, mustSealer(t), session.CookieOptions{}, time.Now, "gatehouse:")
			topo, err := st.Topology(ctx)
			if err != nil || topo.Mode != l.mode {
				t.Fatalf("Topology() = %+v, %v", topo, err)
			}
			switch l.mode {
			case session.RedisStandalone:
				if topo.Primary != l.lab.Nodes[0].Addr() {
					t.Errorf("standalone primary = %q, want %s", topo.Primary, l.lab.Nodes[0].Addr())
				}
			case session.RedisSentinel:
				if want, _ := l.lab.PrimaryAddr(ctx); topo.Primary != want {
					t.Errorf("Sentinel primary = %q, want %s", topo.Primary, want)
				}
			case session.RedisCluster:
				if len(topo.Primaries) != 3 || !strings.Contains(strings.Join(topo.Primaries, " "), "slots 0-") {
					t.Errorf("cluster primaries = %q, want 3 with their slots", topo.Primaries)
				}
			}
			checkTelemetry(t, client, l.mode)

			refused := map[string]refusal{
				"without the user name (the default user)": {func(o *session.RedisOptions) { o.Username = "" }, "WRONGPASS"},
				"without a client certificate":             {func(o *session.RedisOptions) { o.TLS = &tls.Config{RootCAs: o.TLS.RootCAs} }, "certificate required"},
				"trusting another CA":                      {func(o *session.RedisOptions) { o.TLS = &tls.Config{Certificates: o.TLS.Certificates} }, "unknown authority"},
				"verifying another server name": {func(o *session.RedisOptions) {
					c := o.TLS.Clone()
					c.ServerName = "redis.example"
					o.TLS = c
				}, "not redis.example"},
			}
			if l.mode == session.RedisSentinel {
				refused["without the sentinels' user name"] = refusal{func(o *session.RedisOptions) { o.SentinelUsername = "" }, "WRONGPASS"}
			}
			for name, r := range refused {
				o := opts
				r.change(&o)
				c := newClient(t, o)
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := c.Ping(pctx).Err()
				cancel()
				if err == nil || !strings.Contains(err.Error(), r.want) {
					t.Errorf("a client %s: Ping() error = %v, want one saying %q", name, err, r.want)
				}
			}
			named := opts
			named.TLS = opts.TLS.Clone()
			named.TLS.ServerName = "localhost" // REDIS_TLS_SERVER_NAME: the certificate's DNS name
			if err := newClient(t, named).Ping(ctx).Err(); err != nil {
				t.Errorf("with REDIS_TLS_SERVER_NAME=localhost: %v", err)
			}

			for _, ack := range []int{0, 1} {
				if l.mode == session.RedisStandalone && ack > 0 {
					continue // no replica to wait for
				}
				t.Run("conformance/ack="+string(rune('0'+ack)), func(t *testing.T) {
					sessiontest.Run(t, func(t *testing.T, secret, previous string, opts session.CookieOptions, now func() time.Time) session.Store {
						return session.NewRedisStore(client, sealer(t, secret, previous), opts, now,
							"test:"+session.NewID()[:12]+":", session.WithReplicaAck(ack, 2*time.Second))
					}, sessiontest.Features{ServerSide: true, Shared: true})
				})
			}
		})
	}
}

// TestRedisStore_ClusterSpreadsSessionsAndRevokesAcrossSlots saves many
// sessions of a few users on a cluster: they land on every primary, and
// revoking a user (and a provider session) finds each of them wherever
// it is.
func TestRedisStore_ClusterSpreadsSessionsAndRevokesAcrossSlots(t *testing.T) {
	t.Parallel()
	lab := testenv.StartClusterLab(t, testenv.LabOptions{AdminPassword: haAdminPW})
	client := newClient(t, session.RedisOptions{Mode: session.RedisCluster, ClusterAddrs: lab.NodeAddrs(), Password: haAdminPW})
	now := time.Now()
	st := session.NewRedisStore(client, mustSealer(t), session.CookieOptions{}, time.Now, "gatehouse:", session.WithReplicaAck(1, 2*time.Second))
	ctx := context.Background()
	type saved struct {
		s *session.Session
		c *http.Cookie
	}
	var all []saved
	for i := range 60 {
		s := sampleSession(now, []string{"alice", "bob", "carol"}[i%3], "sid-"+string(rune('a'+i%6)))
		all = append(all, saved{s, saveTo(t, st, s)})
	}
	perNode := map[string]int{}
	for _, sv := range all {
		node, err := client.(*redis.ClusterClient).MasterForKey(ctx, "gatehouse:s:"+sv.s.ID)
		if err != nil {
			t.Fatal(err)
		}
		perNode[node.Options().Addr]++
	}
	if len(perNode) != 3 {
		t.Fatalf("60 sessions landed on %d primaries (%v), want all 3", len(perNode), perNode)
	}
	t.Logf("sessions per primary: %v", perNode)

	// One primary forgets its scripts, as a replica promoted in a failover
	// has none cached: its share goes again as EVAL, the others' not twice.
	for addr := range perNode {
		c := lab.Node(addr).Client()
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		break
	}
	// sid-a belongs to alice (i%6==0 → i%3==0): 10 sessions. (Without the
	// replica wait: one pipeline over all three primaries.)
	noAck := session.NewRedisStore(client, mustSealer(t), session.CookieOptions{}, time.Now, "gatehouse:")
	if n, err := noAck.DeleteByProviderSID(ctx, "sid-a"); err != nil || n != 10 {
		t.Fatalf("DeleteByProviderSID(sid-a) = %d, %v; want 10", n, err)
	}
	if n, err := st.DeleteBySubject(ctx, "alice"); err != nil || n != 10 {
		t.Fatalf("DeleteBySubject(alice) = %d, %v; want the other 10", n, err)
	}
	if n, err := st.DeleteBySubject(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("DeleteBySubject(alice) again = %d, %v; want 0 (idempotent)", n, err)
	}
	for _, sv := range all {
		_, err := st.Load(requestWith(sv.c))
		if gone := errors.Is(err, session.ErrNoSession); gone != (sv.s.Subject == "alice") {
			t.Errorf("%s's session: Load() error = %v", sv.s.Subject, err)
		}
	}
	// Nothing but single-key commands: a multi-key script would have
	// failed with CROSSSLOT above; the index sets hold no dead IDs.
	if n := client.SCard(ctx, "gatehouse:sub:alice").Val(); n != 0 {
		t.Errorf("alice's index still names %d sessions", n)
	}
	rec := httptest.NewRecorder()
	if err := st.Delete(rec, requestWith(all[1].c), all[1].s); err != nil {
		t.Fatal(err)
	}
	if client.SIsMember(ctx, "gatehouse:sub:bob", all[1].s.ID).Val() {
		t.Error("logout left the session in its user's index")
	}
}

func mustSealer(t testing.TB) *seal.Sealer { return sealer(t, testSecret, "") }

// TestRedisStore_ReplicaAckFailsWithoutReplica: with a replica required
// and none connected, a new session is refused (unavailable), not
// promised.
func TestRedisStore_ReplicaAckFailsWithoutReplica(t *testing.T) {
	t.Parallel()
	redisURL, prefix := testenv.Redis(t)
	client := newClient(t, session.RedisOptions{URL: redisURL})
	st := session.NewRedisStore(client, mustSealer(t), session.CookieOptions{}, time.Now, prefix, session.WithReplicaAck(1, 100*time.Millisecond))
	err := st.Save(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), sampleSession(time.Now(), "u", "s"))
	if !errors.Is(err, session.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 1") {
		t.Fatalf("Save() with no replica to acknowledge = %v, want ErrUnavailable naming 0 of 1", err)
	}
	if _, err := st.MarkOnce(context.Background(), "k", time.Now().Add(time.Minute)); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("MarkOnce() with no replica = %v, want ErrUnavailable", err)
	}
}

// checkTelemetry: the store's spans and its duration metric name the mode.
func checkTelemetry(t *testing.T, client redis.UniversalClient, mode string) {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	st := session.NewRedisStore(client, mustSealer(t), session.CookieOptions{}, time.Now, "telemetry:"+session.NewID()[:8]+":")
	if err := st.Instrument(tp, mp); err != nil {
		t.Fatal(err)
	}
	c := saveTo(t, st, sampleSession(time.Now(), "u", "s"))
	if _, err := st.Load(requestWith(c)); err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for _, s := range spans.Ended() {
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
		}
		if attrs[session.AttrRedisMode] != mode || attrs["db.system.name"] != "redis" || s.SpanKind().String() != "client" {
			t.Errorf("span %q attributes %v kind %v, want redis client span naming mode %s", s.Name(), attrs, s.SpanKind(), mode)
		}
		ops[attrs["db.operation.name"]] = true
	}
	if !ops["HMGET"] {
		t.Errorf("no span for the session check's HMGET; operations: %v", ops)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	points := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != session.MetricRedisDuration {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if v, _ := dp.Attributes.Value(session.AttrRedisMode); v.AsString() != mode {
					t.Errorf("duration point without mode %s: %v", mode, dp.Attributes)
				}
				points += int(dp.Count)
			}
		}
	}
	if points < 2 {
		t.Errorf("%s recorded %d commands, want the save and the load", session.MetricRedisDuration, points)
	}
}

// TestNewRedisUniversalClient_UnixSocket: REDIS_URL=unix:///path with a
// database, and REDIS_PASSWORD, reach a Redis that listens on a socket only.
func TestNewRedisUniversalClient_UnixSocket(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t, "--requirepass", "sock-pw")
	client := newClient(t, session.RedisOptions{URL: srv.URLWithPassword("") + "?db=3", Password: "sock-pw"})
	ctx := context.Background()
	st := session.NewRedisStore(client, mustSealer(t), session.CookieOptions{}, time.Now, "gatehouse:")
	c := saveTo(t, st, sampleSession(time.Now(), "u", "s"))
	if _, err := st.Load(requestWith(c)); err != nil {
		t.Fatalf("Load() over the unix socket: %v", err)
	}
	if info, err := client.Do(ctx, "CLIENT", "INFO").Text(); err != nil || !strings.Contains(info, "db=3") {
		t.Errorf("CLIENT INFO = %q, %v; want database 3 from the URL", info, err)
	}
}
