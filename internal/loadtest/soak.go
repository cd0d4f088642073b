package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os/exec"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/devidp"
)

// The soak: two Gatehouse stacks on loopback, one with the Redis session
// store and one with the cookie store, each two instances behind a small
// balancer (balancer.go), with virtual users signing in, viewing pages
// (refreshing tokens every few views: the provider's access tokens are
// short-lived), and signing out, for a fixed time, while the provider is
// restarted, Redis is restarted, and one instance of each stack is sent
// SIGTERM and started again, once per cycle. It measures what a user and
// an operator would see: requests by outcome, errors outside the fault
// windows, sessions lost, 5xx inside each window, memory and goroutines
// of the instances, latency per request kind. SoakReport.Check lists the
// bounds a run broke.

// SoakOptions size a soak.
type SoakOptions struct {
	Duration    time.Duration // load, faults included
	Cycle       time.Duration // each fault once per cycle (the last cycle may be cut short)
	VUs         int           // virtual users per store
	TokenTTL    time.Duration // access-token lifetime at the provider
	RedisServer string        // redis-server binary; "" looks it up in PATH
	Progress    io.Writer     `json:"-"`
}

// Soak defaults: d of load in cycles of at most a minute, 8 users per store.
func SoakDefaults(d time.Duration) SoakOptions {
	return SoakOptions{Duration: d, Cycle: min(d, time.Minute), VUs: 8, TokenTTL: 40 * time.Second}
}

// The fault schedule within a cycle, and how long each part stays down.
const (
	providerAt, redisAt, sigtermAt = 0.2, 0.45, 0.7 // of the cycle
	providerDown                   = 3 * time.Second
	redisDown                      = 2 * time.Second
	windowGrace                    = time.Second // after a part is back, before errors count as outside its window
	refreshSkew                    = 30 * time.Second
	stores                         = 2
)

// Fault names.
const (
	FaultProvider = "provider restart"
	FaultRedis    = "redis restart"
	FaultSIGTERM  = "SIGTERM of instance a, started again"
)

// Window is one fault, as offsets from the start of the load: injected
// at Start, the part back (listening, answering PING, or the new
// instance ready and in rotation) at Back. Requests that overlap
// [Start, Back+1s] are inside the window.
type Window struct {
	Fault       string
	Start, Back time.Duration
	Note        string `json:",omitempty"` // what went wrong bringing the part back
}

// Length is how long the part was away.
func (w Window) Length() time.Duration { return w.Back - w.Start }

type soakStack struct {
	store string
	bal   *balancer
	url   *url.URL
	env   []string
	logs  *logCounter
	mu    sync.Mutex // inst, lives
	inst  [2]*instance
	lives []*procLife
	vus   []*soakVU
}

// procLife is one process of an instance slot, from start to exit, with
// its figures after its warm-up (Start) and at its end (End).
type procLife struct {
	Name               string
	StartedAt, EndedAt time.Duration // offsets from the start of the load
	Start, End         *procSample   // nil: not measured
	Series             []procSample  // at the start of every cycle it lived through, and at its end
	inst               *instance
}

type procSample struct {
	At         time.Duration
	RSS        int64
	HeapInuse  int64
	Goroutines int
}

// take reads the process's RSS and goroutines; nil if it cannot.
func (l *procLife) take(begin time.Time) *procSample {
	rss, err := rssBytes(l.inst.pid())
	if err != nil {
		return nil
	}
	g, heap, err := l.inst.runtimeFigures()
	if err != nil {
		return nil
	}
	return &procSample{At: time.Since(begin), RSS: rss, HeapInuse: heap, Goroutines: g}
}

