// Package loadtest measures Gatehouse as a built, stripped binary on
// loopback: throughput and latency of GET /healthz, / and /profile next to
// a bare net/http server measured in the same run, full logins per second
// against an in-process OpenID provider, memory, start-up time and binary
// size. cmd/gatehouse-load runs it; docs/PERFORMANCE.md records results.
//
// Every loop is bounded, everything listens on 127.0.0.1 only, and every
// process it starts dies with it.
package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/loopback"
)

// Options size a run; Quick gives the suite's small variant.
type Options struct {
	Rounds      int           // throughput rounds, each measuring every target once
	Duration    time.Duration // measured time per target per round (whole seconds: wrk's unit)
	Warmup      time.Duration // unmeasured time before each measurement (whole seconds; 0: none)
	Connections int           // keep-alive connections per target
	Logins      int           // cookie-store logins (RSS is read after the first tenth and after all)
	RedisLogins int           // logins with the Redis store (0: no Redis phase)
	VUs         int           // virtual users logging in at once
	Startups    int           // exec-to-ready measurements
	RedisServer string        // redis-server binary; "" looks it up in PATH
	ProfileDir  string        // when set: CPU profiles of the logins, of GET /profile, of /auth/verify (session and cached opaque token), heap profiles, written here
	ProfileSecs int           // length of each CPU profile (at most 29: the admin listener's write timeout)
	// The forward-auth round (forward.go): connections for /auth/verify and
	// its comparisons, and the memory phase's sessions and decisions.
	ForwardConnections int
	ForwardSessions    int
	ForwardDecisions   int
	// Pairs is how many times each round measures the forward-auth and
	// bearer decisions with their bare ceilings (the order swapped every
	// pair; only a round's first pair warms up): their ratios are medians
	// over Rounds×Pairs pairs, since one pair moves by ±10 % here.
	Pairs       int
	OAuth2Proxy string // oauth2-proxy binary; "": PATH, then the tool cache; none found: not compared
	// Pin runs the forward-auth and bearer rounds' wrk and servers on
	// separate CPUs where the machine allows (pin.go); other rounds are
	// never pinned.
	Pin bool
	// Timeout bounds the run after the binary is built (0: no bound), so a
	// cold build cache on a busy machine cannot use up the measurement's time.
	Timeout  time.Duration
	Progress io.Writer `json:"-"` // one line per step; nil for none
}

// Full is the documented run (a few minutes on 2 cores).
func Full() Options {
	return Options{Rounds: 3, Duration: 3 * time.Second, Warmup: time.Second, Connections: 8,
		Logins: 10_000, RedisLogins: 10_000, VUs: 8, Startups: 5, ProfileSecs: 20,
		ForwardConnections: 64, ForwardSessions: 1_000, ForwardDecisions: 100_000, Pairs: 4, Pin: true}
}

// Quick is the variant the test suite runs so the load test never rots.
func Quick() Options {
	return Options{Rounds: 1, Duration: time.Second, Connections: 4,
		Logins: 40, RedisLogins: 20, VUs: 4, Startups: 1, ProfileSecs: 1,
		ForwardConnections: 16, ForwardSessions: 20, ForwardDecisions: 500, Pairs: 2, Pin: true}
}

// Target names, Gatehouse's and the bare server's.
const (
	Healthz      = "GET /healthz"
	Landing      = "GET /"
	LandingIn    = "GET / (signed in)"
	Profile      = "GET /profile"
	BareHealthz  = "bare " + Healthz
	BareLanding  = "bare " + Landing
	BareProfile  = "bare " + Profile
	clientID     = "gatehouse-load"
	sessionKey   = "load-test-session-secret-0123456789-abcdefghij"
	readyTimeout = 30 * time.Second
)

// Pairs maps each Gatehouse target to its bare ceiling.
var Pairs = [][2]string{{Healthz, BareHealthz}, {Landing, BareLanding}, {LandingIn, BareLanding}, {Profile, BareProfile}}

// Report is everything one run measured.
type Report struct {
	Started      time.Time
	Machine      Machine
	Options      Options
	BinaryBytes  int64
	BinaryStatic bool
	Startup      []time.Duration
	Rounds       []map[string]Throughput
	Bodies       map[string]int // response sizes per Gatehouse target
	// RSS in bytes: after start; after a tenth of the logins; after all.
	RSSStart, RSSAfterSome, RSSAfterAll int64
	LoginsSome                          int
	Logins                              Logins
	// The same with SESSION_STORE=redis; RedisNote says why it is missing.
	RedisRSSStart, RedisRSSAfter int64
	RedisLogins                  Logins
	RedisNote                    string
	// Allocations per GET /profile in the real binary (from its /metrics)
	// and per request of the bare server with a body of the same size.
	ProfileAllocs, BareAllocs float64
	AllocsNote                string
	// Forward is the forward-auth round (/auth/verify, oauth2-proxy, memory).
	Forward Forward
	// Bearer is the bearer round (/auth/verify for API clients' tokens).
	Bearer   Bearer
	Finished time.Time
}