// RunSoak runs the soak and returns its report (Check says whether it
// held its bounds); an error means it could not run at all.
func RunSoak(ctx context.Context, o SoakOptions) (*SoakReport, error) {
	if o.Duration < 30*time.Second || o.Cycle < 30*time.Second || o.VUs < 1 || o.TokenTTL < refreshSkew+8*time.Second {
		return nil, fmt.Errorf("soak: duration and cycle at least 30s, at least one user, token TTL at least %v", refreshSkew+8*time.Second)
	}
	say := progress(o.Progress)
	rep := &SoakReport{Started: time.Now(), Options: o, Machine: machine()}
	say("building the stripped static binary")
	bin, removeBin, err := buildHere(ctx)
	if err != nil {
		return nil, err
	}
	defer removeBin()
	redisBin := o.RedisServer
	if redisBin == "" {
		if redisBin, err = exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("redis-server not found (scripts/test.sh installs it): %w", err)
		}
	}
	rds, err := startRedis(redisBin)
	if err != nil {
		return nil, err
	}
	defer rds.close()

	// The balancers listen first: their URLs are the public origins the
	// provider must know.
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var stacks []*soakStack
	for _, store := range []string{"redis", "cookie"} {
		s := &soakStack{store: store, bal: newBalancer(2, 100*time.Millisecond), logs: &logCounter{}}
		addr, stop, err := serveLoopback(s.bal)
		if err != nil {
			return nil, err
		}
		defer stop()
		s.url = &url.URL{Scheme: "http", Host: addr}
		go s.bal.watch(runCtx)
		stacks = append(stacks, s)
	}
	// One account per user: the provider ends every session of an account
	// when one of them signs out (as a shared ZITADEL user would not).
	var users []devidp.User
	for si := range stacks {
		for i := range o.VUs {
			users = append(users, devidp.User{ID: fmt.Sprintf("4%02d%015d", si, i), Username: soakUser(si, i), Password: devidp.DemoPassword,
				FirstName: "Soak", LastName: fmt.Sprint(i), Email: soakUser(si, i) + "@" + devidp.DemoOrgDomain})
		}
	}
	idp, err := startRestartableProvider(clientID, []string{stacks[0].url.String(), stacks[1].url.String()}, users, o.TokenTTL)
	if err != nil {
		return nil, err
	}
	defer func() { idp.stop(); idp.release() }()
	for _, s := range stacks {
		s.env = []string{
			"SESSION_SECRET=" + sessionKey,
			"ZITADEL_DOMAIN=" + idp.url,
			"ZITADEL_CLIENT_ID=" + clientID,
			"ZITADEL_CALLBACK_URL=" + s.url.String() + "/auth/callback",
			"ADMIN_ADDR=127.0.0.1:0",
			"SHUTDOWN_DELAY=1s", "SHUTDOWN_TIMEOUT=10s",
			"TRUSTED_PROXIES=127.0.0.1/32", // the balancer; the users' own addresses arrive in X-Forwarded-For
			"LOG_FORMAT=json", "LOG_LEVEL=info",
		}
		if s.store == "redis" {
			s.env = append(s.env, "SESSION_STORE=redis", "REDIS_URL="+rds.url())
		}
		for slot := range 2 {
			if err := s.startSlot(runCtx, slot, bin, 0); err != nil {
				return nil, err
			}
		}
		defer s.stopAll()
	}
	say("load: %v, %d users per store (Redis, cookie), faults every %v; provider access tokens live %v", o.Duration, o.VUs, o.Cycle, o.TokenTTL)

	begin := time.Now()
	loadEnd := begin.Add(o.Duration)
	for si, s := range stacks {
		for i := range o.VUs {
			v := newSoakVU(s, netip.AddrFrom4([4]byte{127, 66, byte(si + 1), byte(i + 1)}), soakUser(si, i), i, o.TokenTTL)
			s.vus = append(s.vus, v)
		}
	}
	var vuWG sync.WaitGroup
	for _, s := range stacks {
		for _, v := range s.vus {
			vuWG.Add(1)
			go func() { defer vuWG.Done(); v.run(runCtx, loadEnd) }()
		}
	}
	defer func() { stopAll(); vuWG.Wait() }() // on an early return: stop the users before what they use

	// Faults, and the memory and goroutine samples around them.
	var windows []Window
	at := func() time.Duration { return time.Since(begin) }
	sleepUntil := func(t time.Time) bool {
		select {
		case <-time.After(time.Until(t)):
			return true
		case <-runCtx.Done():
			return false
		}
	}
	warmUp := time.Duration(0.15 * float64(o.Cycle))
	if sleepUntil(begin.Add(warmUp)) {
		for _, s := range stacks {
			s.measure(begin, false)
		}
	}
	for c := time.Duration(0); c < o.Duration; c += o.Cycle {
		cycle := begin.Add(c)
		if c > 0 && sleepUntil(cycle) {
			for _, s := range stacks {
				s.trace(begin)
			}
		}
		if !sleepUntil(cycle.Add(time.Duration(providerAt*float64(o.Cycle)))) || time.Until(loadEnd) < providerDown+2*windowGrace {
			break
		}
		say("fault: provider down for %v", providerDown)
		w := Window{Fault: FaultProvider, Start: at()}
		idp.stop()
		sleepUntil(time.Now().Add(providerDown))
		if err := idp.start(); err != nil {
			return nil, err
		}
		w.Back = at()
		windows = append(windows, w)

		if !sleepUntil(cycle.Add(time.Duration(redisAt*float64(o.Cycle)))) || time.Until(loadEnd) < redisDown+2*windowGrace {
			break
		}
		say("fault: Redis killed, back after %v", redisDown)
		w = Window{Fault: FaultRedis, Start: at()}
		rds.kill()
		sleepUntil(time.Now().Add(redisDown))
		if err := rds.restart(); err != nil {
			return nil, fmt.Errorf("restart redis: %w", err)
		}
		w.Back = at()
		windows = append(windows, w)

		if !sleepUntil(cycle.Add(time.Duration(sigtermAt*float64(o.Cycle)))) || time.Until(loadEnd) < 8*time.Second {
			break
		}
		say("fault: SIGTERM to instance a of each store, started again once it has drained")
		w = Window{Fault: FaultSIGTERM, Start: at()}
		errs := make([]error, len(stacks))
		var wg sync.WaitGroup
		for i, s := range stacks {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = s.restartSlot(runCtx, 0, bin, begin, warmUp) }()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			w.Note = err.Error()
		}
		w.Back = at()
		windows = append(windows, w)
	}
	if sleepUntil(loadEnd.Add(-500 * time.Millisecond)) {
		for _, s := range stacks {
			s.measure(begin, true)
		}
	}
	vuWG.Wait()
	say("load done; collecting")
	rep.Windows = windows
	rep.Provider.Refreshes, rep.Provider.CodeExchanges = idp.refreshes.Load(), idp.codes.Load()
	for _, s := range stacks {
		rep.Stores = append(rep.Stores, s.report(begin, windows, o.TokenTTL))
	}
	rep.Machine.LoadAfter = loadAvg()
	rep.Finished = time.Now()
	rep.Checks = rep.Check()
	return rep, runCtx.Err()
}

// startSlot starts instance slot (0: "a", 1: "b") and puts it in
// rotation; since is the offset of its start in the load.
func (s *soakStack) startSlot(ctx context.Context, slot int, bin string, since time.Duration) error {
	name := fmt.Sprintf("%s-%c", s.store, 'a'+slot)
	inst, err := startInstance(ctx, name, bin, s.env, s.logs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	lives := 1
	for _, l := range s.lives {
		if l.inst.name == name {
			lives++
		}
	}
	s.inst[slot] = inst
	s.lives = append(s.lives, &procLife{Name: fmt.Sprintf("%s, process %d", name, lives), StartedAt: since, inst: inst})
	s.mu.Unlock()
	s.bal.set(slot, inst.addr)
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); {
		s.bal.mu.Lock()
		ready := s.bal.backends[slot].ready
		s.bal.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s never became ready at the balancer", name)
}

// restartSlot takes the slot's process's last figures, sends it SIGTERM,
// waits for its drain, and starts a new one, measured after warmUp.
func (s *soakStack) restartSlot(ctx context.Context, slot int, bin string, begin time.Time, warmUp time.Duration) error {
	s.mu.Lock()
	inst := s.inst[slot]
	var life *procLife
	for _, l := range s.lives {
		if l.inst == inst {
			life = l
		}
	}
	life.End = life.take(begin)
	life.EndedAt = time.Since(begin)
	s.mu.Unlock()
	err := inst.terminate(20 * time.Second)
	s.bal.set(slot, "")
	if err := errors.Join(err, s.startSlot(ctx, slot, bin, time.Since(begin))); err != nil {
		return err
	}
	s.mu.Lock()
	fresh := s.lives[len(s.lives)-1]
	s.mu.Unlock()
	go func() {
		select {
		case <-time.After(warmUp):
			s.mu.Lock()
			defer s.mu.Unlock()
			if fresh.EndedAt == 0 {
				fresh.Start = fresh.take(begin)
			}
		case <-ctx.Done():
		}
	}()
	return nil
}

// measure takes the start figures (after the warm-up) or the end figures
// of every running process.
func (s *soakStack) measure(begin time.Time, end bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lives {
		if l.EndedAt != 0 {
			continue
		}
		if end {
			l.End, l.EndedAt = l.take(begin), time.Since(begin)
			if l.End != nil && len(l.Series) > 0 {
				l.Series = append(l.Series, *l.End)
			}
		} else {
			l.Start = l.take(begin)
		}
	}
}

// trace adds a sample to the series of every running process that has
// passed its warm-up.
func (s *soakStack) trace(begin time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lives {
		if l.EndedAt == 0 && l.Start != nil {
			if p := l.take(begin); p != nil {
				l.Series = append(l.Series, *p)
			}
		}
	}
}

func (s *soakStack) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, inst := range s.inst {
		if inst != nil {
			select {
			case <-inst.exited:
			default:
				_ = inst.terminate(15 * time.Second)
			}
		}
	}
}