// Machine describes where the run happened.
type Machine struct {
	CPU, Kernel, GoVersion string
	CPUs, GOMAXPROCS       int
	MemTotal               int64
	LoadBefore, LoadAfter  string
}

// Run does the whole measurement.
func Run(ctx context.Context, opts Options) (*Report, error) {
	rep := &Report{Started: time.Now(), Options: opts, Machine: machine(), Bodies: map[string]int{}}
	say := progress(opts.Progress)
	say("building the stripped static binary")
	bin, removeBin, err := buildHere(ctx)
	if err != nil {
		return nil, err
	}
	defer removeBin()
	st, err := os.Stat(bin)
	if err != nil {
		return nil, err
	}
	rep.BinaryBytes = st.Size()
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	if rep.BinaryStatic, err = isStatic(bin); err != nil {
		return nil, err
	}

	// The children cannot listen on :0: Gatehouse's callback URL and the
	// provider's registration name its port before it starts (and the
	// start-up measurement restarts it). The ports stay reserved for them.
	ports, releasePorts, err := reservePorts(10)
	if err != nil {
		return nil, err
	}
	defer releasePorts()
	appURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	redisAppURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	memoryAppURL := "http://127.0.0.1:" + strconv.Itoa(ports[4]) // the forward-auth memory phase's Gatehouse (decides only)
	// ports[7], [8], [9]: the forward-auth round's Gatehouse, its admin listener, its bare server.
	idp, err := startProvider(clientID, []string{appURL, redisAppURL}, append(bearerClients(), oauth2ProxyClient(ports[5]))...)
	if err != nil {
		return nil, err
	}
	defer idp.close()
	env := gatehouseEnv(ports[0], ports[2], idp.url)
	admin := "http://127.0.0.1:" + strconv.Itoa(ports[2])
	if opts.ProfileDir != "" {
		env = append(env, "ADMIN_PPROF=true")
	}

	say("start-up: %d x exec to /readyz 200", opts.Startups)
	for range opts.Startups {
		d, err := startupTime(bin, env, appURL)
		if err != nil {
			return nil, err
		}
		rep.Startup = append(rep.Startup, d)
	}

	gh, err := start(bin, []string{"-env-file", os.DevNull}, env)
	if err != nil {
		return nil, err
	}
	defer gh.stop()
	if _, err := waitStatus(gh, appURL+"/readyz", http.StatusOK, readyTimeout); err != nil {
		return nil, fmt.Errorf("gatehouse: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // let start-up garbage be collected
	if rep.RSSStart, err = rssBytes(gh.pid()); err != nil {
		return nil, err
	}
	app, _ := url.Parse(appURL)

	some := max(1, opts.Logins/10)
	say("logins: %d with the cookie store (%d virtual users)", opts.Logins, opts.VUs)
	first, err := runLogins(ctx, app, idp, gh.pid(), opts.VUs, some)
	if err != nil {
		return nil, fmt.Errorf("cookie-store logins: %w", err)
	}
	rep.LoginsSome = some
	if rep.RSSAfterSome, err = rssBytes(gh.pid()); err != nil {
		return nil, err
	}
	waitProfile := profileDuring(ctx, opts.ProfileDir, admin, "logins-cpu.pprof", opts.ProfileSecs)
	rest, err := runLogins(ctx, app, idp, gh.pid(), opts.VUs, opts.Logins-some)
	if err != nil {
		return nil, fmt.Errorf("cookie-store logins: %w", err)
	}
	if err := waitProfile(); err != nil {
		return nil, err
	}
	if err := saveProfile(ctx, opts.ProfileDir, admin+"/debug/pprof/heap", "heap-after-logins.pprof"); err != nil {
		return nil, err
	}
	rep.Logins = addLogins(first, rest)
	if rep.RSSAfterAll, err = rssBytes(gh.pid()); err != nil {
		return nil, err
	}

	// Throughput: one signed-in browser, the bare server sized like
	// Gatehouse's answers, then rounds that alternate the two.
	session := newFreshSession(app)
	cookie, err := session.get(ctx)
	if err != nil {
		return nil, err
	}
	targets := map[string]target{
		Healthz:   {name: Healthz, addr: app.Host, path: "/healthz", pid: gh.pid()},
		Landing:   {name: Landing, addr: app.Host, path: "/", pid: gh.pid()},
		LandingIn: {name: LandingIn, addr: app.Host, path: "/", cookie: cookie, pid: gh.pid()},
		Profile:   {name: Profile, addr: app.Host, path: "/profile", cookie: cookie, pid: gh.pid()},
	}
	for _, name := range []string{Healthz, Landing, LandingIn, Profile} {
		if rep.Bodies[name], err = bodySize(ctx, targets[name]); err != nil {
			return nil, err
		}
	}
	bareAddr := "127.0.0.1:" + strconv.Itoa(ports[3])
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bare, err := start(self, nil, []string{
		bareAddrEnv + "=" + bareAddr,
		bareSizesEnv + "=" + strconv.Itoa(rep.Bodies[Landing]) + "," + strconv.Itoa(rep.Bodies[Profile]),
	})
	if err != nil {
		return nil, err
	}
	defer bare.stop()
	if _, err := waitStatus(bare, "http://"+bareAddr+"/healthz", http.StatusOK, readyTimeout); err != nil {
		return nil, fmt.Errorf("bare server: %w", err)
	}
	targets[BareHealthz] = target{name: BareHealthz, addr: bareAddr, path: "/healthz", pid: bare.pid()}
	targets[BareLanding] = target{name: BareLanding, addr: bareAddr, path: "/body/" + strconv.Itoa(rep.Bodies[Landing]), pid: bare.pid()}
	targets[BareProfile] = target{name: BareProfile, addr: bareAddr, path: "/body/" + strconv.Itoa(rep.Bodies[Profile]), cookie: cookie, pid: bare.pid()}
	order := []string{BareHealthz, Healthz, BareLanding, Landing, LandingIn, BareProfile, Profile}
	rep.Forward.Pinning = pinningHere(opts.Pin)
	say("forward-auth round: %s", rep.Forward.Pinning)
	fs, err := startForwardServers(bin, self, idp.url, ports[7], ports[8], ports[9], rep.Forward.Pinning, opts.ProfileDir != "")
	if err != nil {
		return nil, err
	}
	defer fs.stop()
	o2, o2Cookie := startForwardComparison(ctx, rep, opts, ports[5], idp.url, say)
	if o2 != nil {
		defer o2.p.stop()
	}
	rep.Forward.Connections = opts.ForwardConnections
	for round := range opts.Rounds {
		say("throughput round %d/%d: %d connections, %v per target", round+1, opts.Rounds, opts.Connections, opts.Duration)
		// A new session each round (freshSession says why): the round
		// takes about half of the idle stamp's minute.
		if round > 0 {
			if cookie, err = session.renew(ctx); err != nil {
				return nil, err
			}
			for _, name := range []string{LandingIn, Profile, BareProfile} {
				t := targets[name]
				t.cookie = cookie
				targets[name] = t
			}
		}
		res := map[string]Throughput{}
		for _, name := range order {
			if res[name], err = hammer(ctx, targets[name], opts.Connections, opts.Warmup, opts.Duration, Pinning{}); err != nil {
				return nil, err
			}
		}
		rep.Rounds = append(rep.Rounds, res)
		say("forward-auth round %d/%d: %d connections", round+1, opts.Rounds, opts.ForwardConnections)
		fwd, err := forwardRound(ctx, round, forwardTargets(fs, cookie, o2, o2Cookie), session, opts, rep.Forward.Pinning)
		if err != nil {
			return nil, fmt.Errorf("forward-auth round: %w", err)
		}
		rep.Forward.Rounds = append(rep.Forward.Rounds, fwd...)
	}

	if opts.ProfileDir != "" {
		// A fresh session, as each round has: a profile that outlasts the
		// minute of the idle stamp would show a cookie sealed per request.
		if cookie, err = session.renew(ctx); err != nil {
			return nil, err
		}
		fwd := forwardTargets(fs, cookie, nil, "")
		// The bare server's profile of the same request shows what a
		// decision costs beyond net/http's own work. Both keep their CPU
		// busy for the whole profile but serve different numbers of
		// requests, so compare per request (a function's share times the
		// CPU per request printed here), not with pprof's -diff_base,
		// which subtracts samples.
		for _, p := range []struct{ name, base, file string }{
			{Verify, "http://127.0.0.1:" + strconv.Itoa(ports[8]), "verify-cpu.pprof"},
			{BareVerify, "http://" + fs.bareAddr, "verify-bare-cpu.pprof"},
		} {
			say("CPU profile of %s (%ds, %s)", p.name, opts.ProfileSecs, rep.Forward.Pinning)
			wait := profileDuring(ctx, opts.ProfileDir, p.base, p.file, opts.ProfileSecs)
			th, err := hammer(ctx, fwd[p.name], opts.ForwardConnections, 0, time.Duration(opts.ProfileSecs)*time.Second, rep.Forward.Pinning)
			if err != nil {
				return nil, err
			}
			if err := wait(); err != nil {
				return nil, err
			}
			say("%s: %d requests, server CPU %v per request", p.file, th.Requests, th.CPUPerRequest())
		}
		// What the collector scans on every cycle of the decision load.
		if err := saveProfile(ctx, opts.ProfileDir, "http://127.0.0.1:"+strconv.Itoa(ports[8])+"/debug/pprof/heap", "heap-after-verify.pprof"); err != nil {
			return nil, err
		}
	}

	if err := bearerRound(ctx, &rep.Bearer, bin, idp.url, fs.bareAddr, fs.bare.pid(), rep.Forward.Pinning, opts, say); err != nil {
		return nil, fmt.Errorf("bearer round: %w", err)
	}

	say("forward-auth memory: %d decisions over %d sessions", opts.ForwardDecisions, opts.ForwardSessions)
	if err := decisionMemory(ctx, &rep.Forward, bin, gatehouseEnv(ports[4], ports[6], idp.url), memoryAppURL, app, opts); err != nil {
		return nil, fmt.Errorf("forward-auth memory: %w", err)
	}

	if opts.ProfileDir != "" {
		say("CPU profile of GET /profile (%ds)", opts.ProfileSecs)
		wait := profileDuring(ctx, opts.ProfileDir, admin, "profile-cpu.pprof", opts.ProfileSecs)
		if _, err := hammer(ctx, targets[Profile], opts.Connections, 0, time.Duration(opts.ProfileSecs)*time.Second, Pinning{}); err != nil {
			return nil, err
		}
		if err := wait(); err != nil {
			return nil, err
		}
	}

	say("allocations per GET /profile")
	rep.ProfileAllocs, rep.BareAllocs, rep.AllocsNote = allocsPerRequest(ctx, targets[Profile], targets[BareProfile],
		"http://127.0.0.1:"+strconv.Itoa(ports[2])+"/metrics", "http://"+bareAddr+"/mallocs")

	if opts.RedisLogins > 0 {
		say("logins: %d with the Redis store", opts.RedisLogins)
		if err := redisPhase(ctx, rep, bin, idp, ports[1], opts); err != nil {
			return nil, fmt.Errorf("redis store: %w", err)
		}
	}
	rep.Machine.LoadAfter = loadAvg()
	rep.Finished = time.Now()
	return rep, nil
}

// gatehouseEnv is the whole environment of a Gatehouse under test: the
// defaults of a production start (JSON logs at info, cookie store), the
// rate limit off (every virtual user shares one IP), no OTEL_* exporter.
func gatehouseEnv(port, adminPort int, issuer string) []string {
	app := "http://127.0.0.1:" + strconv.Itoa(port)
	return []string{
		"PORT=" + strconv.Itoa(port),
		"SESSION_SECRET=" + sessionKey,
		"ZITADEL_DOMAIN=" + issuer,
		"ZITADEL_CLIENT_ID=" + clientID,
		"ZITADEL_CALLBACK_URL=" + app + "/auth/callback",
		"ADMIN_ADDR=127.0.0.1:" + strconv.Itoa(adminPort),
		"RATE_LIMIT_PER_MINUTE=0",
		"TRUSTED_PROXIES=127.0.0.1/32", // the forward-auth round speaks as the proxy
		"SHUTDOWN_DELAY=0s",
		"SHUTDOWN_TIMEOUT=5s",
	}
}

// startupTime is the time from exec to the first /readyz 200.
func startupTime(bin string, env []string, appURL string) (time.Duration, error) {
	t0 := time.Now()
	p, err := start(bin, []string{"-env-file", os.DevNull}, env)
	if err != nil {
		return 0, err
	}
	defer p.stop()
	ready, err := waitStatus(p, appURL+"/readyz", http.StatusOK, readyTimeout)
	if err != nil {
		return 0, fmt.Errorf("start-up: %w", err)
	}
	return ready.Sub(t0), nil
}

func bodySize(ctx context.Context, t target) (int, error) {
	return get(ctx, http.DefaultClient, t)
}

// allocsPerRequest reads the allocation counter of each process around n
// requests: Gatehouse's from go_memstats_mallocs_total on its admin
// /metrics, the bare server's from runtime.MemStats. Reading a counter
// allocates too; that cost is measured by reading twice and subtracted.
func allocsPerRequest(ctx context.Context, gh, bare target, ghMetrics, bareMallocs string) (float64, float64, string) {
	const n = 2000
	per := func(t target, read func() (float64, error)) (float64, error) {
		a, err := read()
		if err != nil {
			return 0, err
		}
		b, err := read()
		if err != nil {
			return 0, err
		}
		if err := hammerCount(ctx, t, n); err != nil {
			return 0, err
		}
		c, err := read()
		if err != nil {
			return 0, err
		}
		return ((c - b) - (b - a)) / n, nil
	}
	bareAllocs, err := per(bare, func() (float64, error) { return readNumber(bareMallocs, "") })
	if err != nil {
		return 0, 0, "bare server: " + err.Error()
	}
	ghAllocs, err := per(gh, func() (float64, error) { return readNumber(ghMetrics, "go_memstats_mallocs_total") })
	if err != nil {
		return 0, bareAllocs, "not measured in the binary: " + err.Error()
	}
	return ghAllocs, bareAllocs, ""
}

// readNumber fetches u and returns the number on the line that starts
// with metric ("" : the whole body).
func readNumber(u, metric string) (float64, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s answered %d", u, resp.StatusCode)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if metric == "" {
			return strconv.ParseFloat(strings.TrimSpace(line), 64)
		}
		if rest, ok := strings.CutPrefix(line, metric+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", u, metric)
}

// redisPhase runs a Gatehouse with SESSION_STORE=redis against a real
// redis-server and measures its memory around the logins.
func redisPhase(ctx context.Context, rep *Report, bin string, idp *provider, port int, opts Options) error {
	server := opts.RedisServer
	if server == "" {
		var err error
		if server, err = exec.LookPath("redis-server"); err != nil {
			return fmt.Errorf("redis-server not found (scripts/test.sh installs it): %w", err)
		}
	}
	redisPort, err := loopback.Reserve()
	if err != nil {
		return err
	}
	defer redisPort.Close()
	dir, err := os.MkdirTemp("", "gatehouse-load-redis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rs, err := start(server, []string{"--port", redisPort.String(), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir}, nil)
	if err != nil {
		return err
	}
	defer rs.stop()
	adminPort, err := loopback.Reserve()
	if err != nil {
		return err
	}
	defer adminPort.Close()
	env := append(gatehouseEnv(port, adminPort.Port, idp.url),
		"SESSION_STORE=redis", "REDIS_URL=redis://"+redisPort.Addr()+"/0")
	appURL := "http://127.0.0.1:" + strconv.Itoa(port)
	gh, err := start(bin, []string{"-env-file", os.DevNull}, env)
	if err != nil {
		return err
	}
	defer gh.stop()
	if _, err := waitStatus(gh, appURL+"/readyz", http.StatusOK, readyTimeout); err != nil {
		if strings.Contains(err.Error(), "not supported by this build") {
			rep.RedisNote = "this build has no Redis store (SESSION_STORE=redis refused)"
			return nil
		}
		return err
	}
	time.Sleep(200 * time.Millisecond)
	if rep.RedisRSSStart, err = rssBytes(gh.pid()); err != nil {
		return err
	}
	app, _ := url.Parse(appURL)
	if rep.RedisLogins, err = runLogins(ctx, app, idp, gh.pid(), opts.VUs, opts.RedisLogins); err != nil {
		return err
	}
	rep.RedisRSSAfter, err = rssBytes(gh.pid())
	return err
}

func addLogins(a, b Logins) Logins {
	out := Logins{
		Count: a.Count + b.Count, Elapsed: a.Elapsed + b.Elapsed,
		Gatehouse: a.Gatehouse + b.Gatehouse, BackChannel: a.BackChannel + b.BackChannel,
		Provider: a.Provider + b.Provider, GatehouseCPU: a.GatehouseCPU + b.GatehouseCPU,
	}
	out.PerSec = float64(out.Count) / out.Elapsed.Seconds()
	return out
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), LoadBefore: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				m.MemTotal = kb << 10
			}
		}
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// median of durations.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