// soakVU is one virtual user of one stack.
type soakVU struct {
	stack             *soakStack
	b                 *Browser
	user              string
	n                 int
	ttl               time.Duration
	samples           []soakSample
	signIns, signOuts int
}

type soakSample struct {
	Sample
	lost bool
}

func soakUser(store, n int) string { return fmt.Sprintf("soak-%d-%03d", store, n) }

func newSoakVU(s *soakStack, from netip.Addr, user string, n int, ttl time.Duration) *soakVU {
	v := &soakVU{stack: s, user: user, n: n, ttl: ttl}
	v.b = NewBrowser(BrowserOptions{App: s.url, Source: from, Record: func(smp Sample) {
		v.samples = append(v.samples, soakSample{Sample: smp})
	}})
	return v
}

// run is the user's day until end: sign in, view pages (a refresh is
// due every few views), sign out, again. Views are timed so that each is
// surely before its token is due for refresh (a plain view) or surely
// after (a view with refresh), given Gatehouse's 30 s refresh skew and
// whole-second expiry.
func (v *soakVU) run(ctx context.Context, end time.Time) {
	defer v.b.Close()
	due := v.ttl - refreshSkew // after this long a token is due, within 2 s
	pause := func(d time.Duration) bool {
		if time.Until(end) < d {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	// Users do not all start at the same moment.
	if !pause(time.Duration(v.n) * 300 * time.Millisecond) {
		return
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		if err := v.b.SignIn(ctx, v.user, devidp.DemoPassword); err != nil {
			pause(250 * time.Millisecond)
			continue
		}
		v.signIns++
		cb := v.samples[len(v.samples)-1] // the callback: the tokens arrived while it ran
		issuedFrom, issuedTo := cb.Start, cb.End
		signedIn, plain := true, true
		for refreshes := 0; signedIn && refreshes < 2 && time.Now().Before(end); refreshes++ {
			// Plain views until shortly before the token could be due.
			for t := 500 * time.Millisecond; plain && signedIn && t < due-2500*time.Millisecond; t += time.Second {
				if !pause(time.Until(issuedFrom.Add(t))) {
					break
				}
				_, signedIn = v.view(ctx, KindPage)
			}
			if !signedIn || !pause(time.Until(issuedTo.Add(due+time.Second))) {
				break
			}
			var ok bool
			ok, signedIn = v.view(ctx, KindPageRefresh)
			last := v.samples[len(v.samples)-1]
			issuedFrom, issuedTo = last.Start, last.End
			// After a refresh view that failed, nobody knows whether the
			// tokens were renewed: only a view after they are surely due
			// again has a known kind.
			plain = ok
		}
		if !signedIn {
			continue
		}
		if !time.Now().Before(end) || ctx.Err() != nil {
			return
		}
		for try := 0; try < 20; try++ {
			err := v.b.SignOut(ctx)
			var se *StepError
			if err == nil || !errors.As(err, &se) || se.Kind != KindSignOut {
				v.signOuts++ // the sign-out POST went through: the session is gone, as asked
				break
			}
			if !pause(250 * time.Millisecond) {
				return
			}
		}
		pause(500 * time.Millisecond)
	}
}

// view opens the profile as kind. ok: it answered 200; signedIn: false
// when the session is gone. A failed view is followed by a short pause.
func (v *soakVU) view(ctx context.Context, kind string) (ok, signedIn bool) {
	err := v.b.View(ctx, kind, "/profile")
	switch {
	case err == nil:
		return true, true
	case errors.Is(err, ErrSessionLost):
		v.samples[len(v.samples)-1].lost = true
		return false, false
	}
	select {
	case <-ctx.Done():
	case <-time.After(250 * time.Millisecond):
	}
	return false, true
}
